import threading

import pytest

from progresscast import Conflict

from .fakes import DOC_STAGES


def start(tracker, clock, stages=DOC_STAGES, **kw):
    return tracker.job("report", stages, owner="alice", clock=clock, **kw)


def history(tracker, job):
    return tracker.store.events_since(job.job_id)


def kinds(events, skip_updates=False):
    return [e["type"] for e in events if not (skip_updates and e["type"] == "progress_update")]


def assert_gapless(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


# ------------------------------------------------------------------ throttling


def test_a_million_advances_are_throttled_and_end_exact(tracker, sockets, mono):
    calls, duration = 1_000_000, 50.0
    dt = duration / calls
    per_stage = calls // len(DOC_STAGES)
    tick = mono.advance
    with start(tracker, mono) as job:
        for name in DOC_STAGES:
            with job.stage(name, total=per_stage):
                step = job.advance
                for _ in range(per_stage):
                    tick(dt)
                    step()
    assert mono() == pytest.approx(duration)

    events = history(tracker, job)
    assert_gapless(events)
    assert len(events) <= duration / job.min_interval + len(DOC_STAGES) + 2
    updates = [e for e in events if e["type"] == "progress_update"]
    assert len(updates) >= 0.5 * duration / job.min_interval  # throttled, not silenced
    assert kinds(events, skip_updates=True) == (
        ["job_started"] + ["stage_completed"] * len(DOC_STAGES) + ["job_completed"]
    )
    done = [e for e in events if e["type"] == "stage_completed"]
    assert [(e["stage"], e["next_stage"]) for e in done] == [
        ("parsing", "analyzing"),
        ("analyzing", "integrating"),
        ("integrating", "formatting"),
        ("formatting", None),
    ]
    assert [e["progress"] for e in done] == [15.0, 75.0, 95.0, 100.0]
    # a watcher's bar never goes back
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress)
    # the last report of each stage lags its true count by less than one
    # throttle window of work (~2,500 of 250,000 calls); the transition that
    # follows carries the exact count to the state machine
    for name in DOC_STAGES:
        last = [e for e in updates if e["stage"] == name][-1]
        assert 98.5 <= last["stage_progress"] <= 100.0

    state = tracker.get(job.job_id)
    assert state.status == "completed"
    assert state.progress == 100.0
    assert state.seq == len(events) == events[-1]["seq"]
    assert [s.value for s in state.stage_status] == ["completed"] * len(DOC_STAGES)
    assert state.stage_pct == [100.0] * len(DOC_STAGES)
    assert sockets.events == events  # watchers saw exactly the stored history


def test_no_report_until_min_interval_has_passed(tracker, mono):
    job = start(tracker, mono, stages=["a", "b"])
    job.stage("a", total=1_000)
    for _ in range(50):
        mono.advance(0.001)
        job.advance()
    assert kinds(history(tracker, job)) == ["job_started"]  # 0.05 s < min_interval
    for _ in range(60):
        mono.advance(0.001)
        job.advance()
    (update,) = history(tracker, job)[1:]
    assert update["type"] == "progress_update"
    # sent at the first clock check after 0.1 s (100 calls); checks come every
    # 25 calls at this rate (4 per min_interval)
    assert 10.0 <= update["stage_progress"] <= 12.5


def test_throttling_never_drops_transitions_or_terminal_events(tracker, mono):
    job = start(tracker, mono, stages=["a", "b", "c", "d"])
    for name in ("b", "c", "d"):
        for _ in range(1_000):  # no time passes: every report is throttled
            job.advance()
        job.stage(name, total=10)
    job.update(7)
    job.complete(result="ok")
    expected = ["job_started"] + ["stage_completed"] * 4 + ["job_completed"]
    assert kinds(history(tracker, job)) == expected
    assert tracker.get(job.job_id).stage_pct == [100.0] * 4


def test_transitions_carry_the_unsent_progress(tracker, mono):
    with pytest.raises(RuntimeError), start(tracker, mono) as job:
        job.stage("analyzing", total=8)
        for _ in range(3):
            job.advance()  # throttled: no time passes
        job.message("row 3")
        raise RuntimeError("stop")
    events = history(tracker, job)
    assert "progress_update" not in kinds(events)
    assert events[-1]["progress"] == 15.0 + 60.0 * 3 / 8
    state = tracker.get(job.job_id)
    assert state.stage_progress == 37.5
    assert state.message == "row 3"


# ------------------------------------------------------------------- stages


