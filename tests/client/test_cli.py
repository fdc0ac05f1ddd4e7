"""``python -m progresscast watch|jobs`` as real subprocesses against a real
server, the job driven over REST while the CLI runs."""

from __future__ import annotations

import contextlib
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.harness import ROOT, free_port, token_for, wait_until

from .conftest import create_job, post

pytestmark = pytest.mark.server


@contextlib.contextmanager
def sigint_at_its_default():
    """Let a child started in this block get SIGINT at its default disposition.

    A child inherits an *ignored* SIGINT: a shell without job control starts
    background commands (``make test &`` in a script) that way, and Python
    then never installs its KeyboardInterrupt handler, so the CLI would not
    see Ctrl-C at all. A handled signal is reset to its default by exec, so
    handling it here for the moment of the fork gives the child the default.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Cli:
    """``python -m progresscast ARGS`` with its output read as it comes, started
    with SIGINT at its default, as from a terminal (whatever pytest inherited)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "PROGRESSCAST_TOKEN"}
        with sigint_at_its_default():
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "progresscast", *args],
                cwd=ROOT,
                env={**environ, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, self.lines)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, None)),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str], lines: queue.Queue | None) -> None:
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line)

    def first_line(self, timeout: float = 15) -> str:
        """The first progress line: the CLI has joined the job."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no output within {timeout}s: {self.finish()}") from None

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.close()
        return code, "".join(self.out), "".join(self.err)

    def close(self) -> None:
        for reader in self.readers:
            reader.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def cli():
    made: list[Cli] = []

    def run(*args: str, **kwargs) -> Cli:
        made.append(Cli(*args, **kwargs))
        return made[-1]

    yield run
    for proc in made:
        proc.kill()
        proc.close()


def drive(server, job_id, user, *, end):
    post(server, job_id, user, type="progress_update", stage="parsing", stage_progress=50)
    post(
        server,
        job_id,
        user,
        type="progress_update",
        stage="analyzing",
        stage_progress=25,
        message="page 10 of 40",
    )
    post(server, job_id, user, type="progress_update", stage="analyzing", stage_progress=63)
    post(server, job_id, user, **end)


def test_watch_completed_exits_0(shared_server, cli):
    job_id = create_job(shared_server, "cli-ok")
    run = cli("watch", shared_server.url, job_id, "--token", token_for("cli-ok"), "--interval", "0")
    assert run.first_line().startswith("  0.0% | parsing (1/4) 0%")
    drive(shared_server, job_id, "cli-ok", end={"type": "job_completed", "result": {"pages": 40}})
    code, out, err = run.finish()
    assert code == 0, (out, err)
    assert "parsing (1/4)" in out and "analyzing (2/4) 25%" in out and "page 10 of 40" in out
    # 15 + 60 × 0.25, the ETA (cold: from the pace of the work so far), the message
    assert re.search(r" 30\.0% \| analyzing \(2/4\) 25% \| ETA about \d+ s \| page 10 of 40", out)
    assert "100.0% | completed" in out
    assert f"completed: report.pdf ({job_id})" in out and 'result: {"pages": 40}' in out
    assert err == ""


def test_watch_failed_exits_1_with_the_error(shared_server, cli):
    job_id = create_job(shared_server, "cli-fail")
    run = cli(
        "watch", shared_server.url, job_id, "--token", token_for("cli-fail"), "--interval", "0"
    )
    run.first_line()
    error = {"message": "page 41 is not a PDF page", "type": "ValueError"}
    drive(shared_server, job_id, "cli-fail", end={"type": "job_failed", "error": error})
    code, out, err = run.finish()
    assert code == 1, (out, err)
    assert "analyzing (2/4) 63%" in out and "52.8% | analyzing" in out
    assert "failed: report.pdf" in err and "in stage analyzing" in err
    assert "ValueError: page 41 is not a PDF page" in err


def test_watch_cancelled_exits_2_with_the_reason(shared_server, cli):
    job_id = create_job(shared_server, "cli-cancel")
    run = cli("watch", shared_server.url, job_id, "--token", token_for("cli-cancel"))
    run.first_line()
    r = shared_server.http("POST", f"/api/jobs/{job_id}/cancel", user="cli-cancel", json={})
    assert r.status_code == 202, r.text
    drive(
        shared_server, job_id, "cli-cancel", end={"type": "job_cancelled", "reason": "user asked"}
    )
    code, out, err = run.finish()
    assert code == 2, (out, err)
    assert "analyzing" in out and "cancelled: report.pdf" in err and "user asked" in err


def test_watch_token_from_the_environment(shared_server, cli):
    job_id = create_job(shared_server, "cli-env")
    post(shared_server, job_id, "cli-env", type="job_completed")
    run = cli("watch", shared_server.url, job_id, env={"PROGRESSCAST_TOKEN": token_for("cli-env")})
    code, out, err = run.finish()
    assert code == 0, (out, err)
    assert "100.0% | completed" in out


@pytest.mark.parametrize(
    ("job", "token", "code_name"),
    [
        ("no-such-job", "good", "not_found"),
        ("other-users", "good", "not_found"),
        ("mine", "not-a-jwt", "unauthorized"),
        ("mine", None, "unauthorized"),
    ],
)
def test_watch_refused_exits_3(shared_server, cli, job, token, code_name):
    mine = create_job(shared_server, "cli-refused")
    job_id = {"mine": mine, "other-users": create_job(shared_server, "someone")}.get(job, job)
    args = ["--token", token_for("cli-refused") if token == "good" else token] if token else []
    code, out, err = cli("watch", shared_server.url, job_id, *args).finish()
    assert code == 3, (out, err)
    assert f"error: {code_name}:" in err and out == ""


def test_watch_unreachable_exits_4(cli):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = cli("watch", url, "j1", "--token", "t", "--timeout", "1").finish()
    assert code == 4, (out, err)
    assert "gave up after 1s" in err


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_watch_ctrl_c_exits_130(shared_server, cli, inherited):
    """Also when pytest itself runs with SIGINT ignored (started in the
    background by a shell without job control): the CLI gets Ctrl-C as from
    a terminal, not the disposition pytest inherited."""
    job_id = create_job(shared_server, f"cli-int-{inherited}")
    previous = signal.signal(
        signal.SIGINT, signal.SIG_IGN if inherited == "ignored" else signal.default_int_handler
    )
    try:
        run = cli("watch", shared_server.url, job_id, "--token", token_for(f"cli-int-{inherited}"))
    finally:
        signal.signal(signal.SIGINT, previous)
    run.first_line()
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err


def test_jobs_lists_the_callers_jobs(shared_server, cli):
    user = "cli-jobs"
    done = create_job(shared_server, user)
    post(shared_server, done, user, type="job_completed")
    running = create_job(shared_server, user)
    post(shared_server, running, user, type="progress_update", stage="analyzing", stage_progress=50)
    queued = create_job(shared_server, user, start=False, name="nightly import")
    create_job(shared_server, "someone-else")
    token = token_for(user)

    code, out, err = cli("jobs", shared_server.url, "--token", token).finish()
    assert code == 0, (out, err)
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "PROGRESS", "STAGE", "AGE"]
    by_id = {row.split()[0]: row for row in rows}
    assert set(by_id) == {done, running, queued}  # only the caller's
    assert by_id[running].split()[1:5] == ["report.pdf", "running", "45.0%", "analyzing"]
    assert by_id[running].split()[5].endswith("s")  # age: seconds
    assert by_id[done].split()[2:5] == ["completed", "100.0%", "-"]
    assert "nightly import" in by_id[queued] and "queued" in by_id[queued]

    code, out, err = cli(
        "jobs", shared_server.url, "--status", "completed,queued", "--token", token
    ).finish()
    assert code == 0 and {row.split()[0] for row in out.splitlines()[1:]} == {done, queued}

    code, out, _ = cli("jobs", shared_server.url, "--limit", "1", "--token", token).finish()
    assert code == 0 and queued in out and "... 2 more (--limit)" in out

    code, out, _ = cli("jobs", shared_server.url, "--token", token_for("nobody")).finish()
    assert code == 0 and "(no jobs)" in out

    code, out, err = cli("jobs", shared_server.url, "--token", "not-a-jwt").finish()
    assert code == 3 and "error: unauthorized:" in err


def test_watch_on_a_terminal_draws_a_bar(shared_server):
    """With a terminal on stdout: one live line (rich) that ends on the final state."""
    job_id = create_job(shared_server, "cli-tty")
    master, child = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "PROGRESSCAST_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "progresscast", "watch", shared_server.url, job_id],
        cwd=ROOT,
        env={**environ, "PROGRESSCAST_TOKEN": token_for("cli-tty"), "COLUMNS": "120"},
        stdout=child,
        stderr=child,
    )
    os.close(child)
    chunks: list[bytes] = []

    def read():
        with contextlib.suppress(OSError):  # EIO once the child has exited
            while data := os.read(master, 4096):
                chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_until(lambda: b"parsing" in b"".join(chunks), 15, what="the bar")
        drive(shared_server, job_id, "cli-tty", end={"type": "job_completed"})
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        reader.join(5)
        os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "━" in screen and "report.pdf" in screen  # the bar and the job's name
    assert "parsing (1/4) 0%" in screen and "100.0% completed" in screen
    assert "completed: report.pdf" in screen
