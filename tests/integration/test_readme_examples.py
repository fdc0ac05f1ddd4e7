"""The README's shell examples, taken from README.md itself and run with bash
as a user pastes them after ``make run`` (issue 11): against a real demo server
(PROGRESSCAST_DEMO=1, no PROGRESSCAST_SECRET_KEY, as ``make run`` starts it),
in a shell where nothing but the README's own ``source .venv/bin/activate``
puts progresscast's python on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from progresscast import cli
from progresscast.tokens import demo_secret_path, verify_token
from tests.harness import ROOT, ServerProcess, require_component

pytestmark = pytest.mark.server

README = ROOT / "README.md"
VENV_BIN = ROOT / ".venv" / "bin"
#: the server the README's examples talk to (`make run`)
README_URL = "http://127.0.0.1:8000"


def bash_block(heading: str) -> str:
    """The first ```bash block of the README section ``## heading``."""
    text = README.read_text()
    assert f"\n## {heading}\n" in text, f"README has no section {heading!r}"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"README section {heading!r} has no bash block"
    return match.group(1)


def user_env(**extra: str) -> dict[str, str]:
    """A user's fresh terminal: no venv active, no secret or token exported."""
    venv_bins = {str(VENV_BIN), os.path.dirname(sys.executable)}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p not in venv_bins]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("PROGRESSCAST_")
    }
    return {**env, "PATH": os.pathsep.join(path), **extra}


def bash(script: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``script`` in bash, in the clone, as pasted into a terminal."""
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def normalized(line: str) -> str:
    """What differs from run to run: job ids, durations and ages."""
    line = re.sub(r"\b[0-9a-f]{32}\b", "<id>", line)
    line = re.sub(r" in \d+(s|m\d\ds|h\d\dm)$", " in <t>", line)
    return re.sub(r"(<id>  .*)  \d+[smhd]$", r"\1  <age>", line)


def sample_output(block: str) -> list[str]:
    """The output the README shows for a block's commands (its ``# ...`` lines),
    where a run can reproduce it: watch's last lines, the exit code, the jobs table."""
    shown = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    sample = [line for line in shown if line.startswith(("completed: ", "result: "))]
    exit_comment = next(line for line in block.splitlines() if line.startswith("echo $?"))
    assert "# 0 completed" in exit_comment
    table = next(i for i, line in enumerate(shown) if line.startswith("ID "))
    return [*sample, "0", *shown[table : table + 2]]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """The server as `make run` starts it (development config, demo mode, no
    secret: it makes one up in its instance folder), on a free port."""
    require_component(shutil.which("bash") is not None, "bash")
    require_component(shutil.which("curl") is not None, "curl")
    require_component((VENV_BIN / "activate").is_file(), "the .venv that `make run` makes")
    workdir = tmp_path_factory.mktemp("readme")
    env = {
        "PROGRESSCAST_CONFIG": "development",
        "PROGRESSCAST_DEMO": "1",
        "PROGRESSCAST_SECRET_KEY": "",  # none, as in `make run`
        "PROGRESSCAST_INSTANCE_PATH": str(workdir / "instance"),
    }
    server = ServerProcess(workdir, env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shell_env(demo_server) -> dict[str, str]:
    # The README's server keeps its secret in the clone's instance/; this one in
    # its own, which the README says to name with PROGRESSCAST_INSTANCE_PATH.
    return user_env(PROGRESSCAST_INSTANCE_PATH=demo_server.env["PROGRESSCAST_INSTANCE_PATH"])


def readme_script(block: str, url: str) -> str:
    assert block.count(f"URL={README_URL}\n") == 1, "the block sets URL to the make-run server"
    return block.replace(f"URL={README_URL}\n", f"URL={url}\n")


def test_http_ingestion_then_watch_and_jobs_examples_run_as_written(demo_server, shell_env):
    http_block = bash_block("Report progress over HTTP (any language)")
    watch_block = bash_block("Watch a job from Python or a terminal")
    assert "source .venv/bin/activate" in http_block  # the README's own venv step
    script = (
        readme_script(http_block, demo_server.url)
        + 'echo "JOB=$JOB"; echo "TOKEN=$TOKEN"; echo "=== watch and jobs"\n'
        + watch_block
    )
    out = bash(script, shell_env)
    report = f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}\nserver:\n{demo_server.log()}"
    assert out.returncode == 0, report
    assert "No module named" not in out.stderr and "error:" not in out.stderr, report
    ingest, _, shown = out.stdout.partition("=== watch and jobs\n")
    values = dict(re.findall(r"(?m)^(JOB|TOKEN)=(\S+)$", ingest))
    assert set(values) == {"JOB", "TOKEN"}, report

    # `token` signed with the demo server's own secret, and said so on stderr.
    secret_file = demo_secret_path(demo_server.env["PROGRESSCAST_INSTANCE_PATH"])
    with open(secret_file) as f:
        assert verify_token(f.read().strip(), values["TOKEN"]).sub == "alice"
    assert f"signed with the demo server's secret from {secret_file}" in out.stderr, report

    # The job exists, owned by alice, and ended on what was posted (read back over REST).
    job = requests.get(
        f"{demo_server.url}/api/jobs/{values['JOB']}",
        headers={"Authorization": f"Bearer {values['TOKEN']}"},
        timeout=10,
    ).json()
    assert job["name"] == "nightly import" and job["owner"] == "alice", job
    assert job["status"] == "completed" and job["result"] == {"rows": 120000}, job
    assert job["progress"] == 100.0 and [s["status"] for s in job["stages"]] == [
        "completed",
        "completed",
    ], job
    events = requests.get(
        f"{demo_server.url}/api/jobs/{values['JOB']}/events",
        headers={"Authorization": f"Bearer {values['TOKEN']}"},
        timeout=10,
    ).json()["events"]
    assert any(
        e["type"] == "progress_update" and e.get("message") == "3 of 6 files" for e in events
    ), events

    # `watch` and `jobs` print what the README shows (ids, times and ages aside).
    real = [normalized(line) for line in shown.splitlines()]
    expected = [normalized(line) for line in sample_output(watch_block)]
    assert any(real[i : i + len(expected)] == expected for i in range(len(real))), (
        "README shows:\n" + "\n".join(expected) + "\nthe commands print:\n" + "\n".join(real)
    )
    assert values["JOB"] in shown


def test_the_demo_server_answers_watch_and_jobs_without_a_token(demo_server, shell_env):
    """As the README says: no token is the demo user, who sees the demo's jobs only."""
    readme = README.read_text()
    jobs_cmd, watch_cmd = "python -m progresscast jobs $URL", "python -m progresscast watch $URL ID"
    assert f"`{jobs_cmd}`" in readme and f"`{watch_cmd}`" in readme
    # A job of the demo user, created and ended without a token.
    api = f"{demo_server.url}/api/jobs"
    created = requests.post(
        api, json={"name": "readme demo", "stages": [{"name": "only"}]}, timeout=10
    )
    assert created.status_code == 201, created.text
    demo_job = created.json()["job_id"]
    for event in ({"type": "job_started"}, {"type": "job_completed", "result": {"ok": 1}}):
        r = requests.post(f"{api}/{demo_job}/events", json=event, timeout=10)
        assert r.status_code == 201, r.text
    # Another user's job, with a token from the README's `token` command.
    token = bash("source .venv/bin/activate\npython -m progresscast token bob", shell_env)
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.splitlines()[-1]}"}
    bobs = requests.post(
        api, json={"name": "bob's", "stages": [{"name": "only"}]}, headers=headers, timeout=10
    ).json()["job_id"]

    env = {**shell_env, "URL": demo_server.url}
    listed = bash(f"source .venv/bin/activate\n{jobs_cmd}", env)
    assert listed.returncode == 0, listed.stderr
    assert demo_job in listed.stdout and bobs not in listed.stdout, listed.stdout

    watched = bash(f"source .venv/bin/activate\n{watch_cmd.replace('ID', demo_job)}", env)
    assert watched.returncode == 0, watched.stderr
    assert f"completed: readme demo ({demo_job})" in watched.stdout, watched.stdout

    refused = bash(f"source .venv/bin/activate\n{watch_cmd.replace('ID', bobs)}", env)
    assert refused.returncode == 3 and "not_found" in refused.stderr, (
        refused.stdout,
        refused.stderr,
    )


def test_token_looks_where_a_server_from_this_checkout_keeps_its_demo_secret(monkeypatch):
    """Without PROGRESSCAST_INSTANCE_PATH, `token` reads the demo secret from the
    instance folder create_app uses by default (the one `make run`'s server writes)."""
    from config import TestConfig
    from web import create_app

    monkeypatch.delenv("PROGRESSCAST_INSTANCE_PATH", raising=False)
    settings = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    app = create_app({**settings, "SECRET_KEY": "s" * 48})
    try:
        assert Path(cli._instance_path()) == Path(app.instance_path)
    finally:
        app.extensions["progresscast"].tracker.store.close()


def test_watch_from_curl_runs_as_written(demo_server, shell_env):
    """The SSE example: curl -N on the HTTP example's job prints its
    snapshot and ends; with Last-Event-ID, exactly the events after it."""
    http_block = bash_block("Report progress over HTTP (any language)")
    curl_block = bash_block("Watch from curl")
    out = bash(
        readme_script(http_block, demo_server.url) + "echo '=== sse'\n" + curl_block, shell_env
    )
    report = f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}\nserver:\n{demo_server.log()}"
    assert out.returncode == 0, report
    sse = out.stdout.split("=== sse\n", 1)[1]
    first, _, resumed = sse.partition("\n\nretry: ")
    assert first.startswith("retry: 2000\n\nid: 7\nevent: snapshot\ndata: {"), report
    assert '"status":"completed"' in first and "event: job_" not in first, report
    ids = re.findall(r"(?m)^id: (\d+)\nevent: (\w+)$", resumed)
    assert ids == [("6", "stage_completed"), ("7", "job_completed")], report
    # what the README shows of it
    shown = [line[2:] for line in curl_block.splitlines() if line.startswith("# id: ")]
    assert shown == ["id: 7", "id: 6", "id: 7"]
