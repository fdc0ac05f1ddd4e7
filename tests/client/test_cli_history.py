"""``python -m progresscast history``: the ETA's run history, read from and
reset in a real store (a SQLite file, a real redis-server)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from progresscast import SQLiteStore
from progresscast.cli import default_store_url, main
from progresscast.stores.redis import RedisStore
from tests.harness import ROOT, free_port

_prefixes = itertools.count()


def run_of(job_id, finished_at, elapsed, stages):
    return {"job_id": job_id, "finished_at": finished_at, "elapsed": elapsed, "stages": stages}


def fill(store, now):
    """Three runs of a PDF report, one nightly import."""
    store.add_run(
        "report.pdf",
        run_of("p1", now - 30, 10.0, [["parsing", 1.0], ["analyzing", 8.0], ["formatting", 1.0]]),
        keep=20,
    )
    store.add_run(
        "report.pdf",
        run_of("p2", now - 20, 14.0, [["parsing", 2.0], ["analyzing", 11.0], ["formatting", 1.0]]),
        keep=20,
    )
    store.add_run(
        "report.pdf",
        run_of("p3", now - 10, 12.0, [["parsing", 3.0], ["analyzing", 9.0], ["formatting", 0.0]]),
        keep=20,
    )
    store.add_run(
        "nightly: import/all",
        run_of("n1", now - 7200, 150.0, [["fetch", 30.0], ["load", 120.0]]),
        keep=20,
    )


@pytest.fixture
def sqlite_url(tmp_path):
    path = tmp_path / "instance" / "progresscast.db"
    store = SQLiteStore(str(path))
    try:
        fill(store, time.time())
    finally:
        store.close()
    return f"sqlite:///{path}"


@pytest.fixture
def redis_url(redis_server):
    prefix = f"cli{next(_prefixes)}"
    store = RedisStore(redis_server.url, prefix=prefix)
    try:
        fill(store, time.time())
        yield f"{redis_server.url}?prefix={prefix}"
        for key in store.redis.scan_iter(f"{prefix}:*"):
            store.redis.delete(key)
    finally:
        store.close()


def history(capsys, *args):
    code = main(["history", *args])
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "PROGRESSCAST_STORE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "progresscast", "history", *args],
        cwd=ROOT,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_lists_kinds_with_their_medians(capsys, sqlite_url):
    code, out, err = history(capsys, "--store", sqlite_url)
    assert code == 0, err
    header, nightly, report = out.splitlines()
    assert header.split() == ["KIND", "RUNS", "LAST", "MEDIAN", "STAGES", "(median)"]
    assert nightly.startswith("nightly: import/all  ")
    assert nightly.split("  ")[-1] == "fetch 30.0s · load 2m00s"
    assert "2h ago" in nightly and "2m30s" in nightly
    assert report.split()[:4] == ["report.pdf", "3", "10s", "ago"]
    assert "12.0s" in report  # the median of 10, 14, 12
    assert report.endswith("parsing 2.0s · analyzing 9.0s · formatting 1.0s")


def test_json_lists_the_same(capsys, sqlite_url):
    code, out, _ = history(capsys, "--store", sqlite_url, "--json")
    assert code == 0
    kinds = json.loads(out)
    assert [k["kind"] for k in kinds] == ["nightly: import/all", "report.pdf"]
    report = kinds[1]
    assert report["runs"] == 3 and report["median_elapsed"] == 12.0
    assert report["median_stages"] == [["parsing", 2.0], ["analyzing", 9.0], ["formatting", 1.0]]
    assert time.time() - report["last_finished_at"] == pytest.approx(10, abs=5)


def test_one_kinds_runs_newest_first(capsys, sqlite_url):
    code, out, _ = history(capsys, "--store", sqlite_url, "--kind", "report.pdf")
    assert code == 0
    title, header, *rows = out.splitlines()
    assert title == "report.pdf: 3 runs"
    assert header.split() == ["FINISHED", "(UTC)", "AGO", "ELAPSED", "JOB", "STAGES"]
    assert [row.split()[4] for row in rows] == ["p3", "p2", "p1"]
    assert rows[0].split()[3] == "12.0s"
    assert rows[0].endswith("parsing 3.0s · analyzing 9.0s · formatting 0.0s")

    code, out, _ = history(capsys, "--store", sqlite_url, "--kind", "report.pdf", "--json")
    body = json.loads(out)
    assert body["kind"] == "report.pdf"
    assert [r["job_id"] for r in body["runs"]] == ["p3", "p2", "p1"]
    assert body["runs"][2]["stages"] == [["parsing", 1.0], ["analyzing", 8.0], ["formatting", 1.0]]

    code, out, _ = history(capsys, "--store", sqlite_url, "--kind", "nope")
    assert code == 0 and out.strip() == "(no runs of 'nope')"


def test_reset_one_kind_then_all(capsys, sqlite_url):
    code, out, _ = history(capsys, "--store", sqlite_url, "--reset", "report.pdf")
    assert code == 0 and out.strip() == "removed 3 runs of 'report.pdf'"
    _, out, _ = history(capsys, "--store", sqlite_url, "--json")
    assert [k["kind"] for k in json.loads(out)] == ["nightly: import/all"]

    code, out, _ = history(capsys, "--store", sqlite_url, "--reset-all", "--json")
    assert code == 0 and json.loads(out) == {"kind": None, "removed": 1}
    _, out, _ = history(capsys, "--store", sqlite_url)
    assert out.strip() == "(no history)"
    _, out, _ = history(capsys, "--store", sqlite_url, "--reset-all")
    assert out.strip() == "removed 0 runs of every kind"


def test_the_store_comes_from_the_environment(capsys, sqlite_url, monkeypatch):
    monkeypatch.setenv("PROGRESSCAST_STORE_URL", sqlite_url)
    assert default_store_url() == sqlite_url
    code, out, _ = history(capsys, "--kind", "nightly: import/all")
    assert code == 0 and "n1" in out
    # --store wins over the environment
    monkeypatch.setenv("PROGRESSCAST_STORE_URL", "sqlite:////nonexistent/x.db")
    code, out, _ = history(capsys, "--store", sqlite_url)
    assert code == 0 and "report.pdf" in out


def test_without_the_environment_the_standalone_servers_store(monkeypatch):
    from config import Config

    monkeypatch.delenv("PROGRESSCAST_STORE_URL", raising=False)
    monkeypatch.setenv("PROGRESSCAST_INSTANCE_PATH", "/elsewhere")  # the server ignores it too
    assert default_store_url() == Config.STORE_URL


def test_a_subprocess_on_a_sqlite_file(sqlite_url):
    out = cli(env={"PROGRESSCAST_STORE_URL": sqlite_url})
    assert out.returncode == 0, out.stderr
    assert "report.pdf" in out.stdout and "nightly: import/all" in out.stdout
    out = cli("--reset", "nightly: import/all", env={"PROGRESSCAST_STORE_URL": sqlite_url})
    assert out.returncode == 0 and out.stdout.strip() == "removed 1 run of 'nightly: import/all'"


def test_a_subprocess_on_redis(redis_url):
    out = cli("--store", redis_url, "--json")
    assert out.returncode == 0, out.stderr
    kinds = json.loads(out.stdout)
    assert [(k["kind"], k["runs"]) for k in kinds] == [
        ("nightly: import/all", 1),
        ("report.pdf", 3),
    ]
    assert kinds[1]["median_elapsed"] == 12.0

    out = cli("--store", redis_url, "--kind", "report.pdf")
    assert out.returncode == 0, out.stderr
    assert [row.split()[4] for row in out.stdout.splitlines()[2:]] == ["p3", "p2", "p1"]

    out = cli("--store", redis_url, "--reset", "report.pdf")
    assert out.returncode == 0 and out.stdout.strip() == "removed 3 runs of 'report.pdf'"
    out = cli("--store", redis_url, "--reset-all")
    assert out.returncode == 0 and out.stdout.strip() == "removed 1 run of every kind"
    out = cli("--store", redis_url)
    assert out.returncode == 0 and out.stdout.strip() == "(no history)"


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(capsys, tmp_path):
    path = tmp_path / "typo.db"
    code, out, err = history(capsys, "--store", f"sqlite:///{path}")
    assert code == 2 and out == ""
    assert f"no SQLite store at {path}" in err
    assert not path.exists()


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("postgres://x/y", 2, "unsupported store URL"),
        ("redis://127.0.0.1:{port}/0", 4, "unreachable"),
    ],
)
def test_bad_or_unreachable_stores(capsys, url, code, message):
    got, out, err = history(capsys, "--store", url.format(port=free_port()))
    assert got == code and out == ""
    assert message in err and "Traceback" not in err


def test_kind_and_reset_go_alone(capsys, sqlite_url):
    with pytest.raises(SystemExit) as exc:
        main(["history", "--store", sqlite_url, "--kind", "a", "--reset", "b"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
