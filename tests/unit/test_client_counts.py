"""Counts, units, rates and groups (docs/protocol.md, issue 13) on the Python
client: ``apply_event`` over events written after the protocol, and how the
terminal watcher (``python -m progresscast watch``) words them, tqdm-style.

The golden fixtures (``test_golden_fixtures.py``) hold the server's own
examples of the same rules; these pin down each rule on its own.
"""

from __future__ import annotations

import io
from functools import reduce

import pytest

from progresscast.cli import (
    BarDisplay,
    LineDisplay,
    counts_text,
    format_count,
    format_rate,
    status_line,
)
from progresscast.client import apply_event

TS = "2026-11-22T14:35:33.600Z"
COUNTS = ("n", "total", "unit", "rate")
NONE = dict.fromkeys(COUNTS)


def fold(events, snap=None):
    return reduce(apply_event, events, snap)


def counts(snap):
    return {k: snap[k] for k in COUNTS}


def update(seq, stage, job_id="j1", **fields):
    return {
        "job_id": job_id,
        "seq": seq,
        "ts": TS,
        "type": "progress_update",
        "stage": stage,
        "stage_progress": 0.0,
        "progress": 0.0,
        "message": None,
        "eta_seconds": None,
        "elapsed_seconds": float(seq),
        **NONE,
        **fields,
    }


@pytest.fixture
def counted():
    """An import: ``download`` counts 10 files, then ``load`` counts rows with no total."""
    base = {"job_id": "j1", "ts": TS}
    return [
        {
            **base,
            "seq": 1,
            "type": "job_started",
            "name": "import.csv",
            "owner": "u",
            "metadata": {},
            "stages": [{"name": "download", "weight": 0.5}, {"name": "load", "weight": 0.5}],
            "parent_id": None,
            "children": None,
        },
        update(2, "download", stage_progress=50.0, progress=25.0, n=5, total=10, unit="files"),
        update(
            3,
            "download",
            stage_progress=100.0,
            progress=50.0,
            n=10,
            total=10,
            unit="files",
            rate=2.5,
            eta_seconds=4.0,
        ),
        {
            **base,
            "seq": 4,
            "type": "stage_completed",
            "stage": "download",
            "next_stage": "load",
            "progress": 50.0,
            "elapsed_seconds": 4.0,
        },
        update(5, "load", progress=50.0, n=12400, total=None, unit="rows", rate=850.0),
    ]


def test_progress_update_sets_the_count_and_stage_completed_clears_it(counted):
    assert counts(fold(counted[:2])) == {"n": 5, "total": 10, "unit": "files", "rate": None}
    assert counts(fold(counted[:3])) == {"n": 10, "total": 10, "unit": "files", "rate": 2.5}
    between = fold(counted[:4])
    assert counts(between) == NONE and between["stage"] == "load"
    indeterminate = fold(counted)
    assert counts(indeterminate) == {"n": 12400, "total": None, "unit": "rows", "rate": 850.0}
    assert indeterminate["stage_progress"] == 0.0 and indeterminate["eta_seconds"] is None
    # an update that counts nothing clears an earlier count
    plain = apply_event(indeterminate, update(6, "load", stage_progress=10.0, progress=55.0))
    assert counts(plain) == NONE


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("job_failed", {"error": {"message": "bad row", "type": "RowError"}}),
        ("job_cancelled", {"reason": "not needed"}),
    ],
)
def test_an_early_end_carries_the_count_as_it_was(counted, kind, extra):
    ending = {
        "job_id": "j1",
        "seq": 6,
        "ts": TS,
        "type": kind,
        "stage": "load",
        "progress": 50.0,
        "stage_progress": 0.0,
        "message": None,
        "elapsed_seconds": 6.0,
        "n": 12400,
        "total": None,
        "unit": "rows",
        "rate": 850.0,
        **extra,
    }
    ended = fold([*counted, ending])
    assert ended["status"] in ("failed", "cancelled")
    assert counts(ended) == {"n": 12400, "total": None, "unit": "rows", "rate": 850.0}


def test_job_completed_follows_the_last_stage_completed_with_no_count(counted):
    base = {"job_id": "j1", "ts": TS, "elapsed_seconds": 7.0}
    done = fold(
        [
            *counted,
            {
                **base,
                "seq": 6,
                "type": "stage_completed",
                "stage": "load",
                "next_stage": None,
                "progress": 100.0,
            },
            {
                **base,
                "seq": 7,
                "type": "job_completed",
                "progress": 100.0,
                "result": None,
                "message": None,
                **NONE,
            },
        ]
    )
    assert done["status"] == "completed" and counts(done) == NONE


