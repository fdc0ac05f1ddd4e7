"""The golden state machine fixtures (``tests/fixtures/state_machine/``).

They are what the server's :func:`progresscast.state.transition` does over a
set of scenarios (``tests/fixtures/generate.py`` writes them). Here they must
be current, and the Python client's :func:`progresscast.apply_event` must
reproduce every snapshot in them from the events alone; the JS client's
``applyEvent`` passes the same fixtures in ``tests/js/golden.test.mjs``.

The one thing a client takes from elsewhere than events: a ``cancel_job``
request for a running job publishes no event, only the snapshot's
``cancel_requested`` changes, and a client learns it from its request's ack
(or a join's snapshot). :func:`replay` sets it from the request; everything
else is compared whole, field by field.
"""

from __future__ import annotations

import copy
import json

import pytest

from progresscast import apply_event
from tests.fixtures import generate

FIXTURE_FILES = sorted(generate.FIXTURES.glob("*.json"))
REGENERATE = "python -m tests.fixtures.generate"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def replay(fixture, start):
    """Apply every event of ``fixture`` from ``start``; check each snapshot."""
    snap = start
    for n, step in enumerate(fixture["steps"]):
        request = step["request"]
        if not step["events"]:
            assert request["type"] == "cancel_job", request  # the only request without events
            snap = {**snap, "cancel_requested": request["reason"]}
        for pair in step["events"]:
            event, prev = pair["event"], snap
            before = copy.deepcopy(prev)
            snap = apply_event(prev, event)
            assert prev == before  # pure: the input is left as it was
            assert snap == pair["snapshot"], f"step {n} {request}: after {event['type']}"
        assert snap == step["snapshot"], f"step {n} {request}"
    return snap


def test_the_fixtures_are_what_the_server_does_now():
    files = generate.generate()
    stale = generate.stale(files)
    assert not stale, (
        f"the state machine fixtures are stale ({', '.join(stale)}): the server's rules"
        f" changed, or the scenarios did. Run `{REGENERATE}`, check the diff and commit it."
    )


def test_every_event_type_is_covered():
    seen = {
        pair["event"]["type"]
        for path in FIXTURE_FILES
        for step in load(path)["steps"]
        for pair in step["events"]
    }
    assert seen == {
        "job_queued",
        "job_started",
        "progress_update",
        "stage_completed",
        "job_completed",
        "job_failed",
        "job_cancelled",
    }


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_apply_event_reproduces_the_server_from_nothing(path):
    fixture = load(path)
    final = replay(fixture, None)
    assert final["status"] in ("completed", "failed", "cancelled")


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_apply_event_reproduces_the_server_from_the_initial_snapshot(path):
    fixture = load(path)
    initial = fixture["initial"]
    assert initial["seq"] == 0 and initial["status"] == "queued"
    replay(fixture, copy.deepcopy(initial))
