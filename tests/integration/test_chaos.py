"""Chaos test of resume (issue 11, item 6), on real processes.

A client that applies only the rules of docs/protocol.md ("Resume") loses
nothing and repeats nothing across dropped connections, server SIGKILLs and
a Redis restart:

- redis-server with AOF (``appendfsync always``), restarted once with a
  graceful ``SHUTDOWN`` on the same port, its data kept;
- the server (gunicorn + eventlet, ``ServerProcess``) on that Redis as store
  and message queue, SIGKILLed three times and restarted on the same port;
- a worker process (tests/integration/chaos_worker.py) that uses only the
  library (``ProgressTracker.from_urls``) and runs 24 jobs at once, for as
  long as the chaos lasts; a few of them fail or are cancelled on purpose;
- 60 socket.io-client connections in one Node process
  (tests/integration/chaos_clients.mjs), 4 jobs each, each dropping its own
  connection about once a second and resuming with ``since``; they do not
  repair gaps (the project's clients would, and hide a loss).

At the end every client holds, for every job it watched, exactly the stored
history (read from Redis): seqs 1..N, each once, in order, equal events. Run
with ``-s`` to see the counts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
import requests

from progresscast import open_store
from tests.harness import (
    EVENT_TYPES,
    ROOT,
    TERMINAL,
    RedisServer,
    ServerProcess,
    require_component,
    stop_group,
    token_for,
    wait_until,
)

pytestmark = pytest.mark.server

HERE = Path(__file__).resolve().parent
N_JOBS = 24
N_CLIENTS = 60
JOBS_PER_CLIENT = 4
#: the faults, in order, and the earliest second (after the jobs start) of each
FAULTS = [
    (3.0, "server-kill"),
    (7.5, "server-kill"),
    (12.0, "redis-restart"),
    (16.0, "server-kill"),
]
#: the chaos phase lasts at least this long (and until MIN_FORCED drops)
MIN_CHAOS_SECONDS = 20.0
MIN_FORCED = 1000
#: how long Redis stays down during its restart (the outage, not a wait)
REDIS_DOWN_SECONDS = 0.5
#: bounded waits
RECOVERY_TIMEOUT = 30.0
END_TIMEOUT = 30.0


class JsonLines:
    """A child's stdout, read by a thread: JSON lines go to a queue, except
    ``{"stats": ...}`` lines, of which only the latest is kept."""

    def __init__(self, proc: subprocess.Popen, name: str) -> None:
        self.name = name
        self.lines: queue.Queue[dict] = queue.Queue()
        self.stats: dict[str, Any] = {}
        self.raw: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.raw.append(line.rstrip())
                continue
            if "stats" in message:
                self.stats = message["stats"]
            else:
                self.lines.put(message)

    def wait_for(self, key: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {key!r} line within {timeout}s")
            try:
                message = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if key in message:
                return message[key]


def send(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def ready(server: ServerProcess) -> bool:
    try:
        return requests.get(server.url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def describe(client: str, job: str, got: list[dict], want: list[dict]) -> str:
    """What is wrong with one client's copy of a job's history."""
    seqs = [e["seq"] for e in got]
    count = Counter(seqs)
    missing = sorted(set(range(1, len(want) + 1)) - set(seqs))
    duplicates = sorted(s for s, n in count.items() if n > 1)
    disorder = [(a, b) for a, b in itertools.pairwise(seqs) if b <= a]
    differing = [e["seq"] for e in got if 1 <= e["seq"] <= len(want) and e != want[e["seq"] - 1]]
    return (
        f"client {client}, job {job}: holds {len(got)} events, stored {len(want)};"
        f" missing seqs {missing[:20]}{'...' if len(missing) > 20 else ''},"
        f" duplicates {duplicates[:10]}, out of order {disorder[:5]},"
        f" differing {differing[:10]}"
    )


def test_resume_loses_nothing_across_drops_server_kills_and_a_redis_restart(tmp_path):
    node = shutil.which("node")
    require_component(node is not None, "node")
    require_component(
        (ROOT / "node_modules" / "socket.io-client").is_dir(),
        "node_modules/socket.io-client (npm ci)",
    )
    began = time.monotonic()
    for sub in ("redis", "server"):
        (tmp_path / sub).mkdir()
    redis_srv = RedisServer(tmp_path / "redis", persistent=True)  # AOF, fsync always
    server: ServerProcess | None = None
    worker = clients = None
    clients_out: JsonLines | None = None
    worker_log, clients_log = tmp_path / "worker.log", tmp_path / "clients.log"
    logs = [worker_log.open("wb"), clients_log.open("wb")]
    timeline: list[str] = []
    counts = Counter()
    reported = False

    def note(text: str) -> None:
        timeline.append(f"{time.monotonic() - began:6.2f}s {text}")

    try:
        redis_srv.start()
        store_url = f"{redis_srv.url}?prefix=chaos"
        server = ServerProcess(
            tmp_path / "server",
            env={
                "PROGRESSCAST_STORE_URL": store_url,
                "PROGRESSCAST_MESSAGE_QUEUE_URL": redis_srv.url,
            },
        ).start()
        wait_until(lambda: ready(server), 20, what="the server's /readyz")
        port = server.port
        note(f"redis on {redis_srv.port}, server on {port}")

        # -- the worker creates the jobs (queued) and waits for "go"
        worker = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "chaos_worker.py"),
                "--store",
                store_url,
                "--queue",
                redis_srv.url,
                "--jobs",
                str(N_JOBS),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[0],
            text=True,
            start_new_session=True,
        )
        worker_out = JsonLines(worker, "worker")
        job_ids: list[str] = worker_out.wait_for("jobs", 30)
        assert len(job_ids) == N_JOBS

        # -- the clients: each watches JOBS_PER_CLIENT jobs, every job has watchers
        specs = []
        for i in range(N_CLIENTS):
            step = N_JOBS // JOBS_PER_CLIENT  # every job gets the same number of watchers
            jobs = [job_ids[(i + k * step) % N_JOBS] for k in range(JOBS_PER_CLIENT)]
            user = f"chaos-client-{i}"
            specs.append({"user": user, "jobs": jobs, "token": token_for(user, jobs=jobs, ttl=900)})
        assert {j for spec in specs for j in spec["jobs"]} == set(job_ids)
        results_path = tmp_path / "clients-results.json"
        config = tmp_path / "clients.json"
        config.write_text(
            json.dumps(
                {
                    "url": server.url,
                    "clients": specs,
                    # a drop 0.3-1 s after each complete rejoin (about one a
                    # second, reconnect included), and on a quarter of the
                    # connections one while the joins are in flight
                    "dropMinMs": 300,
                    "dropMaxMs": 1000,
                    "midJoinDropShare": 0.25,
                    "midJoinDropMaxMs": 30,
                    "joinRetryMs": 250,  # retry of an `unavailable` join, doubling ...
                    "joinRetryMaxMs": 4000,  # ... up to this
                    "joinTimeoutMs": 10000,
                    "resultsPath": str(results_path),
                    "eventTypes": list(EVENT_TYPES),
                    "terminal": sorted(TERMINAL),
                }
            )
        )
        clients = subprocess.Popen(
            [node, str(HERE / "chaos_clients.mjs"), str(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[1],
            text=True,
            start_new_session=True,
        )
        clients_out = JsonLines(clients, "clients")
        clients_out.wait_for("ready", 30)
        note(f"{N_CLIENTS} clients joined their jobs")

        send(clients, "chaos")  # the clients start dropping their connections
        send(worker, "go")
        go = time.monotonic()
        note("jobs started, clients dropping")

        def stats(key: str, default: Any = 0) -> Any:
            """The clients' latest stats; fails at once if a child died."""
            for name, proc in (("clients", clients), ("worker", worker)):
                if proc.poll() is not None:
                    raise AssertionError(f"the {name} process exited early ({proc.returncode})")
            return clients_out.stats.get(key, default)

        def wait_resumed(phase: str) -> None:
            # (stats of this phase: `resumed` counts rejoins since its mark)
            wait_until(
                lambda: stats("phase", None) == phase and stats("resumed") == N_CLIENTS,
                RECOVERY_TIMEOUT,
                what=f"every client to rejoin its jobs after {phase}",
            )

        for number, (at, fault) in enumerate(FAULTS, 1):
            # The fault schedule (not a synchronisation): the next fault comes
            # no earlier than `at`, and only once the clients have applied
            # new events since the system recovered from the last one.
            applied = stats("applied")
            wait_until(
                lambda at=at, applied=applied: (
                    time.monotonic() - go >= at and stats("applied") > applied
                ),
                RECOVERY_TIMEOUT + at,
                what=f"live events before {fault} #{number}",
            )
            phase = f"{fault}-{number}"
            send(clients, f"phase {phase}")
            t = time.monotonic()
            joins_before = dict(clients_out.stats)
            if fault == "server-kill":
                server.stop(signal.SIGKILL)
                counts["server kills"] += 1
                note(f"{phase}: server SIGKILLed")
                server.start(port=port)  # waits for /healthz
                note(f"{phase}: server healthy after {time.monotonic() - t:.2f}s")
            else:
                store = open_store(store_url)
                before = {job: store.get(job).seq for job in job_ids}
                store.close()
                # Graceful: SHUTDOWN fsyncs the append-only file and exits.
                # (retry=None: redis-py would otherwise retry the command on the
                # closed connection for seconds, stretching the outage.)
                redis_py.Redis(port=redis_srv.port, socket_timeout=5, retry=None).shutdown()
                redis_srv.proc.wait(timeout=10)
                stop_group(redis_srv.proc)  # anything left in its session
                redis_srv.proc = None
                note(f"{phase}: redis shut down")
                time.sleep(REDIS_DOWN_SECONDS)  # the outage lasts this long
                redis_srv.start(redis_srv.port)
                counts["redis restarts"] += 1
                store = open_store(store_url)
                after = {job: store.get(job) for job in job_ids}
                store.close()
                lost = {
                    job: (before[job], after[job] and after[job].seq)
                    for job in job_ids
                    if after[job] is None or after[job].seq < before[job]
                }
                assert not lost, f"Redis lost acknowledged writes (seq before, after): {lost}"
                note(f"{phase}: redis back after {time.monotonic() - t:.2f}s, data kept")
            wait_until(lambda: ready(server), RECOVERY_TIMEOUT, what=f"/readyz after {phase}")
            note(f"{phase}: server ready after {time.monotonic() - t:.2f}s")
            wait_resumed(phase)
            retried = {
                key: stats(key) - joins_before.get(key, 0)
                for key in ("joins", "unavailable", "joinTimeouts")
            }
            note(f"{phase}: all clients rejoined after {time.monotonic() - t:.2f}s ({retried})")
            send(clients, f"phase after-{phase}")

        wait_until(
            lambda: time.monotonic() - go >= MIN_CHAOS_SECONDS and stats("forced") >= MIN_FORCED,
            MIN_CHAOS_SECONDS + 40,
            what=f"{MIN_FORCED} forced disconnects",
        )
        send(clients, "phase finish")
        send(worker, "finish")
        note(f"chaos over after {time.monotonic() - go:.1f}s: the jobs finish")
        done = worker_out.wait_for("done", 45)
        worker.wait(timeout=10)
        note(f"worker exited ({worker.returncode}): {Counter(done['outcomes'].values())}")
        assert worker.returncode == 0 and not done["errors"], (
            f"the worker crashed in jobs {done['errors']}:\n{tail(worker_log)}"
        )

        # -- what the store holds: every job ended, with a gapless history
        store = open_store(store_url)
        stored = {job: store.events_since(job) for job in job_ids}
        states = {job: store.get(job) for job in job_ids}
        store.close()
        problems = []
        for job, events in stored.items():
            seqs = [e["seq"] for e in events]
            if seqs != list(range(1, len(seqs) + 1)) or states[job].seq != len(seqs):
                problems.append(f"stored history of {job} is not 1..{states[job].seq}: {seqs}")
            if not events or events[-1]["type"] not in TERMINAL:
                problems.append(f"job {job} did not end: {states[job].status}")
        assert not problems, "\n".join(problems)
        endings = Counter(events[-1]["type"] for events in stored.values())

        # -- the clients catch up (bounded), then report what they applied
        send(clients, f"end {int(END_TIMEOUT * 1000)}")
        summary = clients_out.wait_for("end", END_TIMEOUT + 15)
        clients.wait(timeout=15)
        note(f"clients reported: {summary}")
        results = json.loads(results_path.read_text())
        totals = results["totals"]

        checked = 0
        for client in results["clients"]:
            for job, info in client["jobs"].items():
                checked += len(info["events"])
                if info["events"] != stored[job]:
                    problems.append(describe(client["user"], job, info["events"], stored[job]))
                if not info["done"]:
                    problems.append(f"client {client['user']} never applied the end of {job}")

        counts.update(
            {
                "clients": len(results["clients"]),
                "jobs": len(job_ids),
                "forced disconnects": totals["forcedDisconnects"],
                "... of them with joins in flight": totals["dropsWhileJoining"],
                "disconnects by the server ('io server disconnect')": totals["serverDisconnects"],
                "connects": totals["connects"],
                "joins": totals["joins"],
                "joins acked unavailable (retried)": totals["joinUnavailable"],
                "join timeouts (retried)": totals["joinTimeouts"],
                "stored events": sum(len(e) for e in stored.values()),
                "events checked": checked,
                "duplicates dropped by seq": totals["duplicatesDropped"],
                "live gaps": totals["liveGaps"]["count"],
                "truncated acks": totals["truncated"]["count"],
                "join errors": totals["joinErrors"]["count"],
                "gaps inside acks": totals["ackGaps"]["count"],
                "refused connects": totals["refusals"]["count"],
            }
        )
        report = [
            "",
            "chaos test timeline:",
            *(f"  {line}" for line in timeline),
            "counts:",
            *(f"  {name}: {value}" for name, value in counts.items()),
            f"  job endings: {dict(endings)}",
            f"  disconnect reasons: {totals['disconnectReasons']}",
            f"  live gaps by phase: {totals['liveGapsByPhase']}",
            f"runtime: {time.monotonic() - began:.1f}s",
        ]
        for key in ("liveGaps", "truncated", "joinErrors", "ackGaps", "refusals"):
            if totals[key]["count"]:
                report.append(f"{key} (first {len(totals[key]['sample'])}):")
                report += [f"  {json.dumps(entry)}" for entry in totals[key]["sample"][:40]]
        print("\n".join(report))
        reported = True

        assert counts["clients"] >= 50 and counts["jobs"] >= 20
        assert counts["forced disconnects"] >= MIN_FORCED
        assert counts["server kills"] == 3 and counts["redis restarts"] == 1
        assert endings["job_failed"] and endings["job_cancelled"] and endings["job_completed"]
        failures = [
            f"{counts[name]} {name}"
            for name in ("live gaps", "truncated acks", "join errors", "gaps inside acks")
            if counts[name]
        ]
        assert not failures and not problems, (
            f"{', '.join(failures)}; {len(problems)} histories differ from the store:\n"
            + "\n".join(problems[:30])
        )
    except BaseException:
        if not reported:
            print("\n".join(["", "timeline:", *timeline]))
            if clients_out is not None:
                print(f"clients' last stats: {clients_out.stats}")
        for name, path in (("worker", worker_log), ("clients", clients_log)):
            print(f"--- {name} stderr ---\n{tail(path)}")
        if server is not None:
            print(f"--- server log ---\n{server.log()}")
        raise
    finally:
        for proc in (clients, worker):
            if proc is not None:
                stop_group(proc, timeout=5)
                for pipe in (proc.stdin, proc.stdout):
                    with contextlib.suppress(OSError):
                        pipe.close()
        for log in logs:
            log.close()
        if server is not None:
            server.stop()
        redis_srv.stop()