@pytest.mark.parametrize("kind", ["job_queued", "job_started"])
def test_a_first_snapshot_has_every_new_key(kind):
    event = {
        "job_id": "solo",
        "seq": 1,
        "ts": TS,
        "type": kind,
        "name": "doc",
        "owner": "u",
        "metadata": {},
        "stages": [{"name": "a", "weight": 1.0}],
        "parent_id": None,
        "children": None,
    }
    snap = apply_event(None, event)
    assert {k: snap[k] for k in (*COUNTS, "parent_id", "children")} == {
        **NONE,
        "parent_id": None,
        "children": None,
    }
    # an older server's event (no such fields): the keys are there all the same
    old = apply_event(None, {k: v for k, v in event.items() if k not in ("parent_id", "children")})
    assert all(old[k] is None for k in (*COUNTS, "parent_id", "children"))


def kids(**over):
    return {
        "total": 2,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "queued": 2,
        **over,
    }


def test_a_group_parent_and_child():
    def job(job_id, seq, kind, **fields):
        return {"job_id": job_id, "seq": seq, "ts": TS, "type": kind, **fields}

    common = {"owner": "u", "metadata": {}}
    jobs = [{"name": "jobs", "weight": 1.0}]
    parent = [
        job(
            "P",
            1,
            "job_queued",
            name="import",
            stages=jobs,
            parent_id=None,
            children=kids(),
            **common,
        ),
        job(
            "P",
            2,
            "job_started",
            name="import",
            stages=jobs,
            parent_id=None,
            children=kids(running=1, queued=1),
            **common,
        ),
        update(
            3,
            "jobs",
            job_id="P",
            stage_progress=50.0,
            progress=50.0,
            n=1,
            total=2,
            unit="jobs",
            rate=0.5,
            children=kids(completed=1, running=1, queued=0),
        ),
        job(
            "P",
            4,
            "stage_completed",
            stage="jobs",
            next_stage=None,
            progress=100.0,
            elapsed_seconds=4.0,
        ),
        job(
            "P",
            5,
            "job_completed",
            progress=100.0,
            result=None,
            message=None,
            elapsed_seconds=4.0,
            children=kids(completed=2, queued=0),
        ),
    ]
    assert fold(parent[:1])["children"] == kids()
    half = fold(parent[:3])
    assert half["children"] == kids(completed=1, running=1, queued=0)
    assert counts(half) == {"n": 1, "total": 2, "unit": "jobs", "rate": 0.5}
    stage_done = fold(parent[:4])
    assert counts(stage_done) == NONE and stage_done["children"] == half["children"]
    done = fold(parent)
    assert done["status"] == "completed" and done["children"] == kids(completed=2, queued=0)
    # copies: a later change to an event does not leak into the snapshot
    parent[2]["children"]["completed"] = 99
    assert half["children"]["completed"] == 1

    child = job(
        "c1",
        1,
        "job_started",
        name="clip",
        stages=[{"name": "t", "weight": 1.0}],
        parent_id="P",
        children=None,
        **common,
    )
    snap = apply_event(None, child)
    assert snap["parent_id"] == "P" and snap["children"] is None
    assert apply_event(None, {**child, "type": "job_queued"})["parent_id"] == "P"


# ---------------------------------------------------------------- the watcher


def test_counts_and_rates_read_like_tqdm():
    assert format_count(12400) == "12,400"
    assert format_count(12400.0) == "12,400"
    assert format_count(2.5) == "2.5"
    rates = [850, 850.4, 1234.5, 12.4, 9.96, 1.23, 1.2, 0.25, 0.0996, 3.0, 0.0]
    assert [format_rate(r) for r in rates] == [
        "850",
        "850",
        "1,235",
        "12",
        "10",
        "1.2",
        "1.2",
        "0.25",
        "0.1",
        "3",
        "0",
    ]
    running = {"status": "running", "n": 12400, "total": 50000, "unit": "rows", "rate": 850.3}
    assert counts_text(running) == "12,400/50,000 rows · 850 rows/s"
    assert counts_text({**running, "total": None}) == "12,400 rows · 850 rows/s"
    assert counts_text({**running, "rate": None}) == "12,400/50,000 rows"
    assert counts_text({**running, "unit": None, "rate": 1.2}) == "12,400/50,000 · 1.2/s"
    assert counts_text({**running, "status": "failed"}) == "12,400/50,000 rows"
    assert counts_text({**running, **NONE}) is None


