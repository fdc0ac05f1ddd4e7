"""Reconnect storms, request floods and the cost of scale-out (issue 16, parts 4, 5, 8).

Run through bench/run.py (``--only storm,flood,scaleout``); each suite returns
a JSON-able dict that run.py stores under its own key, and ``render_*`` turn
those into docs/benchmarks.md sections, progresscast beside Node's socket.io.

- **storm**: N clients (client i on job i % J, its own token) follow jobs
  that keep updating; the server is killed (SIGKILL, a crash or ``kill -9``
  deploy) and started again on the same port. Every client reconnects with
  socket.io-client's own reconnection (default backoff: 1 s doubling to 5 s,
  ±50 % jitter) and rejoins: progresscast's clients with ``since`` = the last
  seq they applied (docs/protocol.md "Resume"), checking that the ack's
  events and the live ones that follow leave no gap. Measured: the time from
  the kill until every client has caught up (resumed, and applied its first
  live event after the restart). progresscast runs its pipelines in a worker
  process (SQLite store, events through Redis): in-process pipelines would
  die with the server, and a worker keeps updating while it is down, so the
  rejoin has missed events to resume. Node's peer keeps no store: its clients
  only reconnect and join again (no resume is possible across its restart).
- **flood**: F clients connected (no updates); every client sends ``ping``
  with an ack, all within one second; the acks' p99, repeated.
- **scaleout**: 2 then 3 progresscast instances on one Redis (store and
  message queue), a worker publishing every update through Redis, clients
  on instance A only. What instances B and C, with no client watching, pay
  per event; from it, the cluster-wide event rate that saturates any one
  instance, whatever their number.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import run
from lib import (
    BENCH,
    NODE,
    Loadgen,
    Redis,
    call_all,
    cpu_seconds,
    free_port,
    kill,
    spawn,
    wait_http,
)
from run import LABELS, Server, log, make_gens

STORM_LABELS = {
    "progresscast-storm": "progresscast (worker + SQLite, events through Redis)",
    "progresscast-scaleout": "progresscast instances on one Redis (worker + Redis)",
}
LABELS.update(STORM_LABELS)

FULL_STORM: dict[str, Any] = {
    "storm_clients": [5000, 10000],
    "storm_rate": 2,  # updates per second per job during the storm
    "storm_timeout": 60.0,  # seconds from the kill for every client to catch up
    "storm_servers": ["progresscast-storm", "node"],
    "flood_clients": 19000,
    "flood_rounds": 3,
    "flood_servers": ["progresscast", "node"],
    "scaleout_instances": [2, 3],
    "scaleout_clients": 1000,
    "scaleout_rate": 10,
    "scaleout_window": 10.0,
    "scaleout_idle": 4.0,
}
QUICK_STORM: dict[str, Any] = {
    **FULL_STORM,
    "storm_clients": [2000],
    "storm_timeout": 40.0,
    "flood_clients": 5000,
    "flood_rounds": 2,
    "scaleout_clients": 500,
    "scaleout_window": 6.0,
    "scaleout_idle": 3.0,
}
#: clients per load generator process
PER_GEN = 5000


def open_clients(gens: list[Loadgen], have: int, want: int, rate: float, **extra: Any) -> dict:
    """Clients [have, want) on the generators that hold them (PER_GEN each)."""
    per = {g: [max(have, g * PER_GEN), min(want, (g + 1) * PER_GEN)] for g in range(len(gens))}
    busy = [g for g, (a, b) in per.items() if b > a]
    args = [
        {"from": per[g][0], "to": per[g][1], "rate": rate / len(busy),
         "inflight": 400 // len(busy), "timeoutMs": 20000, "join": True, **extra}
        for g in busy
    ]  # fmt: skip
    t0 = time.monotonic()
    replies = call_all([gens[g] for g in busy], "connect", args, timeout=(want - have) / rate + 90)
    errors: dict[str, int] = {}
    for r in replies:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "joined": sum(r["joined"] for r in replies),
        "failed": sum(r["failed"] for r in replies),
        "errors": errors,
        "seconds": round(time.monotonic() - t0, 2),
    }


def quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    q = np.quantile(np.array(values), [0.5, 0.9, 0.99, 1.0])
    return {"n": len(values), "p50_s": round(float(q[0]), 3), "p90_s": round(float(q[1]), 3),
            "p99_s": round(float(q[2]), 3), "max_s": round(float(q[3]), 3)}  # fmt: skip


# -------------------------------------------------------------------- storm


class StormServer(Server):
    """A server that can be killed and started again on the same port.

    progresscast: gunicorn + eventlet (``wsgi:app``) on an SQLite file, a
    redis-server as message queue, and the benchmark pipelines in a worker
    process (bench/pipelines.py) writing to the same SQLite file and
    publishing through Redis; the worker outlives the server's restarts.
    Node: the peer, its update timers restarted with it.
    """

    def start(self) -> StormServer:
        if self.kind == "node":
            return super().start()
        self.redis = Redis(self.tmp).start()
        self.store_url = f"sqlite:///{self.tmp / 'progresscast.db'}"
        self._spawn()
        wait_http(self.url + "/healthz", self.proc, log=self.tmp / "server.log")
        cport = free_port()
        self.worker = spawn(
            [sys.executable, str(BENCH / "pipelines.py"), "--store", self.store_url,
             "--queue", self.redis.url, "--jobs", str(self.jobs), "--port", str(cport)],
            log=self.tmp / "worker.log",
        )  # fmt: skip
        self.control = f"http://127.0.0.1:{cport}"
        wait_http(self.control + "/healthz", self.worker, log=self.tmp / "worker.log")
        return self

    def _spawn(self, rate: float = 0, seconds: float = 0) -> None:
        if self.kind == "node":
            # its update timers start with it (--run-rate): nothing to ask
            # of a server that is busy with the storm
            cmd = [NODE, str(BENCH / "peers" / "node_server.mjs"), "--port", str(self.port),
                   "--jobs", str(self.jobs), "--run-rate", str(rate),
                   "--run-seconds", str(seconds)]  # fmt: skip
            self.proc = spawn(cmd, log=self.tmp / "server.log", cwd=BENCH)
        else:
            env = self._progresscast_env(self.store_url, self.redis.url)
            self.proc = self._gunicorn("wsgi:app", env)

    def restart(self, run_seconds: float, rate: float) -> dict:
        """SIGKILL the server and start it again on the same port. Returns
        at once; ``ready`` (a dict) gets ``ready_s`` when /healthz answers."""
        t0 = time.time()
        os.killpg(self.proc.pid, signal.SIGKILL)
        kill(self.proc)  # reap it
        killed = time.time()
        self._spawn(rate, run_seconds)
        out = {"t0": t0, "killed_s": round(killed - t0, 3), "ready_s": None}

        def ready() -> None:
            with contextlib.suppress(RuntimeError):
                wait_http(self.url + "/healthz", self.proc, timeout=run_seconds)
                out["ready_s"] = round(time.time() - t0, 3)

        threading.Thread(target=ready, daemon=True).start()
        return out


def storm_round(server: StormServer, gens: list[Loadgen], n: int, cfg: dict) -> dict:
    """Restart the server under ``n`` clients; wait until every one has caught up."""
    # every client is receiving live events: count them over two seconds
    e0, m0 = sum(r["totalEvents"] for r in call_all(gens, "stats", timeout=20)), time.monotonic()
    time.sleep(2.0)
    e1, m1 = sum(r["totalEvents"] for r in call_all(gens, "stats", timeout=20)), time.monotonic()
    t0 = time.time()
    call_all(gens, "stormArm", [{"t0": t0}] * len(gens), timeout=10)
    restart = server.restart(cfg["storm_timeout"] + 30, cfg["storm_rate"])
    spy = None
    if cfg.get("storm_profile") and server.kind != "node":
        # the gunicorn master: its worker is not forked yet (--subprocesses follows it)
        seconds = cfg["storm_profile"]
        raw = server.tmp / "profile.txt"
        cmd = [str(run.VENV_BIN / "py-spy"), "record", "-p", str(server.proc.pid),
               "--subprocesses", "-d", str(int(seconds)), "-r", "200", "-f", "raw",
               "-o", str(raw), "--nonblocking"]  # fmt: skip
        spy = (spawn(cmd, log=server.tmp / "py-spy.log"), raw, seconds)
    deadline = t0 + cfg["storm_timeout"]
    counts: dict[str, int] = {}
    while time.time() < deadline:
        replies = call_all(gens, "stormCount", timeout=20)
        counts = {k: sum(r[k] for r in replies) for k in ("connected", "acked", "caught")}
        if counts["caught"] >= n:
            break
        time.sleep(0.1)
    waited = time.time() - t0
    cpu = cpu_seconds([server.proc.pid])  # the new server, start-up included
    reports = call_all(gens, "stormReport", timeout=60)
    profile = run.finish_profile(spy, server, {}) if spy else None
    if spy and os.environ.get("STORM_PROFILE_DIR"):  # keep the raw stacks for a closer look
        raw = Path(os.environ["STORM_PROFILE_DIR"]) / f"storm-{server.kind}-{n}.txt"
        raw.write_bytes((server.tmp / "profile.txt").read_bytes())

    def merged(key: str) -> list[float]:
        return [x for r in reports for x in r[key]]

    def total(key: str) -> int:
        return sum(r[key] for r in reports)

    caught = merged("caughtAt")
    out = {
        "clients": n,
        **restart,
        "loadavg": [round(x, 2) for x in os.getloadavg()],  # the machine is shared
        # before the kill: live events per second reaching the clients, of n * rate
        "deliveries_per_s_before": round((e1 - e0) / (m1 - m0)),
        "expected_per_s": n * cfg["storm_rate"],
        "caught_up": len(caught),
        "all_caught_up_s": round(max(caught), 3) if len(caught) >= n else None,
        "waited_s": round(waited, 2),
        "connected": quantiles(merged("connectedAt")),
        "rejoined": quantiles(merged("ackedAt")),
        "caught": quantiles(caught),
        "server_cpu_s": round(cpu, 2),
        "gaps": total("gaps"),
        "duplicates": total("duplicates"),
        "resumed_events": total("resumedEvents"),
        "truncated": total("truncated"),
        "connect_errors": total("connectErrors"),
        "connect_error_kinds": {k: v for r in reports for k, v in r["connectErrorKinds"].items()},
        "rejoin_errors": {k: v for r in reports for k, v in r["rejoinErrors"].items()},
    }
    if profile:
        out["profile"] = profile
    # after the last one caught up, from the moment the server answered
    if out["all_caught_up_s"] is not None and restart["ready_s"] is not None:
        out["after_ready_s"] = round(out["all_caught_up_s"] - restart["ready_s"], 3)
    return out


def storm_suite(kind: str, cfg: dict, tmp: Path, secret: str, tokens: Path) -> dict:
    log(f"storm: {LABELS[kind]}")
    server = StormServer(kind, tmp, secret, cfg["jobs"]).start()
    sizes = cfg["storm_clients"]
    gens = make_gens(server, math.ceil(max(sizes) / PER_GEN), tokens, "storm")
    resume = kind != "node"
    out: dict[str, Any] = {"kind": kind, "label": server.label, "resume": resume, "runs": [],
                           "rate": cfg["storm_rate"], "jobs": cfg["jobs"]}  # fmt: skip
    t_start = time.monotonic()
    have = 0
    try:
        server.post("/bench/start", duration=3600, rate=cfg["storm_rate"], seed=1)
        for n in sizes:
            conn = open_clients(gens, have, n, 2000, reconnect=True, resume=resume)
            have = n
            log(f"  {n} clients: joined {conn['joined']} in {conn['seconds']}s,"
                f" failed {conn['failed']} {conn['errors'] or ''}")  # fmt: skip
            r = storm_round(server, gens, n, cfg)
            r["connect"] = conn
            out["runs"].append(r)
            log(f"  {n}: server ready {r['ready_s']}s after the kill; all caught up"
                f" {r['all_caught_up_s']}s ({r['caught_up']}/{n}); p50 {r['caught'].get('p50_s')}s"
                f" p99 {r['caught'].get('p99_s')}s; gaps {r['gaps']}, resumed"
                f" {r['resumed_events']} events, connect errors {r['connect_errors']},"
                f" server CPU {r['server_cpu_s']}s")  # fmt: skip
    except Exception as exc:
        log(f"  FAILED: {exc!r}")
        out["error"] = repr(exc)
    finally:
        out["seconds"] = round(time.monotonic() - t_start, 1)
        for g in gens:
            g.close()
        server.stop()
    return out


# -------------------------------------------------------------------- flood


def flood_suite(kind: str, cfg: dict, tmp: Path, secret: str, tokens: Path) -> dict:
    """Every one of F clients sends ``ping`` (with an ack) within one second
    (on its own: with the connections suite, its ramp's last level is used)."""
    log(f"flood: {LABELS[kind]}")
    n = cfg["flood_clients"]
    server = Server(kind, tmp, secret, cfg["jobs"]).start()
    gens = make_gens(server, math.ceil(n / PER_GEN), tokens, "flood")
    t_start = time.monotonic()
    out: dict[str, Any] = {}
    try:
        connected = open_clients(gens, 0, n, 2000)
        log(f"  {n} clients: joined {connected['joined']} in {connected['seconds']}s")
        out = flood_rounds(server, gens, n, cfg)
        out["connect"] = connected
    except Exception as exc:
        log(f"  FAILED: {exc!r}")
        out = {"kind": kind, "label": server.label, "clients": n, "rounds": [], "error": repr(exc)}
    finally:
        out["seconds"] = round(time.monotonic() - t_start, 1)
        for g in gens:
            g.close()
        server.stop()
    return out


def flood_rounds(server: Server, gens: list[Loadgen], n: int, cfg: dict) -> dict:
    """The flood, ``flood_rounds`` times, on ``n`` clients already connected;
    run.py's connections suite calls it at the last level of its ramp."""
    load = [round(x, 2) for x in os.getloadavg()]
    out: dict[str, Any] = {"kind": server.kind, "label": server.label, "clients": n,
                           "rounds": [], "loadavg": load}  # fmt: skip
    spy = None
    if cfg.get("flood_profile") and server.kind.startswith("progresscast"):
        spy = run.start_profile(server, cfg["flood_rounds"] * 4)
    pid = server.server_pid()
    for _ in range(cfg["flood_rounds"]):
        time.sleep(1.0)
        cpu0 = cpu_seconds([pid])
        pings = call_all(gens, "ping", [{"timeoutMs": 30000, "spreadMs": 1000}] * len(gens), 90)
        cpu = cpu_seconds([pid]) - cpu0  # the round's requests, and little else
        answered = sum(p["answered"] for p in pings)
        out["rounds"].append({
            "cpu_us_per_request": round(1e6 * cpu / max(1, answered), 1),
            "sent": sum(p["sent"] for p in pings),
            "answered": answered,
            "p50_ms": round(max(p["rtt_ms"]["p50"] or 0 for p in pings), 1),
            "p99_ms": round(max(p["rtt_ms"]["p99"] or 0 for p in pings), 1),
            "max_ms": round(max(p["rtt_ms"]["max"] or 0 for p in pings), 1),
            "seconds": round(max(p["seconds"] for p in pings), 2),
        })  # fmt: skip
        log(f"  flood: {answered} answered, p99 {out['rounds'][-1]['p99_ms']} ms")
    if spy is not None:
        out["profile"] = run.finish_profile(spy, server, out)
    p99s = [r["p99_ms"] for r in out["rounds"] if r["answered"] == r["sent"]]
    out["median_p99_ms"] = round(float(np.median(p99s)), 1) if p99s else None
    per_request = [r["cpu_us_per_request"] for r in out["rounds"]]
    out["cpu_us_per_request"] = round(float(np.median(per_request)), 1) if per_request else None
    return out


def flood_in_ramp(server: Server, gens: list[Loadgen], level: int, cfg: dict, out: dict) -> None:
    """The hook in run.py's connections suite: the flood at its ramp's last
    level (the same 19,000 clients, connected once for both)."""
    if level == cfg.get("flood_clients") and server.kind in cfg.get("flood_servers", ()):
        out["flood"] = flood_rounds(server, gens, level, cfg)


# ----------------------------------------------------------------- scale-out


def scaleout_suite(cfg: dict, tmp: Path, secret: str, tokens: Path) -> dict:
    """Instances on one Redis, clients on instance A only: what the others pay per event."""
    kind = "progresscast-scaleout"
    log(f"scale-out: {LABELS[kind]}")
    redis = Redis(tmp).start()
    instances: list[Server] = []
    worker = None
    gens: list[Loadgen] = []
    out: dict[str, Any] = {"kind": kind, "label": LABELS[kind], "runs": []}
    t_start = time.monotonic()

    def add_instance() -> Server:
        s = Server(kind, tmp, secret, cfg["jobs"])
        s.proc = s._gunicorn("wsgi:app", s._progresscast_env(redis.url, redis.url))
        wait_http(s.url + "/healthz", s.proc, log=s.tmp / "server.log")
        instances.append(s)
        return s

    try:
        a = add_instance()
        cport = free_port()
        worker = spawn(
            [sys.executable, str(BENCH / "pipelines.py"), "--store", redis.url,
             "--queue", redis.url, "--jobs", str(cfg["jobs"]), "--port", str(cport)],
            log=a.tmp / "worker.log",
        )  # fmt: skip
        control = f"http://127.0.0.1:{cport}"
        wait_http(control + "/healthz", worker, log=a.tmp / "worker.log")
        gens = make_gens(a, 1, tokens, "scaleout")
        out["connect"] = open_clients(gens, 0, cfg["scaleout_clients"], 1000)
        for count in cfg["scaleout_instances"]:
            while len(instances) < count:
                add_instance()
            out["runs"].append(scaleout_window(instances, worker, redis, control, cfg))
            r = out["runs"][-1]
            log(f"  {count} instances: {r['events_per_s']} events/s; per event: A"
                f" {r['per_event_us'][0]} µs, others {r['per_event_us'][1:]} µs;"
                f" one instance saturates at {r['saturation_events_per_s']} events/s")  # fmt: skip
    except Exception as exc:
        log(f"  FAILED: {exc!r}")
        out["error"] = repr(exc)
    finally:
        out["seconds"] = round(time.monotonic() - t_start, 1)
        for g in gens:
            g.close()
        kill(worker)
        for s in instances:
            kill(s.proc)
        redis.stop()
    return out


def scaleout_window(instances: list[Server], worker, redis: Redis, control: str, cfg: dict):
    """Idle CPU first (no events), then CPU while the worker publishes."""

    def cpu_now() -> list[float]:
        return [cpu_seconds([s.server_pid()]) for s in instances]

    time.sleep(1.0)
    c0, t0 = cpu_now(), time.monotonic()
    time.sleep(cfg["scaleout_idle"])
    c1, t1 = cpu_now(), time.monotonic()
    idle = [(b - a) / (t1 - t0) for a, b in zip(c0, c1, strict=True)]  # CPU s per s
    window = cfg["scaleout_window"]
    started = time.time()
    requests.post(control + "/bench/start", params={"duration": window + 1.5,
                  "rate": cfg["scaleout_rate"], "seed": len(instances)}, timeout=10)  # fmt: skip
    time.sleep(0.5)  # past the start
    since = time.time()
    c2, w2, t2 = cpu_now(), cpu_seconds([worker.pid]), time.monotonic()
    r2 = cpu_seconds([redis.proc.pid])
    quiet = instances[-1]
    spy = run.start_profile(quiet, window) if cfg.get("scaleout_profile") else None
    time.sleep(window)
    c3, w3, t3 = cpu_now(), cpu_seconds([worker.pid]), time.monotonic()
    r3 = cpu_seconds([redis.proc.pid])
    until = time.time()
    time.sleep(1.5)
    issued = requests.get(
        control + "/bench/issued", params={"since": since, "until": until}, timeout=10
    ).json()
    events = issued["total"]
    busy = [(b - a) / (t3 - t2) for a, b in zip(c2, c3, strict=True)]
    rate = events / (t3 - t2)
    per_event = [(b - i) / rate * 1e6 for b, i in zip(busy, idle, strict=True)]  # µs CPU
    others = per_event[1:]
    worst = max(others) if others else None
    profile = run.finish_profile(spy, quiet, {}) if spy else None
    if spy and os.environ.get("STORM_PROFILE_DIR"):
        raw = Path(os.environ["STORM_PROFILE_DIR"]) / f"scaleout-{len(instances)}.txt"
        raw.write_bytes((quiet.tmp / "profile.txt").read_bytes())
    return {
        "profile_of_last_instance": profile,
        "instances": len(instances),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "events": events,
        "events_per_s": round(rate, 1),
        "started": started,
        "idle_cpu_pct": [round(100 * x, 2) for x in idle],
        "cpu_pct": [round(100 * x, 1) for x in busy],
        "per_event_us": [round(x, 1) for x in per_event],
        "worker_cpu_pct": round(100 * (w3 - w2) / (t3 - t2), 1),
        "redis_cpu_pct": round(100 * (r3 - r2) / (t3 - t2), 1),
        # one core's worth of events, for an instance none of whose clients watch
        "saturation_events_per_s": round(1e6 / worst) if worst and worst > 0 else None,
    }


# ------------------------------------------------------------------- render


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def _load(r: dict) -> str:
    return f"{r['loadavg'][0]:.1f}" if r.get("loadavg") else "–"


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:,.2f}"


