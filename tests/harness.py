"""Real server processes and real clients for integration tests.

``ServerProcess`` runs ``gunicorn -k eventlet -w 1 wsgi:app`` on a free
loopback port with its own store file; ``SocketClient`` is the python-socketio
client over a websocket, with every job event collected in a queue so tests
wait for events with bounded timeouts instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

from progresscast.client import ordered_socketio_client
from progresscast.tokens import issue_token
from tests.protocol_spec import EVENT_EXTRA_KEYS

ROOT = Path(__file__).resolve().parents[1]
#: every server these tests start signs tokens with this (fresh per test session)
SECRET = secrets.token_urlsafe(48)


def token_for(user: str, **claims: Any) -> str:
    """A valid token for ``user`` on the test servers (admin=, service=, jobs=, ttl=)."""
    return issue_token(SECRET, user, **claims)


NAMESPACE = "/progress"
EVENT_TYPES = tuple(EVENT_EXTRA_KEYS)  # every job event name
TERMINAL = {"job_completed", "job_failed", "job_cancelled"}
#: DESIGN §3's example pipeline: a document check's weighted stages
DOC_STAGES = [
    {"name": "parsing", "weight": 0.15},
    {"name": "analyzing", "weight": 0.6},
    {"name": "integrating", "weight": 0.2},
    {"name": "formatting", "weight": 0.05},
]


def require_component(ok: bool, what: str) -> None:
    """Skip locally when a real component is missing; under CI=true, fail."""
    if ok:
        return
    message = f"{what} is not available"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must install it (see Makefile `test`)", pytrace=False)
    pytest.skip(message)


#: under pytest-xdist each worker takes its servers' ports from a range of
#: its own, below the kernel's ephemeral ports (32768 and up): a port one
#: worker found free cannot be taken meanwhile by the other worker's servers
#: or by its clients' outgoing connections
_PORTS_PER_WORKER = 2000
_next_port: list[int] = []


def free_port() -> int:
    """A loopback port nothing listens on, for a server a test starts."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    first = 20000 + int(worker[2:]) * _PORTS_PER_WORKER
    if not _next_port:  # where a previous run of this worker is unlikely to linger
        _next_port.append(first + secrets.randbelow(_PORTS_PER_WORKER))
    for _ in range(_PORTS_PER_WORKER):
        port = _next_port[0]
        _next_port[0] = first + (port + 1 - first) % _PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + _PORTS_PER_WORKER - 1}")


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in
    its session: ``sig`` first, SIGKILL if it lingers, then SIGKILL for any
    child left behind, so nothing outlives the test."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def log_tail(path: Path, size: int = 5000) -> str:
    """The end of a server's log (what a failure message shows)."""
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