SNAP = {
    "job_id": "j1",
    "name": "import.csv",
    "status": "running",
    "stages": [{"name": "download"}, {"name": "load"}],
    "stage": "load",
    "stage_progress": 24.8,
    "progress": 62.4,
    "eta_seconds": 45.0,
    "message": None,
    "cancel_requested": None,
    "n": 12400,
    "total": 50000,
    "unit": "rows",
    "rate": 850.0,
    "parent_id": None,
    "children": None,
}


def test_status_line_with_a_count_without_a_total_and_for_a_group():
    assert status_line(SNAP) == (
        " 62.4% | load (2/2) 25% | 12,400/50,000 rows · 850 rows/s | ETA about 45 s"
    )
    # indeterminate: no stage percent (there is none), no ETA (the server sends null)
    indeterminate = {
        **SNAP,
        "total": None,
        "stage_progress": 0.0,
        "progress": 50.0,
        "eta_seconds": None,
    }
    assert status_line(indeterminate) == " 50.0% | load (2/2) | 12,400 rows · 850 rows/s"
    failed = {**indeterminate, "status": "failed"}
    assert status_line(failed) == " 50.0% | failed in load (2/2) | 12,400 rows"
    # a group's parent: its children, ended of all, and the ones that failed or were cancelled
    parent = {
        **SNAP,
        "name": "import 10 videos",
        "stages": [{"name": "jobs"}],
        "stage": "jobs",
        "stage_progress": 30.0,
        "progress": 30.0,
        "eta_seconds": 20.0,
        "n": 3,
        "total": 10,
        "unit": "jobs",
        "rate": 0.5,
        "children": {
            "total": 10,
            "completed": 2,
            "failed": 1,
            "cancelled": 0,
            "running": 3,
            "queued": 4,
        },
    }
    assert status_line(parent) == (
        " 30.0% | running | 3/10 jobs · 1 failed · 0.5 jobs/s | ETA about 20 s"
    )
    # ended: its stage completed (no count left) but its children's counts stay
    ended = {
        **parent,
        **NONE,
        "status": "cancelled",
        "stage": None,
        "progress": 80.0,
        "children": {
            "total": 10,
            "completed": 8,
            "failed": 0,
            "cancelled": 2,
            "running": 0,
            "queued": 0,
        },
    }
    assert status_line(ended) == " 80.0% | cancelled | 10/10 jobs · 2 cancelled"


def test_plain_lines_show_counts():
    out = io.StringIO()
    display = LineDisplay(out, interval=0)
    display.update(SNAP)
    display.update({**SNAP, "n": 25000, "stage_progress": 50.0, "progress": 75.0})
    display.close(None)
    assert out.getvalue().splitlines() == [
        " 62.4% | load (2/2) 25% | 12,400/50,000 rows · 850 rows/s | ETA about 45 s",
        " 75.0% | load (2/2) 50% | 25,000/50,000 rows · 850 rows/s | ETA about 45 s",
    ]


def test_the_terminal_bar_shows_counts_and_pulses_without_a_total():
    out = io.StringIO()
    display = BarDisplay(out, "import.csv")
    display.update(SNAP)
    task = display.progress.tasks[0]
    assert task.total == 100 and task.completed == 62.4
    assert task.fields["counts"] == "12,400/50,000 rows · 850 rows/s"
    indeterminate = {**SNAP, "total": None, "eta_seconds": None}
    display.update(indeterminate)
    assert task.total is None  # rich draws a pulsing bar
    assert task.fields["stage"] == "load (2/2)"
    display.close(indeterminate)
    assert "import.csv" in out.getvalue()
    assert "62.4% load (2/2) 12,400 rows · 850 rows/s" in out.getvalue()
    display = BarDisplay(io.StringIO(), "import.csv")
    display.update(indeterminate)
    display.close({**indeterminate, **NONE, "status": "completed", "stage": None})
    assert display.progress.tasks[0].total == 100  # a bar again once the count is gone