def test_stage_as_context_manager(tracker, mono):
    with start(tracker, mono, stages=["read", "parse", "write"]) as job:
        assert job.current_stage == "read"
        with job.stage("read", total=4) as same:
            assert same is job
            for _ in range(4):
                job.advance()
            assert job.stage_progress == 100.0
        assert job.current_stage == "parse"
        with job.stage("parse"):
            assert job.stage_progress is None  # no total yet
        with job.stage("write"):
            pass
        assert job.current_stage is None
        assert job.progress == 100.0
    events = history(tracker, job)
    assert [(e["type"], e.get("stage"), e.get("next_stage")) for e in events] == [
        ("job_started", None, None),
        ("stage_completed", "read", "parse"),
        ("stage_completed", "parse", "write"),
        ("stage_completed", "write", None),
        ("job_completed", None, None),
    ]
    state = tracker.get(job.job_id)
    assert [s.value for s in state.stage_status] == ["completed"] * 3
    assert state.status == "completed"


def test_stage_as_a_plain_call(tracker, mono):
    job = start(tracker, mono, stages=["read", "parse", "write"])
    job.stage("read", total=8)  # the running stage: sets the total only
    job.advance(2)
    assert job.stage_progress == 25.0
    assert kinds(history(tracker, job)) == ["job_started"]
    job.stage("parse", total=10)
    assert job.current_stage == "parse"
    assert job.stage_progress == 0.0
    job.stage("write")
    job.complete()
    events = history(tracker, job)
    assert [(e["type"], e.get("stage"), e.get("next_stage")) for e in events[1:4]] == [
        ("stage_completed", "read", "parse"),
        ("stage_completed", "parse", "write"),
        ("stage_completed", "write", None),
    ]
    assert_gapless(events)


def test_skipping_stages(tracker, mono):
    job = start(tracker, mono)
    job.stage("integrating")
    assert job.current_stage == "integrating"
    assert job.progress == 75.0
    (done,) = history(tracker, job)[1:]
    assert (done["stage"], done["next_stage"], done["progress"]) == ("parsing", "integrating", 75.0)
    snap = tracker.snapshot(job.job_id)
    assert [s["status"] for s in snap["stages"]] == ["completed", "skipped", "running", "pending"]
    job.complete()
    snap = tracker.snapshot(job.job_id)
    assert [s["status"] for s in snap["stages"]] == ["completed", "skipped", "completed", "skipped"]


def test_stages_only_move_forward(tracker, mono):
    job = start(tracker, mono, stages=["a", "b"])
    job.stage("b")
    with pytest.raises(Conflict):
        job.stage("a")
    assert job.current_stage == "b"
    job.complete_stage()
    assert job.current_stage is None
    with pytest.raises(Conflict):
        job.stage("b")
    job.complete()
    assert tracker.get(job.job_id).status == "completed"


# --------------------------------------------------------- update and message


def test_update_and_message(tracker, mono):
    job = start(tracker, mono, stages=["a", "b", "c"])
    mono.advance(0.25)
    job.update(3, 4, message="3 of 4")
    assert job.stage_progress == 75.0
    assert job.progress == 25.0
    mono.advance(0.25)
    job.message("almost")
    mono.advance(0.25)
    job.update(4)  # the total is kept
    updates = history(tracker, job)[1:]
    assert [(e["stage_progress"], e["progress"], e["message"]) for e in updates] == [
        (75.0, 25.0, "3 of 4"),
        (75.0, 25.0, "almost"),
        (100.0, 33.3333, "almost"),  # percent, rounded to 4 places,
    ]
    assert all(e["type"] == "progress_update" and e["stage"] == "a" for e in updates)
    state = tracker.get(job.job_id)
    assert (state.stage_progress, state.message) == (100.0, "almost")


def test_progress_without_total_reports_only_the_message(tracker, mono):
    job = start(tracker, mono)
    mono.advance(1.0)
    job.advance(message="warming up")
    (update,) = history(tracker, job)[1:]
    assert update["message"] == "warming up"
    assert update["stage_progress"] == 0.0
    assert job.stage_progress is None


def test_nothing_new_is_not_reported(tracker, mono):
    job = start(tracker, mono)
    mono.advance(1.0)
    job.update(1, 2)
    mono.advance(1.0)
    job.update(1, 2)  # same numbers
    mono.advance(1.0)
    job.message(None)  # same (empty) message
    assert kinds(history(tracker, job)) == ["job_started", "progress_update"]


# ------------------------------------------------------------------ the end


