#!/usr/bin/env python3
"""progresscast benchmark suite (issue 6): run everything, write results and docs.

    make bench                     # set up, run all (~12 min), write docs/benchmarks.md
    python bench/run.py --quick    # ~2 min, for development (docs/ untouched)
    python bench/run.py --only latency --servers progresscast,node   # a subset

Side by side, in one run, on this machine:

1. latency & delivery: N clients (1,000 and 5,000) watch J=100 jobs updating
   R=10 times/s each; latency from the pipeline's update call to the client's
   event callback; server CPU and RSS; the load generator's CPU;
2. connections: the most concurrent websocket clients one instance holds with
   pings answered, and RSS per connection;
3. burst: all jobs update at one instant; time until the last of 1,000
   clients has its update;
   (1 and 3 also with 1,000 Server-Sent Events clients instead of Socket.IO
   ones, and with the server under gevent instead of eventlet;)
4. emitter overhead: bench/emitter.py --json, when present.

Results go to bench/results/*.json; bench/report.py renders docs/benchmarks.md
and the PNG plots in docs/ from them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import (
    BENCH,
    NODE,
    ROOT,
    VENV_BIN,
    CpuMeter,
    Loadgen,
    Redis,
    call_all,
    cleanup,
    free_port,
    install_cleanup,
    kill,
    rss_bytes,
    spawn,
    tree,
    wait_http,
)
from pipelines import job_id

sys.path.insert(0, str(ROOT / "src"))
from progresscast.tokens import issue_token

RESULTS = BENCH / "results"
#: clients offer permessage-deflate, as browsers and socket.io-client do (--no-client-deflate)
CLIENT_DEFLATE = True

FULL: dict[str, Any] = {
    "mode": "full",
    "jobs": 100,
    "rate": 10,
    "clients": [1000, 5000],
    "sse_clients": [1000],  # the SSE row (progresscast-sse), beside the Socket.IO one
    "gens": 2,  # load generator processes for the latency runs
    "connect_rate": 1000,  # new clients per second (all generators together)
    "warmup": 2.0,
    "window": 10.0,
    "drain": 2.0,
    "bursts": 5,
    "burst_clients": 1000,
    "burst_timeout": 10.0,
    "levels": [1000, 2500, 5000, 10000, 19000],
    # memory per connection is linear: variants stop early to save time
    "level_caps": {"progresscast-deflate": 5000, "flask-nodeflate": 5000},
    "per_gen": 5000,  # clients per load generator in the connection ramp
    "conn_rate": 1500,
    "conn_timeout_ms": 10000,
    "conn_budget": 90.0,  # seconds per server for the ramp
    # also available with --servers: progresscast-deflate (websocket compression on)
    "latency_servers": [
        "progresscast",
        "progresscast-sse",
        "progresscast-gevent",
        "progresscast-fanout",
        "progresscast-redis",
        "flask",
        "flask-nodeflate",
        "node",
    ],
    # "flask" (max_size raised) can be added with --servers; it holds what progresscast holds
    "conn_servers": ["progresscast", "progresscast-gevent", "flask-default", "node"],
    "profile_seconds": 8.0,
    "profile_servers": ["progresscast", "progresscast-redis"],  # py-spy (--profile)
}
QUICK: dict[str, Any] = {
    **FULL,
    "mode": "quick",
    "clients": [1000],
    "warmup": 2.0,
    "window": 8.0,
    "bursts": 3,
    "levels": [1000, 2500, 5000],
    "conn_budget": 25.0,
    "latency_servers": ["progresscast", "progresscast-sse", "flask", "node"],
    "conn_servers": ["progresscast", "flask-default", "node"],
    "profile_seconds": 0.0,
}

LABELS = {
    "progresscast": "progresscast (in-process pipelines)",
    "progresscast-deflate": "progresscast, websocket compression on",
    "progresscast-sse": "progresscast, Server-Sent Events clients",
    "progresscast-gevent": "progresscast under gevent (in-process pipelines)",
    "progresscast-fanout": "progresscast, fan-out only (diagnostic: no state machine, no store)",
    "progresscast-redis": "progresscast (worker + Redis)",
    "flask": "plain Flask-SocketIO",
    "flask-nodeflate": "plain Flask-SocketIO, websocket compression off",
    "flask-default": "plain Flask-SocketIO, eventlet default max_size",
    "node": "Node.js socket.io 4",
}
#: progresscast servers running bench/bench_wsgi.py (pipelines in the server process)
IN_PROCESS = (
    "progresscast",
    "progresscast-deflate",
    "progresscast-fanout",
    "progresscast-sse",
    "progresscast-gevent",
)


def log(*args: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def sleep_until(t: float) -> None:
    left = t - time.time()
    if left > 0:
        time.sleep(left)


# ------------------------------------------------------------------ servers


class Server:
    """One server under test, its helpers (worker, redis) and where to drive it."""

    count = 0

    def __init__(self, kind: str, tmp: Path, secret: str, jobs: int) -> None:
        self.kind = kind
        self.label = LABELS[kind]
        Server.count += 1
        self.tmp = tmp / f"{Server.count:02d}-{kind}"  # a fresh store per server run
        self.tmp.mkdir(parents=True)
        self.secret = secret
        self.jobs = jobs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.control = self.url
        self.proc = None
        self.worker = None
        self.redis: Redis | None = None

    @property
    def uses_tokens(self) -> bool:
        return self.kind.startswith("progresscast")

    def _progresscast_env(self, store_url: str, queue_url: str | None = None) -> dict[str, str]:
        env = {
            "PROGRESSCAST_CONFIG": "production",
            "PROGRESSCAST_STORE_URL": store_url,
            "PROGRESSCAST_SECRET_KEY": self.secret,
            "PROGRESSCAST_DEMO": "0",
            "PROGRESSCAST_INSTANCE_PATH": str(self.tmp),
            "PROGRESSCAST_MAX_CONNECTIONS": "100000",
            "PROGRESSCAST_MAX_CONNECTIONS_PER_USER": "100000",
            "PROGRESSCAST_WORKER_CONNECTIONS": "25000",
            "PROGRESSCAST_BENCH_JOBS": str(self.jobs),
        }
        if queue_url:
            env["PROGRESSCAST_MESSAGE_QUEUE_URL"] = queue_url
        return env

    def _gunicorn(self, entry: str, env: dict[str, str]):
        cmd = [
            str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py",
            "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3", entry,
        ]  # fmt: skip
        if self.kind == "progresscast-gevent":
            cmd[3:3] = ["-k", "gevent"]  # the command line wins over gunicorn.conf.py
            env["PROGRESSCAST_ASYNC_MODE"] = "gevent"
        return spawn(cmd, log=self.tmp / "server.log", env=env)

    def start(self) -> Server:
        logf = self.tmp / "server.log"
        if self.kind in IN_PROCESS:
            env = self._progresscast_env(f"sqlite:///{self.tmp / 'progresscast.db'}")
            if self.kind == "progresscast-deflate":
                env["PROGRESSCAST_WEBSOCKET_COMPRESSION"] = "true"
            if self.kind == "progresscast-fanout":
                env["PROGRESSCAST_BENCH_FANOUT_ONLY"] = "1"
            self.proc = self._gunicorn("bench.bench_wsgi:app", env)
        elif self.kind == "progresscast-redis":
            self.redis = Redis(self.tmp).start()
            env = self._progresscast_env(self.redis.url, self.redis.url)
            self.proc = self._gunicorn("wsgi:app", env)
        elif self.kind in ("flask", "flask-default", "flask-nodeflate"):
            script = str(BENCH / "peers" / "plain_flask.py")
            cmd = [sys.executable, script, "--port", str(self.port),
                   "--jobs", str(self.jobs)]  # fmt: skip
            if self.kind != "flask-default":
                cmd += ["--max-size", "25000"]
            if self.kind == "flask-nodeflate":
                cmd += ["--no-compression"]
            self.proc = spawn(cmd, log=logf)
        elif self.kind == "node":
            cmd = [NODE, str(BENCH / "peers" / "node_server.mjs"), "--port", str(self.port),
                   "--jobs", str(self.jobs)]  # fmt: skip
            self.proc = spawn(cmd, log=logf, cwd=BENCH)
        else:
            raise ValueError(self.kind)
        wait_http(self.url + "/healthz", self.proc, log=logf)
        if self.kind == "progresscast-redis":
            cport = free_port()
            self.worker = spawn(
                [sys.executable, str(BENCH / "pipelines.py"), "--store", self.redis.url,
                 "--queue", self.redis.url, "--jobs", str(self.jobs), "--port", str(cport)],
                log=self.tmp / "worker.log",
            )  # fmt: skip
            self.control = f"http://127.0.0.1:{cport}"
            wait_http(self.control + "/healthz", self.worker, log=self.tmp / "worker.log")
        info = requests.get(self.control + "/bench/info", timeout=10).json()
        assert info["jobs"] == self.jobs, info
        return self

    def pid_groups(self) -> dict[str, list[int]]:
        groups = {"server": [self.proc.pid]}
        if self.worker:
            groups["worker"] = [self.worker.pid]
        if self.redis:
            groups["redis"] = [self.redis.proc.pid]
        return groups

    def server_pid(self) -> int:
        """The process doing the work: gunicorn's worker, else the server itself."""
        procs = tree(self.proc.pid)
        return procs[-1].pid if procs else self.proc.pid

    def rss(self) -> int:
        return rss_bytes([self.proc.pid])

    def gc_stats(self, objects: bool = False) -> dict | None:
        """Garbage-collector time in the in-process progresscast server (bench_wsgi.py)."""
        if self.kind not in IN_PROCESS and not self.kind.startswith("flask"):
            return None
        params = {"objects": 1} if objects else {}
        with contextlib.suppress(requests.RequestException, ValueError):
            return requests.get(self.control + "/bench/gc", params=params, timeout=30).json()
        return None

    def post(self, path: str, **params: Any) -> dict:
        r = requests.post(self.control + path, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def get(self, path: str, **params: Any) -> dict:
        r = requests.get(self.control + path, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        kill(self.worker)
        kill(self.proc)
        if self.redis:
            self.redis.stop()


def write_tokens(path: Path, secret: str, count: int, jobs: int) -> None:
    """One token per client: its own user, allowed to read the one job it watches."""
    tokens = [
        issue_token(secret, f"bench-client-{i}", jobs=[job_id(i % jobs)], ttl=4 * 3600)
        for i in range(count)
    ]
    path.write_text(json.dumps(tokens))


def make_gens(server: Server, count: int, tokens: Path, tag: str) -> list[Loadgen]:
    return [
        Loadgen(
            server.url,
            jobs=server.jobs,
            tokens=tokens if server.uses_tokens else None,
            log=server.tmp / f"loadgen-{tag}-{g}.log",
            deflate=CLIENT_DEFLATE,
            transport="sse" if server.kind == "progresscast-sse" else "socket.io",
        )
        for g in range(count)
    ]


def connect(
    gens: list[Loadgen], have: int, want: int, rate: float, timeout_ms: int, stop_on_failure=False
) -> dict:
    """Open clients [have, want), split evenly over the generators."""
    add = want - have
    bounds = [have + add * g // len(gens) for g in range(len(gens) + 1)]
    args = [
        {"from": bounds[g], "to": bounds[g + 1], "rate": rate / len(gens),
         "inflight": 400 // len(gens), "timeoutMs": timeout_ms, "join": True,
         "stopOnFailure": stop_on_failure}
        for g in range(len(gens))
    ]  # fmt: skip
    t0 = time.monotonic()
    replies = call_all(gens, "connect", args, timeout=add / rate + timeout_ms / 1000 + 60)
    errors: dict[str, int] = {}
    retries: dict[str, int] = {}
    for r in replies:
        for k, v in r.get("joinRetries", {}).items():
            retries[k] = retries.get(k, 0) + v  # cumulative over the generator's life
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "joined": sum(r["joined"] for r in replies),
        "failed": sum(r["failed"] for r in replies),
        "skipped": sum(r.get("skipped", 0) for r in replies),
        "errors": errors,
        "join_retries": retries,
        "seconds": round(time.monotonic() - t0, 2),
    }


def quiesce(gens: list[Loadgen], limit: float = 15.0) -> float:
    """Wait until no event arrives for 0.5 s (a backlog from the last run has drained)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < limit:
        total = sum(r["totalEvents"] for r in call_all(gens, "stats", timeout=20))
        if total == last:
            break
        last = total
        time.sleep(0.5)
    return round(time.monotonic() - t0, 2)


def summarize_latency(lat_ms: np.ndarray) -> dict:
    if lat_ms.size == 0:
        return {"count": 0}
    q = np.quantile(lat_ms, [0.5, 0.9, 0.99, 0.999])
    # the CDF at 200 quantiles, enough to redraw the plot from the JSON alone
    cdf_q = np.linspace(0, 1, 201)
    return {
        "count": int(lat_ms.size),
        "p50_ms": round(float(q[0]), 3),
        "p90_ms": round(float(q[1]), 3),
        "p99_ms": round(float(q[2]), 3),
        "p999_ms": round(float(q[3]), 3),
        "max_ms": round(float(lat_ms.max()), 3),
        "mean_ms": round(float(lat_ms.mean()), 3),
        "min_ms": round(float(lat_ms.min()), 3),
        "cdf_ms": [round(float(v), 3) for v in np.quantile(lat_ms, cdf_q)],
    }


def latency_window(server: Server, gens: list[Loadgen], n: int, cfg: dict, profile: float = 0.0):
    """One timed run: every job updates `rate`/s; record the `window` after `warmup`."""
    quiet = quiesce(gens)
    t = time.time()
    since = t + cfg["warmup"] + 0.3
    until = since + cfg["window"]
    call_all(gens, "record", [{"since": since, "until": until}] * len(gens), timeout=10)
    started = server.post("/bench/start", duration=until - t + 0.3, rate=cfg["rate"], seed=n)
    if not started.get("ok"):
        raise RuntimeError(f"{server.kind}: start refused: {started}")
    groups = {**server.pid_groups(), "loadgen": [g.pid for g in gens]}
    meter = CpuMeter(groups)
    sleep_until(since - 0.05)
    gc0 = server.gc_stats()
    sleep_until(since)
    meter.start()
    spy = None
    if profile:
        spy = start_profile(server, profile)
    rss_peak = 0
    while time.time() < until:
        rss_peak = max(rss_peak, server.rss())
        time.sleep(min(1.0, max(0.0, until - time.time())))
    cpu = meter.stop()
    gc1 = server.gc_stats(objects=True)  # collections during the window (and a bit after)
    rss_end = server.rss()
    time.sleep(cfg["drain"])
    issued = server.get("/bench/issued", since=since, until=until)
    files = [server.tmp / f"lat-{n}-{g}.bin" for g in range(len(gens))]
    reports = call_all(gens, "report", [{"latFile": str(f)} for f in files], timeout=60)
    lat = np.concatenate([np.fromfile(f, dtype=np.float64) for f in files])
    for f in files:
        f.unlink()
    expected = sum(
        sum(i * w for i, w in zip(issued["per_job"], r["watchers"], strict=True)) for r in reports
    )
    received = sum(r["received"] for r in reports)
    watchers = sum(sum(r["watchers"]) for r in reports)
    target = cfg["rate"] * cfg["jobs"] * cfg["window"]
    out = {
        "clients": n,
        "watchers": watchers,
        "window_s": cfg["window"],
        "quiesce_s": quiet,
        "issued": issued["total"],
        "issued_target": target,
        "issue_rate_ratio": round(issued["total"] / target, 4),
        "pipeline_errors": issued.get("errors", 0),
        "emit_return_ms": issued.get("emit_return_ms"),
        "expected": expected,
        "received": received,
        "delivered": round(received / expected, 5) if expected else None,
        # of what the pipelines were asked to send: R x window x each client's job
        "delivered_of_target": round(received / (cfg["rate"] * cfg["window"] * watchers), 5)
        if watchers
        else None,
        "deliveries_per_s": round(received / cfg["window"], 1),
        "disconnects": sum(r["disconnects"] for r in reports),
        "payload_bytes": round(np.mean([r["payloadBytes"] or 0 for r in reports]), 1),
        "ws_extensions": sorted({k for r in reports for k in r.get("extensions", {})}),
        "cpu_pct": {k: round(v, 1) for k, v in cpu.items()},
        "rss_mb": round(rss_end / 2**20, 1),
        "rss_peak_mb": round(max(rss_peak, rss_end) / 2**20, 1),
        "loadgen_rss_mb": round(sum(r["rss"] for r in reports) / 2**20, 1),
        "latency": summarize_latency(lat),
    }
    if gc0 and gc1:
        spent = [b - a for a, b in zip(gc0["seconds"], gc1["seconds"], strict=True)]
        out["gc"] = {
            "pct_of_window": round(100 * sum(spent) / cpu["wall"], 1),
            "seconds_by_generation": [round(x, 3) for x in spent],
            "collections": [b - a for a, b in zip(gc0["collections"], gc1["collections"],
                                                  strict=True)],
            "objects": gc1.get("objects"),
        }  # fmt: skip
    if spy is not None:
        out["profile"] = finish_profile(spy, server, out)
    return out


def bursts(server: Server, gens: list[Loadgen], n: int, cfg: dict) -> dict:
    """All jobs update at one instant; time until the last client has its update."""
    quiesce(gens)
    runs = []
    for k in range(cfg["bursts"]):
        call_all(gens, "burstArm", [{"burst": k}] * len(gens), timeout=10)
        fired = server.post("/bench/burst", id=k)
        deadline = time.monotonic() + cfg["burst_timeout"]
        while time.monotonic() < deadline:
            if sum(r["received"] for r in call_all(gens, "burstCount", timeout=10)) >= n:
                break
            time.sleep(0.02)
        lat = np.array(
            [x for r in call_all(gens, "burstReport", timeout=30) for x in r["lat"]], dtype=float
        )
        runs.append({
            "received": int(lat.size),
            "last_ms": round(float(lat.max()) * 1000, 2) if lat.size else None,
            "p50_ms": round(float(np.median(lat)) * 1000, 2) if lat.size else None,
            "issue_ms": round(fired.get("issue_seconds", 0) * 1000, 2),
        })  # fmt: skip
        time.sleep(0.3)
    complete = [r["last_ms"] for r in runs if r["received"] >= n]
    return {
        "clients": n,
        "jobs": cfg["jobs"],
        "runs": runs,
        "all_delivered": len(complete) == len(runs),
        "median_last_ms": round(float(np.median(complete)), 2) if complete else None,
        "median_p50_ms": round(float(np.median([r["p50_ms"] for r in runs if r["p50_ms"]])), 2)
        if any(r["p50_ms"] for r in runs)
        else None,
    }


# ------------------------------------------------------------------ profile


def start_profile(server: Server, seconds: float):
    pyspy = VENV_BIN / "py-spy"
    if not pyspy.exists() or not server.kind.startswith("progresscast"):
        return None
    out = server.tmp / "profile.txt"
    proc = spawn(
        [str(pyspy), "record", "-p", str(server.server_pid()), "-d", str(int(seconds)),
         "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
        log=server.tmp / "py-spy.log",
    )  # fmt: skip
    return proc, out, seconds


def finish_profile(spy, server: Server, run: dict) -> dict | None:
    proc, out, seconds = spy
    try:
        proc.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        kill(proc)
    kill(proc)
    if not out.exists():
        return {"error": (server.tmp / "py-spy.log").read_text(errors="replace")[-500:]}
    return summarize_profile(out)


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/web/", "/bench/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _idle(frame: str) -> bool:
    """The eventlet hub waiting in epoll: the worker had nothing to do."""
    return frame.startswith(("Hub.wait ", "Hub.do_poll ", "BaseHub.wait "))


def summarize_profile(path: Path, top: int = 25) -> dict:
    """Inclusive and self shares per function, from py-spy's collapsed stacks."""
    total = 0
    inclusive: dict[str, int] = {}
    self_: dict[str, int] = {}
    idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        total += n
        if frames and _idle(frames[-1]):
            idle += n
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
        if frames:
            self_[frames[-1]] = self_.get(frames[-1], 0) + n

    def table(d: dict[str, int]) -> list[list]:
        return [
            [k, round(100 * v / total, 1)]
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]
        ]

    return {"samples": total, "idle_pct": round(100 * idle / total, 1) if total else None,
            "inclusive": table(inclusive), "self": table(self_), "raw": str(path.name)}  # fmt: skip


# ------------------------------------------------------------------- suites


def latency_suite(kind: str, cfg: dict, tmp: Path, secret: str, tokens: Path) -> dict:
    log(f"latency: {LABELS[kind]}")
    server = Server(kind, tmp, secret, cfg["jobs"]).start()
    gens = make_gens(server, cfg["gens"], tokens, "lat")
    out: dict[str, Any] = {"kind": kind, "label": server.label, "runs": [], "burst": None}
    have = 0
    try:
        for n in cfg["sse_clients"] if kind == "progresscast-sse" else cfg["clients"]:
            conn = connect(gens, have, n, cfg["connect_rate"], 20000)
            have = n
            log(
                f"  {n} clients: joined {conn['joined']} in {conn['seconds']}s,"
                f" failed {conn['failed']}"
            )
            last = n == max(cfg["clients"])
            profile = cfg["profile_seconds"] if last and kind in cfg["profile_servers"] else 0
            run = latency_window(server, gens, n, cfg)
            run["connect"] = conn
            out["runs"].append(run)
            lat = run["latency"]
            log(f"  {n}: p50 {lat.get('p50_ms')} ms p99 {lat.get('p99_ms')} ms"
                f" max {lat.get('max_ms')} ms,"
                f" emit returned {run.get('emit_return_ms')},"
                f" delivered {run['delivered']}, issued {run['issue_rate_ratio']:.3f},"
                f" cpu {run['cpu_pct']}")  # fmt: skip
            if profile:
                log(f"  profiling {profile:.0f}s more with py-spy (not part of the figures above)")
                prof = latency_window(server, gens, n, {**cfg, "window": profile + 1}, profile)
                out["profile"] = {**(prof.get("profile") or {}), "clients": n,
                                  "server_cpu_pct": prof["cpu_pct"]["server"],
                                  "deliveries_per_s": prof["deliveries_per_s"]}  # fmt: skip
            if n == cfg["burst_clients"]:
                out["burst"] = bursts(server, gens, n, cfg)
                log(f"  burst: median last {out['burst']['median_last_ms']} ms")
    except Exception as exc:  # keep the other servers' results
        log(f"  FAILED: {exc!r}")
        out["error"] = repr(exc)
    finally:
        for g in gens:
            g.close()
        server.stop()
    return out


def connections_suite(kind: str, cfg: dict, tmp: Path, secret: str, tokens: Path) -> dict:
    log(f"connections: {LABELS[kind]}")
    server = Server(kind, tmp, secret, cfg["jobs"]).start()
    levels = [x for x in cfg["levels"] if x <= cfg.get("level_caps", {}).get(kind, x)]
    gens = make_gens(server, math.ceil(max(levels) / cfg["per_gen"]), tokens, "conn")
    time.sleep(1.0)
    rss0 = server.rss()
    out: dict[str, Any] = {"kind": kind, "label": server.label, "rss0_mb": round(rss0 / 2**20, 1),
                           "levels": [], "held": 0,
                           "stopped": "all levels held" if levels == cfg["levels"]
                           else f"ramp capped at {levels[-1]:,} for this variant"}  # fmt: skip
    t0 = time.monotonic()
    have = 0
    try:
        for level in levels:
            if time.monotonic() - t0 > cfg["conn_budget"]:
                out["stopped"] = f"time budget ({cfg['conn_budget']:.0f}s)"
                break
            conn = connect(gens, have, level, cfg["conn_rate"], cfg["conn_timeout_ms"], True)
            have = level
            ping = call_all(gens, "ping", [{"timeoutMs": 20000, "spreadMs": 1000}] * len(gens), 60)
            answered = sum(p["answered"] for p in ping)
            time.sleep(0.5)
            rss = server.rss()
            row = {
                "level": level,
                "joined": conn["joined"],
                "failed": conn["failed"],
                "skipped": conn["skipped"],
                "errors": conn["errors"],
                "connect_s": conn["seconds"],
                "ping_answered": answered,
                "ping_p99_ms": max((p["rtt_ms"]["p99"] or 0) for p in ping),
                "ping_s": round(max(p["seconds"] for p in ping), 2),
                "rss_mb": round(rss / 2**20, 1),
                "kib_per_conn": round((rss - rss0) / max(1, conn["joined"]) / 1024, 1),
            }
            out["levels"].append(row)
            log(f"  {level}: joined {conn['joined']} failed {conn['failed']} in {conn['seconds']}s,"
                f" pings {answered}, rss {row['rss_mb']} MB"
                f" ({row['kib_per_conn']} KiB/conn)")  # fmt: skip
            if conn["joined"] < level or answered < conn["joined"]:
                out["stopped"] = f"failed at {level}: {conn['errors'] or 'pings unanswered'}"
                break
            out["held"] = level
            sys.modules["storm"].flood_in_ramp(server, gens, level, cfg, out)  # request flood
    except Exception as exc:
        log(f"  FAILED: {exc!r}")
        out["error"] = repr(exc)
        out["stopped"] = f"error: {exc!r}"[:200]
    finally:
        out["seconds"] = round(time.monotonic() - t0, 1)
        for g in gens:
            g.close()
        server.stop()
    return out


def emitter_overhead() -> dict | None:
    script = BENCH / "emitter.py"
    if not script.exists():
        return None
    log("emitter overhead: bench/emitter.py --json")
    try:
        r = subprocess.run([sys.executable, str(script), "--json"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
        if r.returncode != 0:
            return {"error": r.stderr[-1000:]}
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as exc:
        return {"error": repr(exc)}


def _compact(value: Any) -> Any:
    """A results tree without its bulky parts (CDFs, profiles, the run before)."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()
                if k not in ("cdf_ms", "profile", "previous", "config", "machine")}  # fmt: skip
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def last_run(path: Path) -> dict | None:
    """The figures of the run this one replaces (same results file), if any."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {"date": before.get("date"), "git": before.get("git"), **_compact(before)}


def update_cost() -> dict:
    """CPU per update, in-process beside the worker path (bench/update_cost.py)."""
    log("CPU per update: bench/update_cost.py (in-process, worker)")
    try:
        from update_cost import measure

        return measure()
    except Exception as exc:
        return {"error": repr(exc)}


def git_state() -> dict:
    """The commit measured, uncommitted changes, and a hash of the server's Python code."""
    import hashlib

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    paths = ["src", "web", "wsgi.py", "config.py", "gunicorn.conf.py"]
    digest = hashlib.sha256()
    for path in sorted(p for d in paths for p in (ROOT / d).rglob("*.py")) + [
        ROOT / f for f in paths if f.endswith(".py")
    ]:
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    state = {"code_sha256": digest.hexdigest()[:16]}
    with contextlib.suppress(Exception):
        state["commit"] = git("rev-parse", "--short", "HEAD")
        state["dirty"] = git("status", "--short", "--", *paths).splitlines()
    return state


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(pkg: str) -> str | None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(pkg)
        except PackageNotFoundError:
            return None

    def npm_version(name: str) -> str | None:
        p = BENCH / "node_modules" / name / "package.json"
        return json.loads(p.read_text())["version"] if p.exists() else None

    redis_v = None
    with contextlib.suppress(Exception):
        redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                 timeout=5).stdout.split()[2]  # fmt: skip
    node_v = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": node_v,
        "redis": redis_v,
        "nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0],
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "packages": {p: version(p) for p in ("flask", "flask-socketio", "python-socketio",
                                             "python-engineio", "eventlet", "gunicorn")},
        "npm": {p: npm_version(p) for p in ("socket.io", "socket.io-client", "ws")},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="progresscast benchmark suite")
    parser.add_argument("--quick", action="store_true", help="~2 minutes, for development")
    parser.add_argument(
        "--only",
        default="latency,connections,emitter,update,storm,flood,scaleout",
        help="comma list of: latency, connections, emitter, update, storm, flood, scaleout",
    )
    parser.add_argument("--servers", default=None, help="comma list restricting the servers")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy window")
    parser.add_argument("--profile", default=None, help="servers to py-spy (progresscast)")
    parser.add_argument("--no-render", action="store_true", help="do not write docs/")
    parser.add_argument("--render", action="store_true", help="write docs/ in --quick mode too")
    parser.add_argument("--out", default=None, help="results file (default by mode)")
    parser.add_argument("--no-client-deflate", action="store_true",
                        help="clients do not offer permessage-deflate (browsers do)")  # fmt: skip
    args = parser.parse_args()
    global CLIENT_DEFLATE
    CLIENT_DEFLATE = not args.no_client_deflate
    cfg = dict(QUICK if args.quick else FULL)
    sys.modules.setdefault("run", sys.modules[__name__])  # bench/storm.py imports this module
    import storm  # reconnect storms, request floods, scale-out (issue 16)

    cfg.update(storm.QUICK_STORM if args.quick else storm.FULL_STORM)
    if args.no_profile:
        cfg["profile_seconds"] = 0.0
    if args.profile:
        cfg["profile_servers"] = args.profile.split(",")
        cfg["profile_seconds"] = cfg["profile_seconds"] or 8.0
    if args.servers:
        keep = args.servers.split(",")
        cfg["latency_servers"] = [s for s in keep if s in LABELS and s != "flask-default"]
        cfg["conn_servers"] = [s for s in keep if s in LABELS and s != "progresscast-redis"]
    only = set(args.only.split(","))
    if "progresscast-redis" in cfg["latency_servers"] and not (
        __import__("shutil").which("redis-server") or Path("/usr/bin/redis-server").exists()
    ):
        log("redis-server not found: skipping the worker + Redis path")
        cfg["latency_servers"].remove("progresscast-redis")

    install_cleanup()
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg,
        "machine": machine(),
        "latency": [],
        "connections": [],
        "emitter": None,
        "update_cost": None,
        "client_deflate": CLIENT_DEFLATE,
        "git": git_state(),
    }
    log(f"mode {cfg['mode']}; load average {results['machine']['loadavg_before']}")
    RESULTS.mkdir(exist_ok=True)
    out_path = Path(args.out) if args.out else RESULTS / f"{cfg['mode']}.json"
    secret = __import__("secrets").token_urlsafe(48)
    try:
        with tempfile.TemporaryDirectory(prefix="progresscast-bench-") as tmpdir:
            tmp = Path(tmpdir)
            tokens = tmp / "tokens.json"
            count = max([*cfg["clients"], *cfg["levels"], storm.token_count(cfg)])
            write_tokens(tokens, secret, count, cfg["jobs"])
            if "emitter" in only:
                results["emitter"] = emitter_overhead()
            if "update" in only:
                results["update_cost"] = update_cost()
            if "latency" in only:
                for kind in cfg["latency_servers"]:
                    results["latency"].append(latency_suite(kind, cfg, tmp, secret, tokens))
            if "connections" in only:
                for kind in cfg["conn_servers"]:
                    results["connections"].append(connections_suite(kind, cfg, tmp, secret, tokens))
            storm.suites(only, cfg, tmp, secret, tokens, results)
    finally:
        cleanup()
    results["seconds"] = round(time.monotonic() - started, 1)
    end = git_state()
    if end["code_sha256"] != results["git"]["code_sha256"]:
        results["git_changed"] = end  # the code under test changed during the run
        log(f"WARNING: the server's code changed during the run: {end}")
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    previous = last_run(out_path)
    if previous:
        results["previous"] = previous  # docs/benchmarks.md shows both
    out_path.write_text(json.dumps(results, indent=1))
    log(f"results: {out_path} ({results['seconds']}s)")
    if not args.no_render and (args.render or not args.quick):
        from report import render

        for path in render(results, ROOT / "docs"):
            log(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