class SessionProcess:
    """A command in a process session of its own (so :func:`stop_group` ends
    its children too: gunicorn's worker, Celery's pool), logging to
    ``log_path``; :meth:`start` returns once :meth:`ready` says so."""

    #: what the process is, in failure messages
    what = "process"
    #: how much of the log's end a failure shows
    log_size = 5000

    def __init__(self, cmd: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.cmd, self.cwd, self.env, self.log_path = cmd, cwd, env, log_path
        self.proc: subprocess.Popen | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return self.cmd[-1]

    def start(self, timeout: float = 30) -> SessionProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        self._log = log
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            wait_until(self._up, timeout, what=self.describe())
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.what} did not start:\n{self.log()}") from None
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.what} exited with {self.proc.returncode}:\n{self.log()}")
        return self.ready()

    def log(self) -> str:
        return log_tail(self.log_path, self.log_size)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process and every process of its session."""
        if self.proc is None:
            return
        stop_group(self.proc, sig, timeout=15)
        self._log.close()
        self.proc = None


class AppProcess(SessionProcess):
    """A web app, up once ``health_path`` answers 200."""

    what = "server"

    def __init__(
        self,
        cmd: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        port: int,
        log_path: Path,
        health_path: str = "/healthz",
    ) -> None:
        super().__init__(cmd, cwd=cwd, env=env, log_path=log_path)
        self.port, self.health_path = port, health_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        return f"{self.cmd[-1]} on port {self.port}"

    def ready(self) -> bool:
        try:
            return requests.get(self.url + self.health_path, timeout=1).status_code == 200
        except requests.RequestException:
            return False


def gunicorn_cmd(worker: str, port: int, app: str, python: str = sys.executable) -> list[str]:
    """``gunicorn -k WORKER -w 1`` on 127.0.0.1:PORT serving ``app``."""
    cmd = [python, "-m", "gunicorn", "-k", worker, "-w", "1"]
    cmd += ["--threads", "20"] if worker == "gthread" else []
    return [*cmd, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3", app]


class ServerProcess:
    """One gunicorn + eventlet server on 127.0.0.1 with its own SQLite file."""

    def __init__(
        self, workdir: Path, env: dict[str, str] | None = None, worker: str = "eventlet"
    ) -> None:
        self.workdir = workdir
        self.worker = worker
        self.env = {
            "PROGRESSCAST_STORE_URL": f"sqlite:///{workdir / 'progresscast.db'}",
            "PROGRESSCAST_DEMO": "0",
            "PROGRESSCAST_SECRET_KEY": SECRET,
            **(env or {}),
        }
        self.port = 0
        self.app: AppProcess | None = None
        self.log_path = workdir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.app.proc if self.app is not None else None

    def start(self, port: int | None = None, timeout: float = 30) -> ServerProcess:
        require_component(_has_module("gunicorn"), "gunicorn")
        self.port = port or free_port()
        # One name per address, as for instances on separate hosts: a restart
        # on the same port is "the same server" (its interrupted jobs fail).
        env = {
            **os.environ,
            "PROGRESSCAST_SERVER_ID": f"127.0.0.1:{self.port}",
            **self.env,
            "PYTHONUNBUFFERED": "1",
        }
        self.app = AppProcess(
            gunicorn_cmd(self.worker, self.port, "wsgi:app"),
            cwd=ROOT,
            env=env,
            port=self.port,
            log_path=self.log_path,
        ).start(timeout)
        return self

    def log(self) -> str:
        return log_tail(self.log_path)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and every process of its session (gunicorn's worker too)."""
        if self.app is not None:
            self.app.stop(sig)
            self.app = None

    # -- HTTP helper: authenticated as `user` unless headers say otherwise

    def http(
        self, method: str, path: str, user: str | None = "alice", **kwargs
    ) -> requests.Response:
        auth = {"Authorization": f"Bearer {token_for(user)}"} if user else {}
        headers = {**auth, **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


class RedisServer:
    """A throwaway redis-server on a free loopback port.

    ``persistent=True`` keeps an append-only file in ``workdir`` (fsync on
    every write), so the data survives a stop and start, as a production
    store must; otherwise nothing is written to disk.
    """

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.workdir = workdir
        self.persistent = persistent
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> RedisServer:
        binary = shutil.which("redis-server")
        require_component(binary is not None, "redis-server")
        self.port = port or self.port or free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.workdir),
                *(
                    ["--appendonly", "yes", "--appendfsync", "always"]
                    if self.persistent
                    else ["--appendonly", "no"]
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 10, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        import redis

        if self.proc.poll() is not None:  # never another process's redis on our port
            code = self.proc.returncode
            raise AssertionError(f"redis-server on port {self.port} exited ({code})")
        try:
            # Closed at once: a client left to the garbage collector warns
            # (ResourceWarning) in whatever test happens to be running then.
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return client.ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None


class Nginx:
    """nginx in the foreground with the project's deploy/nginx.conf, its
    upstream ports and listen port replaced, everything else as shipped."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.workdir = workdir
        self.upstream_ports = upstream_ports
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        servers = "\n".join(f"    server 127.0.0.1:{p};" for p in self.upstream_ports)
        site = re.sub(
            r"(?m)^    server 127\.0\.0\.1:\d+;\n(    server 127\.0\.0\.1:\d+;\n)*",
            servers + "\n",
            site,
        )
        site = re.sub(r"listen \d+;", f"listen 127.0.0.1:{self.port};", site)
        temp = self.workdir / "tmp"
        return (
            f"pid {self.workdir}/nginx.pid;\nerror_log {self.workdir}/error.log warn;\n"
            "worker_processes 1;\nevents { worker_connections 1024; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {temp}/body;\n"
            f" proxy_temp_path {temp}/proxy;\n fastcgi_temp_path {temp}/fastcgi;\n"
            f" uwsgi_temp_path {temp}/uwsgi;\n scgi_temp_path {temp}/scgi;\n{site}\n}}\n"
        )

    def start(self) -> Nginx:
        binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        require_component(binary is not None, "nginx")
        self.port = free_port()
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.workdir), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode()}")
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 15, what="nginx")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc.stderr.close()
            self.proc = None


class CeleryWorker(SessionProcess):
    """``python -m celery -A APP worker`` consuming ``queue`` as worker
    ``<queue>@localhost``, logging to ``workdir``; up once it logs that it
    is ready."""

    what = "worker"
    log_size = 20000

    def __init__(
        self,
        workdir: Path,
        app: str,
        pool: str,
        queue: str,
        env: dict[str, str],
        *,
        cwd: Path = ROOT,
        concurrency: int | None = None,
    ) -> None:
        self.app, self.pool, self.queue = app, pool, queue
        self.concurrency = concurrency or (2 if pool == "prefork" else 4)
        self.name = f"{queue}@localhost"
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", pool]
        cmd += ["-c", str(self.concurrency), "-Q", queue, "-n", self.name]
        cmd += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        path = os.pathsep.join(
            filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")])
        )
        super().__init__(
            cmd,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
            log_path=workdir / f"worker-{queue}.log",
        )

    def describe(self) -> str:
        return f"celery worker {self.name}"

    def start(self, timeout: float = 45) -> CeleryWorker:
        require_component(_has_module("celery"), "celery")
        super().start(timeout)
        return self

    def ready(self) -> bool:
        return f"{self.name} ready." in self.log()

    def kill(self) -> None:
        """SIGKILL to every process of the worker (main and pool children)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def close_dropped_websocket(sio: socketio.Client, reason: Any = None) -> None:
    """For a python-socketio client's ``disconnect`` handler: python-engineio
    leaves the socket of a websocket that the *server* dropped open (a
    ResourceWarning, which this suite turns into an error in whatever test
    the garbage collector then runs in). On our own disconnect it closes it
    itself, and shutting it here would hang its read loop until the next ping."""
    if reason == sio.reason.CLIENT_DISCONNECT:
        return
    ws = getattr(sio.eio, "ws", None)
    if ws is not None:
        ws.shutdown()


class SocketClient:
    """python-socketio client on ``/progress`` that queues every job event."""

    def __init__(
        self, url: str, user: str = "alice", *, token: str | None = None, **connect: Any
    ) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.other: queue.Queue[tuple[str, Any]] = queue.Queue()  # non-job events
        source_ip = connect.pop("source_ip", None)
        options = {}
        if source_ip:
            # Connect from another loopback address (nginx's ip_hash keys on it):
            # a socket bound to it, handed to the websocket client.
            host, port = url.split("//", 1)[1].split(":")
            sock = socket.create_connection(
                (host, int(port)), timeout=10, source_address=(source_ip, 0)
            )
            options["websocket_extra_options"] = {"socket": sock}
        self.sio = ordered_socketio_client(reconnection=False, **options)
        for kind in EVENT_TYPES:
            self.sio.on(kind, self.events.put, namespace=NAMESPACE)
        self.sio.on(
            "*", lambda event, data=None: self.other.put((event, data)), namespace=NAMESPACE
        )
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self.sio.connect(
            url,
            namespaces=[NAMESPACE],
            auth={"token": token or token_for(user)},
            transports=["websocket"],
            wait_timeout=10,
            **connect,
        )

    def _on_disconnect(self, *args: Any) -> None:
        close_dropped_websocket(self.sio, *args)
        self.other.put(("disconnect", args))

    def call(self, event: str, data: Any = None, timeout: float = 10) -> Any:
        return self.sio.call(
            event, {} if data is None else data, namespace=NAMESPACE, timeout=timeout
        )

    def next_event(self, timeout: float = 10) -> dict:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def events_until_terminal(self, job_id: str, timeout: float = 30) -> list[dict]:
        """Collect this job's events until its terminal event arrives."""
        deadline = time.monotonic() + timeout
        got: list[dict] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no terminal event for {job_id} within {timeout}s: {[e['type'] for e in got]}"
                )
            event = self.next_event(left)
            if event["job_id"] != job_id:
                continue
            got.append(event)
            if event["type"] in TERMINAL:
                return got

    def events_by_job_until_terminal(self, job_ids, timeout: float = 30) -> dict[str, list]:
        """Collect every job's events until each of ``job_ids`` has ended."""
        deadline = time.monotonic() + timeout
        got: dict[str, list[dict]] = {}
        pending = set(job_ids)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"jobs {pending} did not end within {timeout}s")
            event = self.next_event(left)
            got.setdefault(event["job_id"], []).append(event)
            if event["type"] in TERMINAL:
                pending.discard(event["job_id"])
        return got

    def close(self) -> None:
        self.sio.shutdown()  # disconnects, and stops any reconnection attempt


def assert_gapless(events: list[dict], first: int = 1) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), f"seq not gapless: {seqs}"


def other_events(
    client: SocketClient, name: str, timeout: float = 10, skipped: list | None = None
) -> tuple[str, object]:
    """The next non-job event called ``name`` a client received; the ones
    before it go to ``skipped``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = client.other.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {name!r} within {timeout}s") from None
        if event[0] == name:
            return event
        if skipped is not None:
            skipped.append(event)