def render_storm(results: dict) -> list[str]:
    storm = results.get("storm") or []
    if not storm:
        return []
    lines = ["## Reconnect storm", ""]
    cfg = results["config"]
    lines += [
        f"N clients follow {cfg['jobs']} jobs (client i on job i % {cfg['jobs']}, a token each)"
        f" updating {cfg.get('storm_rate')} times a second; the server is killed (SIGKILL) and"
        " started again on the same port. Every client reconnects with socket.io-client's own"
        " reconnection (default backoff: 1 s doubling to 5 s, ±50 % jitter) and rejoins."
        " *Caught up*: the client has its rejoin ack and has applied its first live event after"
        " the restart. progresscast's clients rejoin with `since` = their last seq and check"
        " that no seq is missing; its pipelines run in a worker process (SQLite file, events"
        " through Redis) that keeps updating while the server is down, so every rejoin has"
        " events to resume. **Node's peer keeps no store: it cannot resume across a restart**;"
        " its clients only reconnect and join again. Times are seconds from the kill.",
        "",
    ]
    lines += [
        "| server | clients | server answering (s) | all caught up (s) | after answering (s) |"
        " caught up p50 / p99 (s) | reconnected, last (s) | failed connects |"
        " resumed events | seq gaps | server CPU (s) | load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in storm:
        for r in server.get("runs", []):
            c = r["caught"]
            lines.append(
                f"| {server['label']} | {r['clients']:,} | {_s(r['ready_s'])} |"
                f" {_s(r['all_caught_up_s'])}"
                + ("" if r["all_caught_up_s"] else f" ({r['caught_up']:,} of {r['clients']:,})")
                + f" | {_s(r.get('after_ready_s'))} | {_s(c.get('p50_s'))} / {_s(c.get('p99_s'))}"
                f" | {_s(r['connected'].get('max_s'))} | {r['connect_errors']:,} |"
                + (f" {r['resumed_events']:,} | {r['gaps']} |" if server["resume"] else " – | – |")
                + f" {_s(r['server_cpu_s'])} | {_load(r)} |"
            )
        if server.get("error"):
            lines.append(f"| {server['label']} | failed: `{server['error'][:200]}` |")
    pc = next((s for s in storm if s["kind"] != "node"), None)
    node = next((s for s in storm if s["kind"] == "node"), None)
    if pc and node:
        bits = []
        for r in pc.get("runs", []):
            peer = next((x for x in node.get("runs", []) if x["clients"] == r["clients"]), None)
            if peer:
                total = _ratio(r["all_caught_up_s"], peer["all_caught_up_s"])
                bits.append(
                    f"{r['clients']:,} clients: {total}"
                    f" from the kill, {_ratio(r.get('after_ready_s'), peer.get('after_ready_s'))}"
                    " from the moment the server answered"
                )
        if bits:
            lines += ["", "progresscast / Node, all caught up: " + "; ".join(bits) + "."]
    return [*lines, ""]


def render_flood(results: dict) -> list[str]:
    flood = results.get("flood") or []
    if not flood:
        return []
    n = results["config"].get("flood_clients")
    lines = [
        "## Request flood",
        "",
        f"{n:,} clients connected and joined, nothing else running; every client sends `ping`"
        " with an ack, the sends spread evenly over one second (as real clients' timers would"
        " be). Round-trip time of the ack, per round; the figure is the median round's p99."
        " *Server CPU per request*: the server process's CPU time during a round over the"
        " requests answered (the median round); the load generators share the two cores.",
        "",
        "| server | rounds: p99 (ms) | rounds: p50 (ms) | rounds: max (ms) | all answered |"
        " median p99 (ms) | server CPU per request (µs) | load average |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for f in flood:
        rounds = f.get("rounds", [])

        def each(key: str, rounds=rounds) -> str:
            return ", ".join(f"{r[key]:,.0f}" for r in rounds)

        lines.append(
            f"| {f['label']} | {each('p99_ms')} | {each('p50_ms')} | {each('max_ms')} |"
            f" {'yes' if rounds and all(r['answered'] == r['sent'] for r in rounds) else 'no'} |"
            f" {_s(f.get('median_p99_ms'))} | {_s(f.get('cpu_us_per_request'))} | {_load(f)} |"
        )
        if f.get("error"):
            lines.append(f"| {f['label']} | failed: `{f['error'][:200]}` |")
    pc = next((f for f in flood if f["kind"].startswith("progresscast")), None)
    node = next((f for f in flood if f["kind"] == "node"), None)
    if pc and node:
        r = _ratio(pc.get("median_p99_ms"), node.get("median_p99_ms"))
        lines += ["", f"progresscast / Node, median p99: **{r}** (target ≤ 2×)."]
    return [*lines, ""]


def render_scaleout(results: dict) -> list[str]:
    sc = results.get("scaleout")
    if not sc or not sc.get("runs"):
        return [] if not sc else ["## Scale-out", "", f"failed: `{sc.get('error')}`", ""]
    cfg = results["config"]
    lines = [
        "## Scale-out: what an instance pays for events none of its clients watch",
        "",
        f"Instances (gunicorn + eventlet) on one redis-server (store and message queue); a"
        f" worker runs {cfg['jobs']} jobs updating {cfg.get('scaleout_rate')} times a second and"
        f" publishes every event through Redis; {sc['connect']['joined']:,} clients, all on"
        " instance A. python-socketio's Redis manager sends every event to every instance,"
        " so B and C receive and decode each one and find nobody to send it to. *Per event*:"
        " (CPU while events flow − CPU idle) / events per second.",
        "",
        "| instances | events/s | CPU % (A, B, C…) | idle CPU % | µs CPU per event (A, B, C…) |"
        " worker CPU % | Redis CPU % | one instance saturates at (events/s) | load average |",
        "| ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in sc["runs"]:
        lines.append(
            f"| {r['instances']} | {r['events_per_s']:,.0f} | {', '.join(map(str, r['cpu_pct']))}"
            f" | {', '.join(map(str, r['idle_cpu_pct']))} |"
            f" {', '.join(map(str, r['per_event_us']))} | {r['worker_cpu_pct']} |"
            f" {r['redis_cpu_pct']} | {r['saturation_events_per_s'] or '–':,} | {_load(r)} |"
        )
    lines += [
        "",
        "An instance whose clients watch none of the events still pays the figure above for"
        " each one, so one core's worth of them (the last column) is the cluster-wide event"
        " rate past which every instance saturates, however many there are:"
        " docs/deployment.md (Scaling out) says what removes that ceiling.",
        "",
    ]
    return lines


def render(results: dict) -> list[str]:
    """The sections of docs/benchmarks.md for whatever of the three suites ran."""
    return [*render_storm(results), *render_flood(results), *render_scaleout(results)]


def suites(only: set[str], cfg: dict, tmp: Path, secret: str, tokens: Path, results: dict):
    """Run the suites named in ``only``; their results go under their own keys."""
    if "storm" in only:
        results["storm"] = [storm_suite(k, cfg, tmp, secret, tokens) for k in cfg["storm_servers"]]
    if "flood" in only:
        # measured during the connections suite's ramp when it ran; else on its own
        ramps = {c["kind"]: c["flood"] for c in results.get("connections", []) if "flood" in c}
        results["flood"] = [
            ramps.get(k) or flood_suite(k, cfg, tmp, secret, tokens) for k in cfg["flood_servers"]
        ]
    if "scaleout" in only:
        results["scaleout"] = scaleout_suite(cfg, tmp, secret, tokens)


def token_count(cfg: dict) -> int:
    return max([*cfg["storm_clients"], cfg["flood_clients"], cfg["scaleout_clients"]])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(subprocess.call([sys.executable, str(BENCH / "run.py"), *sys.argv[1:]]))
