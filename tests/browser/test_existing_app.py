"""examples/existing_app: an app not written for progresscast, with progresscast
added in a few lines, run as its README says (gunicorn -k eventlet) and
driven in headless Chromium through its own sign-in form and its own page.

The page loads the Socket.IO client from a CDN, as a real app would; the
browser here has no internet, so the CDN is served from node_modules.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import secrets
import tokenize
from collections.abc import Iterator

import pytest
import requests

from tests.browser.conftest import TIMEOUT_MS
from tests.harness import (
    ROOT,
    AppProcess,
    free_port,
    gunicorn_cmd,
    log_tail,
    require_component,
    wait_until,
)

EXAMPLE = ROOT / "examples" / "existing_app"
SOCKETIO_ESM = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.esm.min.js"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
#: the example's EXAMPLE_PACE here: an import takes about 3.5 s, long enough
#: for a page to see it under way, short enough for a quick test
PACE = "0.6"
#: an import's longest run at that pace, with room for a busy machine (s)
IMPORT_TIMEOUT = 30

# Records every state the page's import rows show, frame by frame, from the
# first paint on: a test then checks what was seen along the way.
ROW_RECORDER = """
window.__rows = [];
document.addEventListener("DOMContentLoaded", () => {
  const last = new Map();
  const record = () => {
    for (const li of document.querySelectorAll("li.import")) {
      const text = (sel) => li.querySelector(sel).textContent;
      const row = {id: li.dataset.jobId, status: li.dataset.status, pct: text(".pct"),
                   stage: text(".stage"), eta: text(".eta")};
      const key = JSON.stringify(row);
      if (last.get(row.id) !== key) {
        last.set(row.id, key);
        window.__rows.push(row);
      }
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
});
"""


@pytest.fixture(scope="module")
def example_app(tmp_path_factory) -> Iterator[AppProcess]:
    """The example as its README runs it: gunicorn -k eventlet, one worker, from
    its folder; progresscast from src/, a store of its own, a fast pace."""
    for module in ("gunicorn", "eventlet", "flask_socketio"):
        require_component(importlib.util.find_spec(module) is not None, module)
    workdir = tmp_path_factory.mktemp("existing_app")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROGRESSCAST_")}
    env.pop("SOCKETIO_CLIENT_URL", None)  # the page's default: the CDN
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
        PROGRESSCAST_STORE_URL=f"sqlite:///{workdir / 'jobs.db'}",
        SECRET_KEY=secrets.token_urlsafe(48),
        EXAMPLE_PACE=PACE,
        PYTHONUNBUFFERED="1",
    )
    app = AppProcess(
        gunicorn_cmd("eventlet", port, "app:app"),
        cwd=EXAMPLE,
        env=env,
        port=port,
        log_path=workdir / "server.log",
        health_path="/login",
    ).start()
    try:
        yield app
    finally:
        app.stop()
    assert "Traceback" not in log_tail(app.log_path, 10**6), app.log()


def offline_cdn(route) -> None:
    """jsDelivr's socket.io-client ESM build, served from node_modules."""
    if route.request.url.endswith("/socket.io-client@4.8.1/dist/socket.io.esm.min.js"):
        route.fulfill(
            path=SOCKETIO_ESM,
            headers={
                "Content-Type": "text/javascript; charset=utf-8",
                "Access-Control-Allow-Origin": "*",  # as jsDelivr answers
            },
        )
    else:
        route.abort()


@pytest.fixture
def open_page(browser, page_errors):
    """A page in a browser profile of its own (its own cookies: one user each)."""
    contexts = []

    def make():
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        ctx.route("https://cdn.jsdelivr.net/**", offline_cdn)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(page, app: AppProcess, user: str) -> None:
    """Through the app's own sign-in form: the app's page asks for it first."""
    from playwright.sync_api import expect

    page.goto(app.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(app.url + "/")
    expect(page.locator("#me")).to_have_text(user)
    # both connections up: the app's own (notices) and progresscast's (imports)
    expect(page.locator("#notices")).to_have_attribute("data-state", "connected")
    expect(page.locator("#live")).to_have_attribute("data-state", "connected")
    expect(page.locator("#imports")).to_have_attribute("data-loaded", "true")


def form_token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@contextlib.contextmanager
def http_session(app: AppProcess, user: str) -> Iterator[requests.Session]:
    """A non-browser client signed in through the same form (its session cookie)."""
    with requests.Session() as http:
        token = form_token(http.get(app.url + "/login", timeout=10).text)
        form = {"username": user, "password": PASSWORDS[user], "csrf": token}
        r = http.post(app.url + "/login", data=form, timeout=10, allow_redirects=False)
        assert r.status_code == 302, r.text
        yield http


def start_import(app: AppProcess, http: requests.Session, folder: str) -> str:
    """Start an import as the form does; return its job id (from the REST API)."""
    token = form_token(http.get(app.url + "/", timeout=10).text)
    form = {"folder": folder, "csrf": token}
    r = http.post(app.url + "/import", data=form, timeout=10, allow_redirects=False)
    assert r.status_code == 302, r.text

    def created() -> str | None:
        jobs = http.get(app.url + "/progress/api/jobs", timeout=10).json()
        return next((j["job_id"] for j in jobs if j["name"] == f"Import {folder}"), None)

    return wait_until(created, 10, what=f"the import of {folder}")


def job_status(app: AppProcess, http: requests.Session, job_id: str) -> dict:
    r = http.get(f"{app.url}/progress/api/jobs/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------- tests


@pytest.mark.server
@pytest.mark.browser
def test_alice_starts_an_import_on_the_apps_page_and_watches_it_live(example_app, open_page):
    from playwright.sync_api import expect

    page = open_page()
    page.add_init_script(ROW_RECORDER)
    sign_in(page, example_app, "alice")
    folder = f"team-drive/contracts-{secrets.token_hex(3)}"
    page.get_by_label("Folder").fill(folder)
    page.get_by_role("button", name="Import documents").click()  # the app's own form

    row = page.locator("li.import", has_text=f"Import {folder}")
    expect(row).to_have_attribute("data-status", "running")
    expect(row).to_have_attribute("data-status", "completed", timeout=IMPORT_TIMEOUT * 1000)
    expect(row.locator(".pct")).to_have_text("100%")
    expect(row.locator(".status")).to_have_text("Completed")
    expect(row.get_by_role("progressbar")).to_have_js_property("value", 100)
    job_id = row.get_attribute("data-job-id")

    seen = [r for r in page.evaluate("window.__rows") if r["id"] == job_id]
    percents = [int(r["pct"].rstrip("%")) for r in seen if r["pct"]]
    assert any(0 < p < 100 for p in percents), seen  # seen under way, not only at the ends
    assert len(set(percents)) >= 3, seen
    assert percents == sorted(percents), seen  # never backwards
    assert {r["stage"].split(" ")[0] for r in seen if r["stage"]} >= {"converting"}, seen
    assert any(re.fullmatch(r"ETA \d+ s", r["eta"]) for r in seen), seen
    assert seen[-1]["status"] == "completed" and seen[-1]["stage"] == seen[-1]["eta"] == ""

    # The same job over progresscast's REST API, from the page (its cookie).
    job = page.evaluate("(id) => fetch(`/progress/api/jobs/${id}`).then((r) => r.json())", job_id)
    assert (job["owner"], job["status"], job["progress"]) == ("alice", "completed", 100)
    assert [s["name"] for s in job["stages"]] == ["fetching", "converting", "indexing"]


@pytest.mark.server
@pytest.mark.browser
def test_bob_sees_nothing_of_alices_import(example_app, open_page):
    from playwright.sync_api import expect

    page = open_page()
    sign_in(page, example_app, "bob")  # bob's page is live before alice's import starts
    folder = f"hr/payslips-{secrets.token_hex(3)}"
    with http_session(example_app, "alice") as alice:
        job_id = start_import(example_app, alice, folder)
        wait_until(
            lambda: job_status(example_app, alice, job_id)["status"] == "completed",
            IMPORT_TIMEOUT,
            what="alice's import to complete",
        )

    # Not on the app's page, though his page was live all along...
    expect(page.locator("#live")).to_have_attribute("data-state", "connected")
    expect(page.locator("li.import")).to_have_count(0)
    expect(page.locator("#no-imports")).to_be_visible()
    assert folder not in page.content()
    # ... nor by progresscast's REST API from his page ...
    status = "(url) => fetch(url).then((r) => r.status)"
    assert page.evaluate(status, f"/progress/api/jobs/{job_id}") == 404
    assert page.evaluate(status, f"/progress/api/jobs/{job_id}/events") == 404
    listed = page.evaluate("fetch('/progress/api/jobs').then((r) => r.json())")
    assert job_id not in {j["job_id"] for j in listed}
    # ... nor on progresscast's dashboard, where the app's sign-in names him.
    page.goto(example_app.url + "/progress/")
    expect(page.locator("#who")).to_contain_text("bob")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#empty")).to_contain_text("No jobs yet")
    expect(page.locator("article.job")).to_have_count(0)
    assert folder not in page.content()


@pytest.mark.server
@pytest.mark.browser
def test_the_apps_own_notices_still_go_live_to_every_signed_in_page(example_app, open_page):
    from playwright.sync_api import expect

    alice, bob = open_page(), open_page()
    sign_in(alice, example_app, "alice")
    sign_in(bob, example_app, "bob")

    alice.get_by_label("Notice").fill("The scanner on floor 2 is fixed")
    alice.get_by_role("button", name="Post").click()
    for page in (alice, bob):
        expect(page.locator("#notices li").first).to_have_text(
            "alice: The scanner on floor 2 is fixed"
        )
    bob.get_by_label("Notice").fill("Thanks! <b>Importing</b> the backlog now")
    bob.get_by_role("button", name="Post").click()
    expect(alice.locator("#notices li").first).to_have_text(
        "bob: Thanks! <b>Importing</b> the backlog now"  # text, never markup
    )


@pytest.mark.server
def test_a_cross_site_request_cannot_cancel_alices_import(example_app):
    folder = f"legal/archive-{secrets.token_hex(3)}"
    cancel = f"{example_app.url}/progress/api/jobs/{{}}/cancel"
    with http_session(example_app, "alice") as alice:
        job_id = start_import(example_app, alice, folder)
        url = cancel.format(job_id)
        # Alice's cookie, sent along by her browser from another site's page.
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": example_app.url, "Sec-Fetch-Site": "cross-site"},
        ):
            r = alice.post(url, json={}, headers=headers, timeout=10)
            assert r.status_code == 403, r.text
            assert r.json()["code"] == "forbidden"
        job = job_status(example_app, alice, job_id)
        assert job["cancel_requested"] is None

        # No cookie at all: nobody.
        r = requests.post(url, json={}, headers={"Origin": example_app.url}, timeout=10)
        assert r.status_code == 401, r.text

        # From the app's own pages the same request is accepted.
        r = alice.post(url, json={}, headers={"Origin": example_app.url}, timeout=10)
        assert r.status_code in (202, 409), r.text  # 409: it had already ended
        if r.status_code == 202:
            wait_until(
                lambda: job_status(example_app, alice, job_id)["status"] == "cancelled",
                IMPORT_TIMEOUT,
                what="the import to stop",
            )


def test_progresscast_takes_ten_lines_of_the_app_or_fewer():
    source = (EXAMPLE / "app.py").read_text()
    lines = source.splitlines()
    marked = [n for n, line in enumerate(lines, 1) if line.rstrip().endswith("# progresscast")]
    assert 0 < len(marked) <= 10, marked
    added = "\n".join(lines[n - 1] for n in marked)
    for piece in (
        "from progresscast.flask import ProgressCast",
        'app.config["PROGRESSCAST_STORE_URL"]',
        "ProgressCast(app, socketio)",
        "progress.user_loader(",
        "progress.tracker.job(",
    ):
        assert piece in added, piece
    # Every line of code that names progresscast or what it hands out is marked.
    names = {"progresscast", "ProgressCast", "progress", "job"}
    uses = {
        tok.start[0]
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.NAME and tok.string in names
    }
    assert uses <= set(marked), sorted(uses - set(marked))
