import copy
import json
import math

import pytest

from progresscast import Conflict, EventType, InvalidPayload, JobState, JobStatus
from progresscast.state import StageStatus, iso, new_job, transition
from tests.protocol_spec import EVENT_EXTRA_KEYS, EVENT_KEYS, ISO_MS_Z, SNAPSHOT_KEYS

from .fakes import DOC_STAGES, T0


def fresh(**kw) -> JobState:
    args = {
        "job_id": "j1",
        "name": "report",
        "stages": DOC_STAGES,
        "owner": "alice",
        "metadata": {"source": "test"},
        "now": T0,
    }
    args.update(kw)
    return new_job(**args)


class Job:
    """Drives a job through ``transition`` and keeps every event, like a store would."""

    def __init__(self, state: JobState, now: float = T0) -> None:
        self.state = state
        self.now = now
        self.events: list[dict] = []

    def do(self, kind, after: float = 1.0, **fields) -> list[dict]:
        self.now += after
        events, self.state = transition(self.state, kind, fields, self.now)
        self.events.extend(events)
        return events

    def types(self, events=None) -> list[str]:
        return [e["type"] for e in (self.events if events is None else events)]


def running(**kw) -> Job:
    job = Job(fresh(**kw))
    job.do("job_started", after=0.0)
    return job


def stage_statuses(state: JobState) -> list[str]:
    return [s.value for s in state.stage_status]


# ---------------------------------------------------------------- legal paths


def test_new_job_is_queued_with_seq_zero():
    st = fresh()
    assert st.status is JobStatus.QUEUED
    assert st.seq == 0
    assert st.stage is None
    assert st.progress == 0.0
    assert stage_statuses(st) == ["pending"] * 4
    assert st.created_at == T0


def test_queued_running_completed_events_and_seq():
    job = Job(fresh())
    (queued,) = job.do("job_queued", after=0.0)
    assert queued == {
        "job_id": "j1",
        "seq": 1,
        "type": "job_queued",
        "ts": iso(T0),
        "name": "report",
        "stages": [{"name": n, "weight": w} for n, w in DOC_STAGES.items()],
        "owner": "alice",
        "metadata": {"source": "test"},
        "parent_id": None,  # extension: groups
        "children": None,
        "kind": "report",  # extension: ETA from history (the name when none is given)
        "weights": "declared",
    }
    assert job.state.status is JobStatus.QUEUED

    (started,) = job.do("job_started", after=2.0)
    assert started["seq"] == 2
    assert started["type"] == "job_started"
    assert started["name"] == "report"
    assert job.state.status is JobStatus.RUNNING
    assert job.state.started_at == T0 + 2.0
    assert job.state.stage == "parsing"
    assert stage_statuses(job.state) == ["running", "pending", "pending", "pending"]

    (update,) = job.do("progress_update", stage_progress=50, message="page 5 of 10")
    assert update["seq"] == 3
    assert update["stage"] == "parsing"
    assert update["stage_progress"] == 50.0
    assert update["progress"] == 7.5
    assert update["message"] == "page 5 of 10"
    assert update["elapsed_seconds"] == 1.0
    assert set(update) == {
        "job_id",
        "seq",
        "type",
        "ts",
        "stage",
        "stage_progress",
        "progress",
        "message",
        "eta_seconds",
        "elapsed_seconds",
        "eta_low",  # extension: the ETA's range (none without history)
        "eta_high",
        # extensions: the stage's count (none here) and a parent's children (not a parent)
        "n",
        "total",
        "unit",
        "rate",
        "children",
    }
    assert [update[k] for k in ("n", "total", "unit", "rate", "children")] == [None] * 5

    for name, nxt, progress in [
        ("parsing", "analyzing", 15.0),
        ("analyzing", "integrating", 75.0),
        ("integrating", "formatting", 95.0),
        ("formatting", None, 100.0),
    ]:
        (done,) = job.do("stage_completed")
        assert {k: done[k] for k in ("type", "stage", "next_stage", "progress")} == {
            "type": "stage_completed",
            "stage": name,
            "next_stage": nxt,
            "progress": progress,
        }
    assert job.state.stage is None
    assert job.state.status is JobStatus.RUNNING

    (completed,) = job.do("job_completed", result={"pages": 10})
    assert completed["type"] == "job_completed"
    assert completed["progress"] == 100.0
    assert completed["result"] == {"pages": 10}
    assert completed["elapsed_seconds"] == job.now - (T0 + 2.0)

    assert [e["seq"] for e in job.events] == list(range(1, 9))
    assert job.state.seq == 8
    st = job.state
    assert st.status is JobStatus.COMPLETED
    assert st.progress == 100.0
    assert st.eta_seconds == 0.0
    assert st.finished_at == job.now
    assert stage_statuses(st) == ["completed"] * 4
    assert st.stage_pct == [100.0] * 4


