"""The ETA learned from past runs (docs/protocol.md "ETA, history and learned
weights", issue 14) on the Python client: ``apply_event`` over events written
after the protocol (``kind``, ``weights``, the weights in force at start,
``eta_low`` and ``eta_high``), and how the terminal watcher words an estimate.

The golden fixtures (``test_golden_fixtures.py``) hold the server's own
examples of the same rules; these pin down each rule on its own.
"""

from __future__ import annotations

import io
from functools import reduce

import pytest

from progresscast.cli import LineDisplay, _eta, status_line
from progresscast.client import apply_event

TS = "2026-11-22T14:35:33.600Z"
ETA = ("eta_seconds", "eta_low", "eta_high")
DECLARED = [{"name": "fetch", "weight": 1.0}, {"name": "convert", "weight": 3.0}]
LEARNED = [{"name": "fetch", "weight": 0.2}, {"name": "convert", "weight": 0.8}]


def fold(events, snap=None):
    return reduce(apply_event, events, snap)


def eta(snap):
    return tuple(snap[k] for k in ETA)


def event(seq, type_, **fields):
    return {"job_id": "j1", "seq": seq, "ts": TS, "type": type_, **fields}


def created(seq, type_, stages=DECLARED, weights="declared", **fields):
    return event(
        seq,
        type_,
        name="import 2026-11-22",
        stages=stages,
        owner="u",
        metadata={},
        parent_id=None,
        kind="nightly import",
        weights=weights,
        **fields,
    )


def update(seq, stage, eta_seconds, eta_low=None, eta_high=None, **fields):
    return event(
        seq,
        "progress_update",
        stage=stage,
        stage_progress=50.0,
        progress=10.0 * seq,
        message=None,
        eta_seconds=eta_seconds,
        eta_low=eta_low,
        eta_high=eta_high,
        elapsed_seconds=float(seq),
        n=None,
        total=None,
        unit=None,
        rate=None,
        **fields,
    )


def stage_done(seq, stage, next_stage):
    return event(
        seq,
        "stage_completed",
        stage=stage,
        next_stage=next_stage,
        progress=20.0,
        elapsed_seconds=float(seq),
    )


def ended(seq, type_):
    fields = {"progress": 100.0, "result": None, "elapsed_seconds": 9.0, "message": None}
    if type_ != "job_completed":
        fields = {
            "stage": "convert",
            "progress": 60.0,
            "stage_progress": 50.0,
            "message": None,
            "elapsed_seconds": 9.0,
            "n": None,
            "total": None,
            "unit": None,
            "rate": None,
        }
        if type_ == "job_failed":
            fields["error"] = {"message": "disk full", "type": "OSError"}
        else:
            fields["reason"] = "user asked"
    return event(seq, type_, **fields)


def test_a_fresh_job_has_a_kind_declared_weights_and_no_estimate():
    for first in ("job_queued", "job_started"):
        snap = apply_event(None, created(1, first))
        assert (snap["kind"], snap["weights"]) == ("nightly import", "declared")
        assert eta(snap) == (None, None, None)


def test_job_started_replaces_the_weights_and_says_where_they_came_from():
    queued = apply_event(None, created(1, "job_queued"))
    assert [s["weight"] for s in queued["stages"]] == [1.0, 3.0]
    started = apply_event(queued, created(2, "job_started", stages=LEARNED, weights="learned"))
    assert started["weights"] == "learned" and started["kind"] == "nightly import"
    assert [(s["name"], s["weight"]) for s in started["stages"]] == [
        ("fetch", 0.2),
        ("convert", 0.8),
    ]
    # status and progress by the usual rules: the first stage runs, the rest wait
    assert [(s["status"], s["progress"]) for s in started["stages"]] == [
        ("running", 0.0),
        ("pending", 0.0),
    ]
    assert [s["weight"] for s in queued["stages"]] == [1.0, 3.0]  # pure
    # a job created running: its one event sets everything
    fresh = apply_event(None, created(1, "job_started", stages=LEARNED, weights="learned"))
    assert fresh["stages"] == started["stages"] and fresh["weights"] == "learned"


def test_progress_updates_carry_the_estimate_and_its_range():
    start = created(1, "job_started")
    snap = fold([start, update(2, "fetch", 150.0, 100.0, 250.0)])
    assert eta(snap) == (150.0, 100.0, 250.0)
    # fewer than three past runs: an estimate without a range
    snap = apply_event(snap, update(3, "fetch", 120.0))
    assert eta(snap) == (120.0, None, None)
    # no signal: nothing invented
    assert eta(apply_event(snap, update(4, "fetch", None))) == (None, None, None)


def test_a_stage_transition_keeps_the_estimate():
    snap = fold([created(1, "job_started"), update(2, "fetch", 150.0, 100.0, 250.0)])
    after = apply_event(snap, stage_done(3, "fetch", "convert"))
    assert after["stage"] == "convert"
    assert eta(after) == (150.0, 100.0, 250.0)