def test_context_manager_reports_failure_with_the_stage_and_reraises(tracker, sockets, mono):
    error = ValueError("bad page 7")
    with (
        pytest.raises(ValueError) as info,
        start(tracker, mono) as job,
        job.stage("analyzing", total=10),
    ):
        for _ in range(5):
            job.advance()
        raise error
    assert info.value is error
    assert job.finished
    failed = history(tracker, job)[-1]
    assert failed["type"] == "job_failed"
    assert failed["stage"] == "analyzing"
    assert failed["error"] == {"message": "bad page 7", "type": "ValueError"}
    assert failed["progress"] == 45.0
    state = tracker.get(job.job_id)
    assert state.status == "failed"
    assert state.error == {"message": "bad page 7", "stage": "analyzing", "type": "ValueError"}
    assert [s.value for s in state.stage_status] == ["completed", "failed", "pending", "pending"]
    assert sockets.events[-1] == failed


def test_fail_explicitly(tracker, mono):
    job = start(tracker, mono)
    job.fail({"message": "quota", "type": "QuotaExceeded"})
    assert tracker.get(job.job_id).error == {
        "message": "quota",
        "stage": "parsing",
        "type": "QuotaExceeded",
    }
    job.fail("again")  # already finished: ignored
    assert len(history(tracker, job)) == 2


def test_complete_with_a_result(tracker, mono):
    with start(tracker, mono) as job:
        job.stage("formatting", total=2)
        job.advance(2)
        job.complete({"pages": 3, "warnings": []})
        assert job.finished
        job.complete("twice")  # ignored
        job.complete_stage()  # ignored
        mono.advance(1.0)
        job.advance()  # after the end: never reported
    events = history(tracker, job)
    assert kinds(events) == ["job_started", "stage_completed", "stage_completed", "job_completed"]
    assert events[-1]["result"] == {"pages": 3, "warnings": []}
    assert events[-1]["progress"] == 100.0
    assert tracker.get(job.job_id).result == {"pages": 3, "warnings": []}


# ---------------------------------------------------------------- threads


def test_threads_advancing_one_emitter(tracker, sockets, mono):
    job = start(tracker, mono, stages=["count", "finish"])
    job.stage("count", total=400_000)
    errors = []

    def work():
        try:
            for _ in range(50_000):
                mono.advance(1e-5)  # each call takes 10 µs: 2 s in all
                job.advance()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert job.stage_progress == 50.0  # 200,000 of 400,000: no increment lost or doubled
    sent_while_counting = len(history(tracker, job)) - 1
    assert sent_while_counting >= 1

    mono.advance(1.0)
    job.message("counted")  # time passed: reports the exact count
    assert history(tracker, job)[-1]["stage_progress"] == 50.0
    job.update(400_000)
    assert job.stage_progress == 100.0
    job.complete()

    events = history(tracker, job)
    assert_gapless(events)
    counts = [e["stage_progress"] for e in events if e["type"] == "progress_update"]
    assert counts == sorted(counts)
    assert events[-1]["type"] == "job_completed"
    assert sockets.events == events


# ---------------------------------------------------------------- publishing


def test_events_go_to_the_job_and_owner_rooms(tracker, sockets, mono):
    with start(tracker, mono, stages=["a", "b"]) as job:
        mono.advance(1.0)
        job.update(1, 2)
    assert [c.event for c in sockets.calls] == [
        "job_started",
        "progress_update",
        "stage_completed",
        "job_completed",
    ]
    for call in sockets.calls:
        assert call.to == [f"job:{job.job_id}", "user:alice", "jobs:all"]
        assert call.namespace == "/progress"
        assert call.event == call.data["type"]
        assert call.data["job_id"] == job.job_id
    assert sockets.events == history(tracker, job)


def test_a_result_that_is_not_json_fails_the_job_instead_of_hanging_it(tracker, mono):
    from progresscast import InvalidPayload

    with pytest.raises(InvalidPayload), start(tracker, mono) as job:
        job.complete({"score": float("nan")})

    state = tracker.get(job.job_id)
    assert state.status == "failed"
    assert state.error["type"] == "InvalidPayload" and "plain JSON" in state.error["message"]


def test_keyboard_interrupt_ends_the_job_as_failed(tracker, mono):
    with pytest.raises(KeyboardInterrupt), start(tracker, mono) as job:
        raise KeyboardInterrupt

    assert tracker.get(job.job_id).status == "failed"
    assert tracker.get(job.job_id).error["type"] == "KeyboardInterrupt"
