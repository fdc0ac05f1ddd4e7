"""progresscast.protocol: the wire names in one place, and nobody else spelling them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import progresscast
from progresscast import EventType, InvalidPayload, tracker
from progresscast import protocol as p

ROOT = Path(__file__).resolve().parents[2]


def test_the_wire_names():
    """As docs/protocol.md spells them: these are what clients depend on."""
    assert p.NAMESPACE == "/progress"
    assert p.job_room("j-1") == "job:j-1"
    assert p.user_room("alice") == "user:alice"
    assert p.ALL_JOBS_ROOM == "jobs:all"
    assert p.event_rooms("j-1", "alice") == ["job:j-1", "user:alice", "jobs:all"]
    assert p.batched("user:alice") == "user:alice#batch"
    assert p.batched(p.ALL_JOBS_ROOM) == "jobs:all#batch"
    assert p.BATCH_EVENT == "job_events"
    assert p.SESSION_EXPIRED == "session_expired"
    assert {
        "join_job",
        "leave_job",
        "watch_jobs",
        "unwatch_jobs",
        "list_children",
        "cancel_job",
        "ping",
    } == p.REQUESTS
    assert p.EventType is EventType


def test_only_dashboard_rooms_are_batchable():
    assert p.is_batchable(p.user_room("alice")) and p.is_batchable(p.ALL_JOBS_ROOM)
    assert not p.is_batchable(p.job_room("j1"))
    assert not p.is_batchable(p.batched(p.job_room("j1")))


@pytest.mark.parametrize("job_id", ["a", "A.b-c_9", "7" * 128])
def test_valid_job_ids(job_id):
    assert p.validate_job_id(job_id) == job_id and p.JOB_ID_RE.match(job_id)


@pytest.mark.parametrize("job_id", ["", "-a", ".a", "_a", "a b", "a/b", "é", "a\n", "7" * 129, 7])
def test_invalid_job_ids(job_id):
    with pytest.raises(InvalidPayload) as refused:
        p.validate_job_id(job_id)
    assert refused.value.details == {"job_id": ["invalid job id"]}


def test_the_old_import_paths_still_work():
    for name in ("NAMESPACE", "ALL_JOBS_ROOM", "job_room", "user_room"):
        assert getattr(progresscast, name) is getattr(p, name)
    for name in ("NAMESPACE", "ALL_JOBS_ROOM", "JOB_ID_RE", "job_room", "user_room"):
        assert getattr(tracker, name) is getattr(p, name)
    assert tracker.event_rooms is p.event_rooms and tracker.validate_job_id is p.validate_job_id


def test_importing_progresscast_imports_no_flask():
    code = (
        "import sys, progresscast, progresscast.protocol, progresscast.tracker\n"
        "web = ('flask', 'flask_socketio', 'web')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in web))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


#: a string literal that spells a protocol name (docstrings in ``backticks`` are fine)
SPELLED = re.compile(r"""["'](job:|user:|jobs:all|#batch|job_events|/progress["'])""")
#: the files that may: the module itself, and string keys that are not rooms
ALLOWED = {
    "src/progresscast/protocol.py": None,
    "src/progresscast/flask/api.py": {"user:"},  # the HTTP rate limiter's bucket keys
    "src/progresscast/flask/settings.py": {
        "/progress"
    },  # the default URL prefix, not the namespace
}


def test_nobody_else_spells_the_protocols_names():
    """Rooms, the namespace and the batch event come from progresscast.protocol.
    (bench/peers/ is the plain Flask-SocketIO baseline: it uses no progresscast.)"""
    files = [
        *(ROOT / "src" / "progresscast").rglob("*.py"),
        *(ROOT / "web").glob("*.py"),
        *(ROOT / "bench").glob("*.py"),
    ]
    found = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED.get(rel, set())
        if allowed is None:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in SPELLED.finditer(line):
                if match.group(1).rstrip("\"'") not in allowed:
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []
