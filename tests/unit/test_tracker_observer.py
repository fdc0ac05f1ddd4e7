"""The tracker's observer hook (issue 15): what the server's metrics are
told, and that a tracker without an observer measures nothing."""

from __future__ import annotations

from typing import Any

from progresscast import ProgressTracker

from .fakes import DOC_STAGES


class Observer:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def applied(self, kind: str, seconds: float) -> None:
        self.calls.append(("applied", kind, seconds))

    def stored(self, events: list[dict[str, Any]], seconds: float) -> None:
        self.calls.append(("stored", [e["type"] for e in events], seconds))

    def published(self, events: list[dict[str, Any]], seconds: float, failed: int) -> None:
        self.calls.append(("published", [e["type"] for e in events], seconds, failed))


class Broken:
    def emit(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the message queue is gone")


def test_the_observer_hears_of_every_store_append_emit_and_update(tracker):
    observer = tracker.observer = Observer()
    state = tracker.create_job("report", DOC_STAGES, owner="ann")
    tracker.apply(state.job_id, "job_started")
    tracker.apply(state.job_id, "progress_update", stage="analyzing", stage_progress=10)
    names = [(call[0], call[1]) for call in observer.calls]
    assert names == [
        ("stored", ["job_queued"]),
        ("published", ["job_queued"]),
        ("stored", ["job_started"]),
        ("published", ["job_started"]),
        ("applied", "job_started"),
        ("stored", ["stage_completed", "progress_update"]),
        ("published", ["stage_completed", "progress_update"]),
        ("applied", "progress_update"),
    ]
    assert all(isinstance(call[2], float) and call[2] >= 0 for call in observer.calls)


def test_emits_that_fail_are_reported(store):
    observer = Observer()
    tracker = ProgressTracker(store, Broken(), observer=observer)
    tracker.create_job("report", DOC_STAGES, owner="ann")
    assert observer.calls[-1][0] == "published" and observer.calls[-1][3] == 1


def test_without_an_observer_nothing_is_reported(tracker):
    assert tracker.observer is None
    state = tracker.create_job("report", DOC_STAGES, owner="ann")
    tracker.apply(state.job_id, "job_started")  # no observer to call: nothing breaks


class Failing:
    """An observer whose every report raises."""

    def stored(self, *args):
        raise RuntimeError("observer down")

    published = applied = stored


def test_an_observer_that_fails_fails_no_update(store, caplog):
    sent = []

    class Emitter:
        def emit(self, name, data, **kwargs):
            sent.append(data["seq"])

    tracker = ProgressTracker(store, Emitter(), observer=Failing())
    state = tracker.create_job("report", DOC_STAGES, owner="ann")
    tracker.apply(state.job_id, "job_started")
    # both stored and both published, once each; the failures are logged
    assert [e["seq"] for e in store.events_since(state.job_id)] == [1, 2]
    assert sent == [1, 2]
    assert "the tracker's observer failed" in caplog.text
