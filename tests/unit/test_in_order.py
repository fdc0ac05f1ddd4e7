"""A server delivers each job's events in seq order whatever order they were
published in (progresscast.flask.in_order), on a real SQLite store.

The end-to-end case, two publishers through a real server and Redis, is in
tests/integration/test_queue_subscription.py.
"""

from __future__ import annotations

import pytest

from progresscast import ProgressTracker, SQLiteStore
from progresscast.flask.in_order import MAX_FILL, JobOrder, job_event
from tests.harness import DOC_STAGES


@pytest.fixture
def tracker(tmp_path):
    t = ProgressTracker(SQLiteStore(str(tmp_path / "order.db")))
    yield t
    t.close()


def stored_job(tracker: ProgressTracker, updates: int) -> tuple[str, list[dict]]:
    """A running job with ``updates`` progress updates after its start; its
    stored events (seq 1 = job_queued, 2 = job_started, then the updates)."""
    job_id = tracker.create_job("import", DOC_STAGES, owner="alice").job_id
    tracker.record(job_id, "job_started")
    for i in range(updates):
        tracker.record(job_id, "progress_update", stage="parsing", stage_progress=i + 1)
    return job_id, tracker.store.events_since(job_id)


def delivered_by(order: JobOrder, events: list[dict]) -> list[int]:
    sent: list[int] = []
    for event in events:
        order.deliver(event, lambda e: sent.append(e["seq"]))
    return sent


def test_events_in_order_pass_through_one_each(tracker):
    _, events = stored_job(tracker, 3)
    assert delivered_by(JobOrder(tracker.store.events_since), events) == [1, 2, 3, 4, 5]


def test_an_event_ahead_of_its_predecessor_brings_it_from_the_store_and_the_late_copy_is_dropped(
    tracker,
):
    _, events = stored_job(tracker, 3)
    e = {ev["seq"]: ev for ev in events}
    order = JobOrder(tracker.store.events_since)
    sent: list[dict] = []
    for event in (e[1], e[2], e[4], e[3], e[5]):  # 4 was published before 3
        order.deliver(event, sent.append)
    assert sent == events  # the stored events, each once, in order


def test_a_read_starts_the_job_where_the_client_read_it(tracker):
    job_id, events = stored_job(tracker, 4)
    order = JobOrder(tracker.store.events_since)
    order.note_read(job_id, 3)  # a join read seq 3; 4 is still on its way, 5 is here
    assert delivered_by(order, [events[4], events[3]]) == [4, 5]
    # a read does not move a job back once something was delivered
    order.note_read(job_id, 1)
    assert delivered_by(order, [events[2]]) == []


def test_a_job_seen_first_mid_way_starts_from_its_first_event(tracker):
    _, events = stored_job(tracker, 4)
    order = JobOrder(tracker.store.events_since)
    # Nobody read it here: nothing before seq 4 is fetched, and an older one
    # that comes later is passed on as it comes (someone may need it);
    # from seq 4 on, the job is in order.
    assert delivered_by(order, [events[3], events[2], events[5], events[4]]) == [4, 3, 5, 6]
    assert delivered_by(order, [events[2], events[3]]) == []  # copies


def test_a_gap_the_store_cannot_fill_still_delivers_the_event(tracker, caplog):
    job_id, events = stored_job(tracker, 2)

    def broken(*_):
        raise OSError("store unreachable")

    order = JobOrder(broken)
    order.note_read(job_id, 1)
    assert delivered_by(order, [events[3]]) == [4]
    assert "could not read job" in caplog.text


def test_a_gap_larger_than_the_fill_limit_is_left_to_the_clients(tracker):
    job_id, events = stored_job(tracker, 3)
    reads = []

    def read(*args):
        reads.append(args)
        return tracker.store.events_since(*args)

    order = JobOrder(read)
    order.note_read(job_id, events[-1]["seq"] - MAX_FILL - 2)
    assert delivered_by(order, [events[-1]]) == [events[-1]["seq"]]
    assert reads == []


def test_only_the_newest_jobs_are_remembered_and_forget_all_clears_them(tracker):
    order = JobOrder(tracker.store.events_since, capacity=2)
    for n in range(3):
        order.note_read(f"job-{n}", 1)
    assert len(order) == 2
    order.forget_all()
    assert len(order) == 0


@pytest.mark.parametrize(
    "message",
    [
        {"event": "notice", "data": [{"job_id": "j", "seq": 1}]},
        {"event": "job_events", "data": [{"events": []}]},
        {"event": "progress_update", "data": [{"job_id": "j", "seq": "1"}]},
        {"event": "progress_update", "data": [{"job_id": "j", "seq": True}]},
        {"event": "progress_update", "data": [{"seq": 1}]},
        {"event": "progress_update", "data": [{"job_id": "j", "seq": 1}, "extra"]},
        {"event": "progress_update", "data": {"job_id": "j", "seq": 1}},
    ],
)
def test_only_job_events_are_ordered(message):
    assert job_event(message) is None


def test_a_job_event_message_is_recognised():
    event = {"job_id": "j", "seq": 3, "type": "progress_update"}
    assert job_event({"event": "progress_update", "data": [event]}) is event