@pytest.mark.parametrize(
    ("type_", "eta_seconds"),
    [("job_completed", 0.0), ("job_failed", None), ("job_cancelled", None)],
)
def test_ending_events_clear_the_range(type_, eta_seconds):
    events = [created(1, "job_started"), update(2, "fetch", 150.0, 100.0, 250.0)]
    if type_ == "job_completed":
        events += [stage_done(3, "fetch", "convert"), stage_done(4, "convert", None)]
    snap = fold([*events, ended(len(events) + 1, type_)])
    assert eta(snap) == (eta_seconds, None, None)


def test_events_from_before_the_extension_still_apply():
    """A job stored before issue 14: no kind, weights or range on its events."""
    old = {k: v for k, v in created(1, "job_started").items() if k not in ("kind", "weights")}
    progress = {k: v for k, v in update(2, "fetch", 30.0).items() if k not in ETA[1:]}
    snap = fold([old, progress])
    assert (snap["kind"], snap["weights"]) == ("import 2026-11-22", "declared")
    assert eta(snap) == (30.0, None, None)


# --------------------------------------------------------------------------- #
# the terminal watcher's words for an estimate

RUNNING = {
    "job_id": "j1",
    "name": "import",
    "status": "running",
    "stages": [{"name": "fetch"}, {"name": "convert"}],
    "stage": "convert",
    "stage_progress": 50.0,
    "progress": 60.0,
    "message": None,
    "cancel_requested": None,
    "eta_seconds": None,
    "eta_low": None,
    "eta_high": None,
}


@pytest.mark.parametrize(
    ("eta_seconds", "eta_low", "eta_high", "text"),
    [
        # a range: both ends in one unit when they share it, else each in its own
        (180.0, 100.0, 250.0, "2–4 min"),
        (70.0, 40.0, 120.0, "40 s–2 min"),
        (5400.0, 3600.0, 7200.0, "1–2 h"),
        (30.0, 20.0, 42.4, "20–42 s"),
        (2400.0, 1500.0, 5400.0, "25 min–1.5 h"),
        # both ends read the same: no range worth showing
        (180.0, 170.0, 190.0, "about 3 min"),
        (6800.0, 6700.0, 6900.0, "about 1.9 h"),
        (40.0, 39.6, 40.4, "about 40 s"),
        # only the estimate (fewer than three past runs)
        (40.0, None, None, "about 40 s"),
        (185.0, None, None, "about 3 min"),
        (89.0, None, None, "about 1 min"),
        (90.0, None, None, "about 2 min"),  # half up, as the dashboard rounds
        (3599.0, None, None, "about 1 h"),
        (5400.0, None, None, "about 1.5 h"),
        (50000.0, None, None, "about 14 h"),
        (0.0, None, None, "about 0 s"),
        # half a range is no range
        (180.0, 100.0, None, "about 3 min"),
        # no estimate: none shown
        (None, None, None, None),
    ],
)
def test_eta_text(eta_seconds, eta_low, eta_high, text):
    snap = {**RUNNING, "eta_seconds": eta_seconds, "eta_low": eta_low, "eta_high": eta_high}
    assert _eta(snap) == text


def test_eta_only_while_running():
    snap = {**RUNNING, "eta_seconds": 60.0, "eta_low": 30.0, "eta_high": 90.0}
    for status in ("queued", "completed", "failed", "cancelled"):
        assert _eta({**snap, "status": status}) is None


def test_the_status_line_says_about_or_gives_the_range():
    ranged = {**RUNNING, "eta_seconds": 180.0, "eta_low": 100.0, "eta_high": 250.0}
    assert status_line(ranged) == " 60.0% | convert (2/2) 50% | ETA 2–4 min"
    alone = {**ranged, "eta_low": None, "eta_high": None}
    assert status_line(alone) == " 60.0% | convert (2/2) 50% | ETA about 3 min"
    assert status_line({**alone, "eta_seconds": None}) == " 60.0% | convert (2/2) 50%"
    # snapshots from before issue 14 have no range at all
    old = {k: v for k, v in alone.items() if k not in ("eta_low", "eta_high")}
    assert status_line(old) == " 60.0% | convert (2/2) 50% | ETA about 3 min"


def test_plain_lines_show_the_range():
    out = io.StringIO()
    display = LineDisplay(out, interval=0)
    display.update({**RUNNING, "eta_seconds": 180.0, "eta_low": 100.0, "eta_high": 250.0})
    display.update({**RUNNING, "progress": 70.0, "eta_seconds": 40.0})
    display.close(None)
    assert out.getvalue().splitlines() == [
        " 60.0% | convert (2/2) 50% | ETA 2–4 min",
        " 70.0% | convert (2/2) 50% | ETA about 40 s",
    ]