def test_every_event_has_exactly_the_wire_fields():
    seen = {}
    for ending, fields in [
        ("job_completed", {"result": 1}),
        ("job_failed", {"error": "x"}),
        ("job_cancelled", {"reason": "r"}),
    ]:
        job = Job(fresh())
        job.do("job_queued")
        job.do("job_started")
        job.do("progress_update", stage="analyzing", stage_progress=5)
        job.do(ending, **fields)
        for event in job.events:
            seen[event["type"]] = event
            assert set(event) == EVENT_KEYS | EVENT_EXTRA_KEYS[event["type"]], event["type"]
            assert event["job_id"] == "j1"
    assert set(seen) == set(EVENT_EXTRA_KEYS) == {e.value for e in EventType}
    assert set(seen["job_failed"]["error"]) == {"message", "type"}


def test_job_started_straight_from_a_fresh_job():
    job = Job(fresh())
    (started,) = job.do("job_started", after=0.0)
    assert started["seq"] == 1
    assert started["type"] == "job_started"
    assert job.state.status is JobStatus.RUNNING


def test_event_type_may_be_an_enum():
    events, st = transition(fresh(), EventType.JOB_STARTED, {}, T0)
    assert events[0]["type"] == "job_started"
    assert st.status is JobStatus.RUNNING


def test_stage_completed_with_next_stage_skips_the_ones_between():
    job = running()
    events = job.do("stage_completed", next_stage="integrating")
    assert job.types(events) == ["stage_completed"]
    assert events[0]["stage"] == "parsing"
    assert events[0]["next_stage"] == "integrating"
    assert events[0]["progress"] == 75.0
    assert stage_statuses(job.state) == ["completed", "skipped", "running", "pending"]


def test_progress_for_a_later_stage_completes_the_current_one_first():
    job = running()
    job.do("progress_update", stage_progress=40)
    events = job.do("progress_update", stage="integrating", stage_progress=50)
    assert job.types(events) == ["stage_completed", "progress_update"]
    done, update = events
    assert (done["seq"], update["seq"]) == (3, 4)
    assert done["stage"] == "parsing"
    assert done["next_stage"] == "integrating"
    assert done["progress"] == 75.0
    assert update["stage"] == "integrating"
    assert update["stage_progress"] == 50.0
    assert update["progress"] == 85.0
    assert stage_statuses(job.state) == ["completed", "skipped", "running", "pending"]
    assert job.state.stage_pct == [100.0, 0.0, 50.0, 0.0]


def test_progress_for_the_current_stage_by_name_emits_no_transition():
    job = running()
    events = job.do("progress_update", stage="parsing", stage_progress=20)
    assert job.types(events) == ["progress_update"]


def test_job_completed_auto_completes_the_running_stage():
    job = running()
    job.do("stage_completed")  # now analyzing
    job.do("progress_update", stage_progress=10)
    events = job.do("job_completed")
    assert job.types(events) == ["stage_completed", "job_completed"]
    assert events[0]["stage"] == "analyzing"
    assert events[0]["next_stage"] is None
    assert events[0]["progress"] == 100.0
    assert [e["seq"] for e in events] == [4, 5]
    assert stage_statuses(job.state) == ["completed", "completed", "skipped", "skipped"]
    assert job.state.result is None


def test_message_belongs_to_its_stage():
    job = running()
    job.do("progress_update", message="reading")
    assert job.state.message == "reading"
    job.do("progress_update", stage_progress=60)  # no message field: kept
    assert job.state.message == "reading"
    job.do("progress_update", message=None)  # explicit null: cleared
    assert job.state.message is None
    job.do("progress_update", message="again")
    job.do("stage_completed")
    assert job.state.message is None


# ------------------------------------------------------------------ failures


def fail_in_analyzing(error, **fields):
    job = running()
    job.do("stage_completed")
    events = job.do("job_failed", error=error, **fields)
    return job, events


def test_job_failed_from_an_exception():
    job, (event,) = fail_in_analyzing(ValueError("bad page 7"))
    assert job.state.error == {"message": "bad page 7", "stage": "analyzing", "type": "ValueError"}
    assert event["type"] == "job_failed"
    assert event["stage"] == "analyzing"
    assert event["error"] == {"message": "bad page 7", "type": "ValueError"}
    assert event["progress"] == 15.0
    st = job.state
    assert st.status is JobStatus.FAILED
    assert st.finished_at == job.now
    assert st.eta_seconds is None
    assert stage_statuses(st) == ["completed", "failed", "pending", "pending"]


