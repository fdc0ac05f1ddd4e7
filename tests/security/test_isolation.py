"""Isolation, as a property over a seeded-random sequence of attempts.

Four users own jobs; carol holds a share link for one of alice's jobs (and
owns a job herself), root is an admin and "pipeline" holds a service token.
Every principal keeps one Socket.IO connection (watching what it may watch)
and an HTTP session. A seeded-random sequence mixes
attempts on other users' jobs, nonexistent jobs, shared and own jobs, over
Socket.IO and REST, with owners posting real progress so live traffic flows.

Properties:
  (a) nothing about a job a principal may not read ever reaches it: no live
      event, no snapshot or event in any ack or REST body;
  (b) every refusal is ``not_found`` or ``forbidden``, and the refusal for
      another user's job is indistinguishable from the one for a job that
      does not exist (status, code, message with the id replaced, details);
  (c) no attempt changed a job its author may not see (seq, status and
      cancel_requested as the owners' own posts left them);
  (d) the server stays up.

The server runs with raised rate limits (``RAISED_LIMITS``: SOCKET_RATE,
SOCKET_BURST, HTTP_RATE, HTTP_BURST = 100000), so the sequence can run at
full speed without rate_limited refusals muddying property (b); the limits
themselves are tested in test_limits.py.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.harness import SocketClient, token_for, wait_until

from .support import RAISED_LIMITS, bearer, running_server

pytestmark = pytest.mark.server

SEEDS = [101, 202, 303, 404]
ATTEMPTS_PER_SEED = 250
STAGES = ["parse", "analyze", "render"]
OWNERS = {"alice": 3, "bob": 3, "dave": 2, "erin": 2}  # user -> jobs created


@dataclass
class Principal:
    name: str
    user: str
    token: str
    admin: bool = False
    service: bool = False
    jobs: frozenset[str] = frozenset()  # share-link jobs
    sock: SocketClient | None = None
    http: requests.Session | None = None


@dataclass
class Job:
    job_id: str
    owner: str
    seq: int
    status: str
    stage_index: int = 0
    stage_progress: float = 0.0


@dataclass
class Tally:
    attempts: int = 0
    refusals: int = 0
    progress_posts: int = 0
    items_checked: int = 0  # snapshots and events in acks and REST bodies
    live_events_checked: int = 0
    leaks: list[str] = field(default_factory=list)
    by_op: Counter = field(default_factory=Counter)


class World:
    """The model: who owns what, what each principal may read, the expected
    state of every job, and everything observed."""

    def __init__(self, server) -> None:
        self.server = server
        self.jobs: dict[str, Job] = {}
        self.principals: dict[str, Principal] = {}
        self.missing = [uuid.uuid4().hex for _ in range(4)]  # ids no job has
        self.tally = Tally()
        # (channel, op, actor, target kind) -> normalised refusals seen
        self.refusals: dict[tuple, set] = defaultdict(set)

    # -- the access rule, written down independently of progresscast/flask/access.py

    def may_read(self, who: Principal, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and (
            who.admin or who.service or who.user == job.owner or job_id in who.jobs
        )

    def see(self, who: Principal, job_id: Any, where: str) -> None:
        """``who`` received something about ``job_id``: it must be readable."""
        self.tally.items_checked += 1
        if not (isinstance(job_id, str) and self.may_read(who, job_id)):
            self.tally.leaks.append(f"{who.name} got {job_id!r} in {where}")

    def see_events(self, who: Principal, events: Any, where: str) -> None:
        assert isinstance(events, list), events
        for event in events:
            self.see(who, event.get("job_id"), where)

    # -- targets

    def target(self, rng: random.Random, who: Principal, kind: str) -> str | None:
        own = [j.job_id for j in self.jobs.values() if j.owner == who.user]
        others = [
            j.job_id for j in self.jobs.values() if j.owner != who.user and j.job_id not in who.jobs
        ]
        pool = {
            "own": own,
            "other": others,
            "missing": self.missing,
            "shared": sorted(who.jobs),
        }[kind]
        return rng.choice(pool) if pool else None

    # -- refusals

    def refused(self, channel: str, op: str, who: Principal, kind: str, job_id, key) -> None:
        """Record a refusal; ``key`` is (status, code, message, details)."""
        self.tally.refusals += 1
        status, code, message, details = key
        assert code in {"not_found", "forbidden"}, (channel, op, who.name, kind, key)
        normal = (
            status,
            code,
            message.replace(job_id, "<id>") if job_id else message,
            json.dumps(details, sort_keys=True).replace(job_id or "\0", "<id>"),
        )
        self.refusals[(channel, op, who.name, kind)].add(normal)


# ---------------------------------------------------------------------- setup


def create_jobs(world: World) -> None:
    for user, count in OWNERS.items():
        session = requests.Session()
        session.headers.update(bearer(token_for(user)))
        for i in range(count):
            start = i != 1  # the second job of each owner stays queued
            r = session.post(
                world.server.url + "/api/jobs",
                json={"name": f"{user}-{i}", "stages": STAGES, "start": start},
                timeout=10,
            )
            assert r.status_code == 201, r.text
            snap = r.json()
            assert snap["owner"] == user
            world.jobs[snap["job_id"]] = Job(snap["job_id"], user, snap["seq"], snap["status"])
        session.close()


def open_principals(world: World) -> None:
    alice_jobs = sorted(j.job_id for j in world.jobs.values() if j.owner == "alice")
    shared = alice_jobs[0]
    specs = [Principal(u, u, token_for(u)) for u in OWNERS]
    specs.append(
        Principal("carol", "carol", token_for("carol", jobs=[shared]), jobs=frozenset({shared}))
    )
    specs.append(Principal("root", "root", token_for("root", admin=True), admin=True))
    # a pipeline's service token reads every job (README "Access tokens") and
    # may post to any: only its attempts on missing jobs are attacks
    specs.append(
        Principal("pipeline", "pipeline", token_for("pipeline", service=True), service=True)
    )
    for p in specs:
        p.http = requests.Session()
        p.http.headers.update(bearer(p.token))
        p.sock = SocketClient(world.server.url, token=p.token)
        world.principals[p.name] = p

    # carol also owns a job of her own, created with her share-link token
    carol = world.principals["carol"]
    r = carol.http.post(
        world.server.url + "/api/jobs",
        json={"name": "carol-0", "stages": STAGES, "start": True},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    snap = r.json()
    world.jobs[snap["job_id"]] = Job(snap["job_id"], "carol", snap["seq"], snap["status"])

    # everyone watches what they may: their own jobs, carol her shared job, root everything
    for p in world.principals.values():
        ack = p.sock.call("watch_jobs", {"all": True} if p.admin else {})  # service: its own
        assert ack["ok"] is True, ack
        world.see_events(p, ack["jobs"], "watch_jobs ack")
        for job_id in p.jobs:
            ack = p.sock.call("join_job", {"job_id": job_id, "since": 0})
            assert ack["ok"] is True, ack
            world.see(p, ack["job"]["job_id"], "join_job ack")
            world.see_events(p, ack["events"], "join_job ack")


# ------------------------------------------------------------------ the moves


def post_progress(world: World, rng: random.Random) -> None:
    """An owner reports real progress on one of its running jobs."""
    running = [j for j in world.jobs.values() if j.status == "running"]
    job = rng.choice(running)
    owner = world.principals[job.owner]
    if job.stage_progress >= 100 and job.stage_index < len(STAGES) - 1:
        job.stage_index += 1  # a later stage: the server completes the current one
        job.stage_progress = 0.0
    job.stage_progress = min(100.0, job.stage_progress + rng.uniform(5, 40))
    body = {
        "type": "progress_update",
        "stage": STAGES[job.stage_index],
        "stage_progress": round(job.stage_progress, 2),
        "message": f"step {world.tally.progress_posts}",
    }
    r = owner.http.post(f"{world.server.url}/api/jobs/{job.job_id}/events", json=body, timeout=10)
    assert r.status_code == 201, r.text
    result = r.json()
    world.see_events(owner, result["events"], "POST events body")
    world.see(owner, result["job"]["job_id"], "POST events body")
    assert [e["seq"] for e in result["events"]] == list(
        range(job.seq + 1, result["job"]["seq"] + 1)
    ), (job, result)
    job.seq, job.status = result["job"]["seq"], result["job"]["status"]
    world.tally.progress_posts += 1


SOCKET_OPS = ["join_job", "cancel_job", "leave_job", "watch_jobs", "watch_all"]
REST_OPS = ["list", "get", "events", "post_events", "cancel"]
NASTY_BODIES = [
    {"type": "progress_update", "stage": "analyze", "stage_progress": 99},
    {"type": "job_completed", "result": {"stolen": True}},
    {"type": "job_cancelled", "reason": "mine now"},
    {"type": "job_failed", "error": "sabotage"},
]


def attempt(world: World, rng: random.Random) -> None:
    """One principal tries one thing on one target."""
    who = rng.choice(list(world.principals.values()))
    channel = rng.choice(["socket", "rest"])
    op = rng.choice(SOCKET_OPS if channel == "socket" else REST_OPS)
    kinds = ["own", "other", "other", "missing", "missing"] + (["shared"] * 2 if who.jobs else [])
    kind = rng.choice(kinds)
    everything = who.admin or who.service  # they may read (and cancel) every job
    if op in {"cancel_job", "cancel", "leave_job"} and (kind in {"own", "shared"} or everything):
        # Who may read a job may cancel it (and leave its room): only the
        # attempts on jobs it may not read are attacks.
        kind = "missing" if everything else rng.choice(["other", "missing"])
    if op == "post_events" and kind == "own":
        kind = "other"  # an owner's own posts are the legitimate traffic
    if op == "post_events" and who.service:
        kind = "missing"  # a service token may post to any job
    job_id = world.target(rng, who, kind)
    if job_id is None:
        return
    world.tally.attempts += 1
    world.tally.by_op[f"{channel}:{op}"] += 1
    readable = world.may_read(who, job_id)
    if channel == "socket":
        socket_attempt(world, rng, who, op, kind, job_id, readable)
    else:
        rest_attempt(world, rng, who, op, kind, job_id, readable)


def socket_attempt(world, rng, who: Principal, op, kind, job_id, readable) -> None:
    sock = who.sock
    if op == "watch_jobs":
        ack = sock.call("watch_jobs", {})
        assert ack["ok"] is True, ack
        world.see_events(who, ack["jobs"], "watch_jobs ack")
        assert {j["owner"] for j in ack["jobs"]} <= {who.user}, ack
        return
    if op == "watch_all":
        ack = sock.call("watch_jobs", {"all": True})
        if who.admin:
            assert ack["ok"] is True, ack
            world.see_events(who, ack["jobs"], "watch_jobs all ack")
        else:
            assert ack["ok"] is False and ack["error"]["code"] == "forbidden", ack
            err = ack["error"]
            world.refused("socket", op, who, kind, None, (None, err["code"], err["message"], {}))
        return
    if op == "join_job":
        payload: dict[str, Any] = {"job_id": job_id}
        since = rng.choice([None, 0, 1, rng.randint(0, 50)])
        if since is not None:
            payload["since"] = since
        ack = sock.call("join_job", payload)
    elif op == "cancel_job":
        ack = sock.call("cancel_job", {"job_id": job_id, "reason": "let me in"})
    else:  # leave_job: harmless for anyone, answers ok
        ack = sock.call("leave_job", {"job_id": job_id})
        assert ack == {"ok": True}, ack
        return
    if readable:
        assert op == "join_job" and ack["ok"] is True, (who.name, op, kind, ack)
        world.see(who, ack["job"].get("job_id"), "join_job ack")
        assert ack["job"]["job_id"] == job_id, ack
        world.see_events(who, ack.get("events", []), "join_job ack events")
        return
    assert ack["ok"] is False, (who.name, op, kind, ack)
    assert set(ack) == {"ok", "error"}, ack
    err = ack["error"]
    assert err["code"] == "not_found", (who.name, op, kind, ack)
    key = (None, err["code"], err["message"], err.get("details"))
    world.refused("socket", op, who, kind, job_id, key)


def rest_attempt(world, rng, who: Principal, op, kind, job_id, readable) -> None:
    url = world.server.url
    http = who.http
    if op == "list":
        params = rng.choice([{}, {"status": "running"}, {"status": "queued"}, {"page_size": 2}])
        r = http.get(f"{url}/api/jobs", params=params, timeout=10)
        assert r.status_code == 200, r.text
        world.see_events(who, r.json(), "GET /api/jobs")
        return
    if op == "get":
        r = http.get(f"{url}/api/jobs/{job_id}", timeout=10)
    elif op == "events":
        r = http.get(
            f"{url}/api/jobs/{job_id}/events",
            params={"since": rng.randint(0, 3), "limit": rng.randint(1, 50)},
            timeout=10,
        )
    elif op == "post_events":
        r = http.post(f"{url}/api/jobs/{job_id}/events", json=rng.choice(NASTY_BODIES), timeout=10)
    else:  # cancel
        r = http.post(f"{url}/api/jobs/{job_id}/cancel", json={"reason": "mine"}, timeout=10)

    if readable and op in {"get", "events"}:
        assert r.status_code == 200, (who.name, op, kind, r.text)
        body = r.json()
        world.see(who, body["job_id"], f"GET {op}")
        if op == "events":
            world.see_events(who, body["events"], "GET events")
        return
    expected = 403 if (readable and op == "post_events") else 404
    assert r.status_code == expected, (who.name, op, kind, r.status_code, r.text)
    body = r.json()
    assert set(body) <= {"code", "message", "details"}, body
    assert body["code"] == {403: "forbidden", 404: "not_found"}[expected], body
    key = (r.status_code, body["code"], body["message"], body.get("details"))
    world.refused("rest", op, who, kind, job_id, key)


# ------------------------------------------------------------------ the test


def test_no_principal_ever_sees_or_changes_a_job_it_may_not_read(tmp_path):
    with running_server(tmp_path / "srv", **RAISED_LIMITS) as server:
        world = World(server)
        try:
            create_jobs(world)
            open_principals(world)
            for seed in SEEDS:
                rng = random.Random(seed)
                for _ in range(ATTEMPTS_PER_SEED):
                    if rng.random() < 0.25:
                        post_progress(world, rng)
                    else:
                        attempt(world, rng)
            finish(world)
        finally:
            for p in world.principals.values():
                if p.sock is not None:
                    p.sock.close()
                if p.http is not None:
                    p.http.close()


def finish(world: World) -> None:
    server, tally = world.server, world.tally

    # Live traffic: each principal ends up with the final event of every job
    # it watches (so everything sent has arrived), and nothing else.
    received: dict[str, list[dict]] = {name: [] for name in world.principals}

    def drain(p: Principal) -> list[dict]:
        while not p.sock.events.empty():
            received[p.name].append(p.sock.events.get_nowait())
        return received[p.name]

    for p in world.principals.values():
        watched = {  # the rooms it joined at the start: all (admin), its own and shared
            j.job_id: j.seq
            for j in world.jobs.values()
            if p.admin or j.owner == p.user or j.job_id in p.jobs
        }

        def complete(p=p, watched=watched) -> bool:
            last: dict[str, int] = {}
            for e in drain(p):
                last[e["job_id"]] = max(last.get(e["job_id"], 0), e["seq"])
            return all(last.get(j, 0) >= seq for j, seq in watched.items() if seq > 1)

        wait_until(complete, timeout=15, what=f"{p.name}'s live events")
    for name, events in received.items():
        p = world.principals[name]
        for event in events:
            tally.live_events_checked += 1
            if not world.may_read(p, event["job_id"]):
                tally.leaks.append(f"{name} got live {event['type']} of {event['job_id']}")

    # (c) every job is exactly as its owner's posts left it
    admin = world.principals["root"].http
    for job in world.jobs.values():
        snap = admin.get(f"{server.url}/api/jobs/{job.job_id}", timeout=10).json()
        assert (snap["seq"], snap["status"], snap["cancel_requested"]) == (
            job.seq,
            job.status,
            None,
        ), (job, snap)
        page = admin.get(
            f"{server.url}/api/jobs/{job.job_id}/events", params={"limit": 1000}, timeout=10
        ).json()
        assert [e["seq"] for e in page["events"]] == list(range(1, job.seq + 1))
        assert not {"job_completed", "job_failed", "job_cancelled"} & {
            e["type"] for e in page["events"]
        }, page

    # (b) for every (channel, op, principal): another's job and a missing one
    # are refused identically
    compared = 0
    for (channel, op, name, kind), seen in sorted(world.refusals.items()):
        if kind != "other" or world.principals[name].admin or world.principals[name].service:
            continue  # they may read other users' jobs: nothing to hide from them
        twin = world.refusals.get((channel, op, name, "missing"))
        if twin is None:
            continue
        compared += 1
        assert seen == twin, (channel, op, name, seen, twin)
    assert compared >= 10, world.refusals.keys()

    # (d) the server is up
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200

    figures = {
        "attempts": tally.attempts,
        "refusals": tally.refusals,
        "progress_posts": tally.progress_posts,
        "snapshots_and_events_in_bodies_checked": tally.items_checked,
        "live_events_checked": tally.live_events_checked,
        "refusal_pairs_compared": compared,
        "leaks": len(tally.leaks),
    }
    print("\nisolation figures:", json.dumps(figures), "\nby op:", dict(tally.by_op))
    assert not tally.leaks, tally.leaks[:20]
    assert tally.attempts >= 600 and tally.refusals >= 250, figures
