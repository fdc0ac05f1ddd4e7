"""Prometheus metrics at /metrics (issue 15): what they count, who may read
them, one registry per app, and the Grafana dashboard that reads them.

In-process apps (Flask's test client comes from 127.0.0.1 unless told
otherwise); tests/integration/test_operator_view.py scrapes a real server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from progresscast.flask.metrics import DISCONNECT_REASONS
from tests.harness import wait_until

from .helpers import NS, STAGES, as_user, assert_error

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
TOKEN = "m" * 24
ADMIN = as_user("root", admin=True)
#: what each metric type exports beside its family name
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def scrape(http, **kwargs) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    response = http.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def exported_names(http) -> set[str]:
    """Every sample name a scrape can hold, samples or not yet."""
    text = http.get("/metrics").get_data(as_text=True)
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES[family.type]
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_counters_move_with_traffic(http, connect, tracker):
    before = scrape(http)
    alice = connect("alice")
    alice.ok("ping")
    alice.request("nonsense", {})
    connect("mallory", auth={"token": "not a token"})
    created = http.post("/api/jobs", json={"name": "n", "stages": STAGES}, headers=as_user("alice"))
    job_id = created.get_json()["job_id"]
    alice.ok("join_job", {"job_id": job_id})
    tracker.apply(job_id, "job_started")
    leaving = connect("bob")
    leaving.raw.disconnect(NS)
    after = scrape(http)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("progresscast_connects_total") == 2
    assert moved("progresscast_connect_refusals_total", code="unauthorized") == 1
    assert moved("progresscast_disconnects_total", reason="client") == 1
    assert moved("progresscast_socket_requests_total", request="ping", result="ok") == 1
    assert moved("progresscast_socket_requests_total", request="join_job", result="ok") == 1
    assert (
        moved("progresscast_socket_requests_total", request="unknown", result="invalid_payload")
        == 1
    )
    assert moved("progresscast_events_stored_total", type="job_queued") == 1
    assert moved("progresscast_events_stored_total", type="job_started") == 1
    assert moved("progresscast_emits_total") == 2
    assert moved("progresscast_deliveries_total") >= 1  # job_started to alice, who joined
    assert moved("progresscast_tracker_update_seconds_count") == 1  # the apply
    assert moved("progresscast_store_append_seconds_count") == 2  # create + apply
    assert moved("progresscast_emit_seconds_count") == 2
    assert moved("progresscast_http_requests_total", endpoint="jobs.Jobs", status="201") == 1
    assert (
        value(after, "progresscast_connections", transport="polling")
        + value(after, "progresscast_connections", transport="websocket")
        == 1
    )  # alice (the test client has no Engine.IO socket: "polling")
    assert value(after, "progresscast_connected_users") == 1
    assert value(after, "progresscast_jobs", status="running") == 1
    assert value(after, "progresscast_sse_streams") == 0
    for reason in DISCONNECT_REASONS:  # every reason is there from the start, at 0 or more
        assert ("progresscast_disconnects_total", (("reason", reason),)) in after


def test_the_servers_own_cuts_are_counted_by_reason(http, connect, make_app):
    alice = connect("alice")
    http.post("/api/admin/disconnect", json={"user": "alice"}, headers=ADMIN)
    assert not alice.connected
    samples = scrape(http)
    assert value(samples, "progresscast_disconnects_total", reason="admin") == 1

    # A flood: more refused requests than SOCKET_STRIKES_BURST.
    app = make_app(SOCKET_RATE=1, SOCKET_BURST=1, SOCKET_STRIKES_RATE=1, SOCKET_STRIKES_BURST=1)
    flood = connect("bob", app=app)
    for _ in range(3):
        flood.request("ping", {})
    wait_until(lambda: not flood.connected, 2, what="the flood to be cut off")
    counted = scrape(app.test_client())
    assert value(counted, "progresscast_disconnects_total", reason="flood") == 1
    assert (
        value(counted, "progresscast_socket_requests_total", request="ping", result="rate_limited")
        >= 1
    )


def test_two_apps_keep_their_own_numbers(make_app, connect):
    first, second = make_app(), make_app()
    connect("alice", app=first)
    assert value(scrape(first.test_client()), "progresscast_connects_total") == 1
    assert value(scrape(second.test_client()), "progresscast_connects_total") == 0
    one, two = (a.extensions["progresscast"].metrics.registry for a in (first, second))
    assert one is not two


@pytest.mark.parametrize(
    ("remote", "headers"),
    [
        ("10.0.0.7", {}),
        ("192.168.1.2", {}),
        # a proxy on this host connects from loopback; its headers say who asked
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),
        ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}),
        ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}),
        ("127.0.0.1", {"X-Forwarded-Host": "example.com"}),
        # a plain proxy_pass that only says it went through a proxy
        ("127.0.0.1", {"Via": "1.1 proxy", "X-Forwarded-Proto": "https"}),
        ("", {}),  # a Unix socket
    ],
)
def test_metrics_are_refused_to_anyone_not_local(http, remote, headers):
    response = http.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == 403
    assert_error(response.get_json(), "forbidden")


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_metrics_are_served_locally(http, remote):
    assert http.get("/metrics", environ_base={"REMOTE_ADDR": remote}).status_code == 200


def test_the_metrics_token_lets_a_remote_scraper_in(make_app):
    http = make_app(METRICS_TOKEN=TOKEN).test_client()
    remote = {"environ_base": {"REMOTE_ADDR": "10.0.0.7"}}
    assert http.get("/metrics", **remote).status_code == 403
    scrape(http, headers={"Authorization": f"Bearer {TOKEN}"}, **remote)
    wrong = http.get("/metrics", headers={"Authorization": "Bearer " + "x" * 24}, **remote)
    assert wrong.status_code == 401
    assert_error(wrong.get_json(), "unauthorized")
    # not ASCII: refused like any wrong token (compare_digest on str raised: 500)
    odd = http.get("/metrics", headers={"Authorization": "Bearer éé"}, **remote)
    assert odd.status_code == 401
    # An admin's JWT is not the metrics token.
    assert http.get("/metrics", headers=ADMIN, **remote).status_code == 401


def test_metrics_can_be_turned_off(make_app):
    app = make_app(METRICS=False)
    response = app.test_client().get("/metrics")
    assert response.status_code == 404
    assert app.extensions["progresscast"].tracker.observer is None


@pytest.mark.parametrize(
    "bad",
    [
        {"METRICS_TOKEN": "short"},
        {"ADMIN_UI_PASSWORD": "short"},
        {"ADMIN_UI_PASSWORD": "long enough pass", "ADMIN_UI_MODE": "debug"},
    ],
)
def test_weak_operator_secrets_are_refused(make_app, bad):
    with pytest.raises(ValueError, match="|".join(bad)):
        make_app(**bad)


def test_openmetrics_when_asked(http):
    response = http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_every_metric_the_dashboard_reads_is_exported(http):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 15
    used = {name for expr in exprs for name in re.findall(r"\bprogresscast_[a-z_]+", expr)}
    missing = sorted(used - exported_names(http))
    assert not missing, f"the dashboard reads metrics that /metrics does not export: {missing}"
    variable = dashboard["templating"]["list"][1]["definition"]
    assert re.search(r"progresscast_[a-z_]+", variable).group(0) in exported_names(http)


def test_import_progresscast_does_not_import_prometheus_client():
    code = "import sys, progresscast; print('prometheus_client' in sys.modules, 'flask' in sys.modules)"  # noqa: E501
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["False", "False"]


ADMIN_UI_CLOSE = """
from tests.handlers.conftest import config_dict
from web import create_app

password = "long enough pass"
app = create_app(config_dict(ADMIN_UI_PASSWORD=password))
progress = app.extensions["progresscast"]
# The UI's stats task starts at an Engine.IO connect, which the test client
# skips: this is what a real connection calls.
progress.socketio.server.eio.handlers["connect"]("eio-sid", {})
assert progress.admin_ui.stats_task is not None
progress.close()
assert progress.admin_ui.stats_task is None, "the Admin UI's stats task outlived close()"
print("ok")
"""


def test_closing_the_app_stops_the_admin_ui(tmp_path):
    # In a process of its own: instrument() patches python-engineio's socket
    # class for the whole process.
    done = subprocess.run(
        [sys.executable, "-c", ADMIN_UI_CLOSE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