def test_job_failed_from_an_exception_without_message_uses_its_type():
    job, _ = fail_in_analyzing(KeyError())
    assert job.state.error == {"message": "KeyError", "stage": "analyzing", "type": "KeyError"}


def test_job_failed_from_a_string():
    job, (event,) = fail_in_analyzing("disk full")
    assert job.state.error == {"message": "disk full", "stage": "analyzing", "type": "Error"}
    assert event["error"] == {"message": "disk full", "type": "Error"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"message": "timed out", "type": "Timeout"}, ("timed out", "Timeout")),
        ({"message": "timed out"}, ("timed out", "Error")),
        (None, ("job failed", "Error")),
    ],
)
def test_job_failed_from_a_dict_or_nothing(error, expected):
    job, _ = fail_in_analyzing(error)
    message, kind = expected
    assert job.state.error == {"message": message, "stage": "analyzing", "type": kind}


@pytest.mark.parametrize(
    "error", [{"type": "X"}, {"message": 5}, {"message": "m", "type": 3}, 42, ["boom"]]
)
def test_job_failed_with_a_malformed_error(error):
    job = running()
    with pytest.raises(InvalidPayload) as info:
        job.do("job_failed", error=error)
    assert "error" in info.value.details


def test_job_failed_carries_the_pending_progress():
    job, (event,) = fail_in_analyzing("boom", stage_progress=50, message="at row 500")
    assert event["progress"] == 45.0  # 15 + 60 * 50 %
    st = job.state
    assert st.progress == 45.0
    assert st.stage_progress == 50.0
    assert st.stage_pct[1] == 50.0
    assert st.message == "at row 500"


def test_job_cancelled_while_running():
    job = running()
    job.do("progress_update", stage_progress=20)
    (event,) = job.do("job_cancelled", reason="user asked", stage_progress=40)
    assert event["type"] == "job_cancelled"
    assert event["stage"] == "parsing"
    assert event["reason"] == "user asked"
    assert event["progress"] == 6.0
    assert job.state.status is JobStatus.CANCELLED
    assert stage_statuses(job.state)[0] == "cancelled"


@pytest.mark.parametrize("kind", ["job_cancelled", "job_failed"])
def test_ending_a_queued_job_reports_no_progress(kind):
    job = Job(fresh())
    job.do("job_queued", after=0.0)
    (event,) = job.do(kind)
    assert event["progress"] == 0.0
    assert event["stage"] is None
    st = job.state
    assert st.progress == 0.0
    assert st.status is JobStatus(kind.removeprefix("job_"))
    assert st.elapsed_seconds is None
    assert stage_statuses(st) == ["pending"] * 4


# --------------------------------------------------------- illegal transitions


def end(kind):
    job = running()
    job.do("progress_update", stage_progress=10)
    job.do(kind, **({"error": "x"} if kind == "job_failed" else {}))
    return job


@pytest.mark.parametrize("terminal", ["job_completed", "job_failed", "job_cancelled"])
@pytest.mark.parametrize("kind", [e.value for e in EventType])
def test_nothing_follows_a_terminal_event(terminal, kind):
    job = end(terminal)
    before = copy.deepcopy(job.state)
    with pytest.raises(Conflict) as info:
        job.do(kind, stage_progress=50, error="late")
    assert info.value.code == "conflict"
    assert info.value.job_id == "j1"
    assert job.state == before


@pytest.mark.parametrize("kind", ["progress_update", "stage_completed", "job_completed"])
def test_progress_before_start_is_a_conflict(kind):
    with pytest.raises(Conflict):
        transition(fresh(), kind, {}, T0)
    queued = Job(fresh())
    queued.do("job_queued")
    with pytest.raises(Conflict):
        queued.do(kind)


@pytest.mark.parametrize("kind", ["job_failed", "job_cancelled"])
def test_a_fresh_job_cannot_end(kind):
    with pytest.raises(Conflict):
        transition(fresh(), kind, {}, T0)


def test_job_queued_twice():
    job = Job(fresh())
    job.do("job_queued")
    with pytest.raises(Conflict):
        job.do("job_queued")
    with pytest.raises(Conflict):
        running().do("job_queued")


def test_job_started_twice():
    job = running()
    with pytest.raises(Conflict):
        job.do("job_started")


