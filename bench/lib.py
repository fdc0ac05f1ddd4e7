"""Process plumbing for bench/run.py: servers, load generators, measurements.

Every process is started in its own session (process group) and registered;
``cleanup()`` (also run at exit and on SIGINT/SIGTERM) kills every group, so
nothing outlives a run. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
NODE = shutil.which("node") or "node"

_procs: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    cmd: list[str], *, log: Path | None = None, env: dict | None = None, **kw
) -> subprocess.Popen:
    """Start ``cmd`` in a new session; stdout/stderr to ``log`` unless given."""
    if log is not None:
        out = open(log, "ab")  # noqa: SIM115  (the child keeps it; closed with the process)
        kw.setdefault("stdout", out)
        kw.setdefault("stderr", subprocess.STDOUT)
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )
    _procs.append(proc)
    return proc


def kill(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout`` s, reap."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ValueError):
        _procs.remove(proc)


def cleanup() -> None:
    for proc in list(_procs):
        kill(proc, timeout=3)


def _on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    import atexit

    atexit.register(cleanup)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def wait_http(
    url: str, proc: subprocess.Popen, timeout: float = 30, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{tail}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


# ------------------------------------------------------------------ measures


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for p in tree(pid):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for p in tree(pid):
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def system_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class CpuMeter:
    """CPU of some process trees, and of the whole machine, between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_seconds(v) for k, v in self.groups.items()}
        self.sys0 = system_busy_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        out = {k: 100 * (cpu_seconds(v) - self.c0[k]) / wall for k, v in self.groups.items()}
        busy = 100 * (system_busy_seconds() - self.sys0) / wall
        out["machine"] = busy
        # CPU used on this machine by anything not measured here (other tests, the OS)
        out["foreign"] = max(0.0, busy - sum(v for k, v in out.items() if k != "machine"))
        out["wall"] = wall
        return out


# ---------------------------------------------------------------- load gens


class Loadgen:
    """One bench/loadgen.mjs process, driven over stdin/stdout."""

    def __init__(
        self,
        url: str,
        *,
        jobs: int,
        tokens: Path | None,
        log: Path,
        deflate: bool = True,
        transport: str = "socket.io",
    ) -> None:
        opts = {"url": url, "jobs": jobs, "tokens": str(tokens) if tokens else None,
                "deflate": deflate, "transport": transport}  # fmt: skip
        self.log = log
        self.proc = spawn(
            [NODE, "--max-old-space-size=4096", str(BENCH / "loadgen.mjs"), json.dumps(opts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log, "ab"),  # noqa: SIM115
            cwd=BENCH,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.decode())

    def send(self, cmd: str, **kw: Any) -> int:
        self._next += 1
        self.proc.stdin.write((json.dumps({"id": self._next, "cmd": cmd, **kw}) + "\n").encode())
        self.proc.stdin.flush()
        return self._next

    def receive(self, ident: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load generator {self.pid}: no reply within {timeout}s")
            try:
                line = self._lines.get(timeout=min(left, 1))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"load generator exited ({self.proc.returncode}): "
                        + self.log.read_text(errors="replace")[-2000:]
                    ) from None
                continue
            reply = json.loads(line)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"load generator: {reply['error']}")
                return reply

    def call(self, cmd: str, timeout: float = 60, **kw: Any) -> dict:
        return self.receive(self.send(cmd, **kw), timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("close", timeout=5)
        kill(self.proc, timeout=3)


def call_all(gens: list[Loadgen], cmd: str, args: list[dict] | None = None, timeout: float = 60):
    """Send ``cmd`` to every generator at once (per-generator ``args``), then collect."""
    args = args or [{} for _ in gens]
    ids = [g.send(cmd, **a) for g, a in zip(gens, args, strict=True)]
    return [g.receive(i, timeout) for g, i in zip(gens, ids, strict=True)]


# ------------------------------------------------------------------- redis


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = spawn(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        kill(self.proc)