def test_stage_going_backwards():
    job = running()
    job.do("progress_update", stage="integrating")
    with pytest.raises(Conflict):
        job.do("progress_update", stage="analyzing")
    with pytest.raises(Conflict):
        job.do("stage_completed", stage="parsing")
    with pytest.raises(Conflict):
        job.do("stage_completed", next_stage="analyzing")
    with pytest.raises(Conflict):
        job.do("stage_completed", next_stage="integrating")  # not *after* the current one
    assert job.state.stage == "integrating"


def test_progress_after_the_last_stage_completed():
    job = running()
    for _ in DOC_STAGES:
        job.do("stage_completed")
    with pytest.raises(Conflict):
        job.do("progress_update", stage_progress=5)
    with pytest.raises(Conflict):
        job.do("progress_update", stage="formatting")
    with pytest.raises(Conflict):
        job.do("stage_completed")
    # the job can still end
    assert job.types(job.do("job_completed")) == ["job_completed"]


# ----------------------------------------------------------- invalid payloads


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"stage_progress": -1}, "stage_progress"),
        ({"stage_progress": 100.5}, "stage_progress"),
        ({"stage_progress": math.nan}, "stage_progress"),
        ({"stage_progress": math.inf}, "stage_progress"),
        ({"stage_progress": "50"}, "stage_progress"),
        ({"stage_progress": True}, "stage_progress"),
        ({"message": 5}, "message"),
        ({"message": ["a"]}, "message"),
        ({"stage": 1}, "stage"),
        ({"stage": "printing"}, "stage"),
    ],
)
def test_invalid_progress_fields(fields, field):
    job = running()
    before = copy.deepcopy(job.state)
    with pytest.raises(InvalidPayload) as info:
        job.do("progress_update", **fields)
    assert field in info.value.details
    assert job.state == before


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("stage_completed", {"next_stage": "printing"}, "stage"),
        ("stage_completed", {"next_stage": 3}, "next_stage"),
        ("job_cancelled", {"reason": 5}, "reason"),
        ("job_failed", {"stage_progress": 101, "error": "x"}, "stage_progress"),
        ("job_completed", {"stage_progress": -0.1}, "stage_progress"),
    ],
)
def test_invalid_transition_fields(kind, fields, field):
    with pytest.raises(InvalidPayload) as info:
        running().do(kind, **fields)
    assert field in info.value.details


@pytest.mark.parametrize("kind", ["job_exploded", "", "JOB_STARTED", None])
def test_unknown_event_type(kind):
    with pytest.raises(InvalidPayload) as info:
        transition(fresh(), kind, {}, T0)
    assert info.value.details == {"type": ["unknown event type"]}


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"metadata": [1]}, "metadata"),
        ({"stages": []}, "stages"),
    ],
)
def test_new_job_validates(kw, field):
    with pytest.raises(InvalidPayload) as info:
        fresh(**kw)
    assert field in info.value.details


# ----------------------------------------------------------------- purity


def test_transition_never_mutates_its_input():
    job = running()
    job.do("progress_update", stage_progress=30, message="m")
    requests = [
        ("progress_update", {"stage": "integrating", "stage_progress": 10}),
        ("stage_completed", {"next_stage": "formatting"}),
        ("job_completed", {"result": [1, 2]}),
        ("job_failed", {"error": ValueError("x"), "stage_progress": 90}),
        ("job_cancelled", {"reason": "r"}),
    ]
    for kind, fields in requests:
        before = copy.deepcopy(job.state)
        record = json.dumps(job.state.to_record())
        events, new = transition(job.state, kind, fields, job.now + 5)
        assert events
        assert new is not job.state
        assert job.state == before
        assert json.dumps(job.state.to_record()) == record


# ----------------------------------------------------------------- snapshot


def test_snapshot_has_exactly_the_design_keys():
    job = running()
    snap = job.state.snapshot()
    assert set(snap) == SNAPSHOT_KEYS
    assert snap["stages"][0] == {
        "name": "parsing",
        "weight": 0.15,
        "status": "running",
        "progress": 0.0,
    }
    assert all(set(s) == {"name", "weight", "status", "progress"} for s in snap["stages"])
    assert snap["status"] == "running"
    assert snap["metadata"] == {"source": "test"}
    json.dumps(snap)  # JSON-able as it is


def test_snapshot_timestamps_are_iso_utc_ms():
    job = Job(fresh(now=T0 + 0.25))
    job.now = T0 + 0.25
    job.do("job_started", after=1.5)
    job.do("job_completed", after=2.125)
    snap = job.state.snapshot()
    for key in ("created_at", "started_at", "finished_at"):
        assert ISO_MS_Z.match(snap[key]), snap[key]
    assert snap["created_at"] == "2023-11-14T22:13:20.250Z"
    assert snap["started_at"] == "2023-11-14T22:13:21.750Z"
    assert snap["finished_at"] == "2023-11-14T22:13:23.875Z"
    assert all(ISO_MS_Z.match(e["ts"]) for e in job.events)
    assert fresh().snapshot()["started_at"] is None


def test_snapshot_counts_elapsed_to_now_while_running():
    job = running()
    job.do("progress_update", after=3.0, stage_progress=10)
    assert job.state.snapshot()["elapsed_seconds"] == 3.0  # as of the last event
    assert job.state.snapshot(now=job.now + 60.5)["elapsed_seconds"] == 63.5
    job.do("job_completed", after=1.0)
    # a finished job's elapsed time no longer grows
    assert job.state.snapshot(now=job.now + 1000)["elapsed_seconds"] == 4.0
    queued = Job(fresh())
    queued.do("job_queued")
    assert queued.state.snapshot(now=T0 + 100)["elapsed_seconds"] is None


def test_snapshot_of_a_failed_job():
    job, _ = fail_in_analyzing(RuntimeError("no"), stage_progress=25)
    snap = job.state.snapshot()
    assert snap["status"] == "failed"
    assert snap["stage"] == "analyzing"
    assert snap["error"] == {"message": "no", "stage": "analyzing", "type": "RuntimeError"}
    assert snap["stage_progress"] == 25.0
    assert [s["status"] for s in snap["stages"]] == ["completed", "failed", "pending", "pending"]


# -------------------------------------------------------------- persistence


def test_record_round_trip():
    job = running()
    job.do("progress_update", stage_progress=25, message="m")
    job.do("progress_update", stage_progress=50)
    job.do("progress_update", stage="integrating", stage_progress=10)
    job.do("job_failed", error=OSError("disk"), stage_progress=20)
    st = job.state
    assert st.eta is not None
    record = json.loads(json.dumps(st.to_record()))
    back = JobState.from_record(record)
    assert back == st
    assert back.snapshot(now=job.now + 9) == st.snapshot(now=job.now + 9)
    assert isinstance(back.status, JobStatus)
    assert all(isinstance(s, StageStatus) for s in back.stage_status)


def test_a_restored_state_keeps_transitioning_identically():
    job = running()
    for pct in (10, 20, 30):
        job.do("progress_update", stage_progress=pct)
    restored = JobState.from_record(json.loads(json.dumps(job.state.to_record())))
    a = transition(job.state, "progress_update", {"stage_progress": 40}, job.now + 1)
    b = transition(restored, "progress_update", {"stage_progress": 40}, job.now + 1)
    assert a == b
    assert a[0][0]["eta_seconds"] is not None


def test_iso_is_datetimes_isoformat_to_the_millisecond():
    """iso() splits the time itself (state.py): the same text as datetime,
    carry and half-to-even rounding of the microseconds included."""
    import random
    from datetime import UTC, datetime

    def reference(ts):
        return (
            datetime.fromtimestamp(ts, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    rng = random.Random(16)
    edges = (0.0, 0.0005, 0.9995, 0.0000005, 0.0000015, 0.9999994, 0.9999995, 0.99999999)
    stamps = [0.0, 86399.9999996, 253402300799.999]
    for _ in range(3000):
        second = rng.choice([rng.randrange(0, 4_000_000_000), 1_700_000_000 + rng.randrange(100)])
        stamps += [second + rng.random(), second + rng.choice(edges)]
    for ts in stamps:
        assert iso(ts) == reference(ts), ts
    assert iso(None) is None


def test_a_copy_has_every_field_and_its_own_stage_lists():
    job = new_job("c", "copy", DOC_STAGES, "alice", {"k": 1}, T0, kind="k")
    _, job = transition(job, "job_started", {}, T0)
    job.cancel_requested, job.runner = "why", "server-1"
    twin = job.copy()
    assert twin == job and twin is not job
    for name in JobState.__slots__:
        assert getattr(twin, name) is getattr(job, name) or name in ("stage_status", "stage_pct")
    assert twin.stage_status is not job.stage_status and twin.stage_pct is not job.stage_pct


@pytest.mark.parametrize("depth", [16, 17, 30, 990])
def test_metadata_nested_past_the_limit_is_invalid_payload(depth):
    from progresscast.state import MAX_JSON_DEPTH, _check_json

    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    if depth <= MAX_JSON_DEPTH:
        assert _check_json(value, "metadata") == value
    else:  # before, anything past 16 levels passed the check (found in review)
        with pytest.raises(InvalidPayload, match="nested deeper"):
            _check_json(value, "metadata")
