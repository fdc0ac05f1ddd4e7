"""The ETA (docs/protocol.md, "ETA, history and learned weights"; issue 14):
its parts (EMA, Pace, the _steady limiter, Forecast's stored form) and each
estimator path through the real ProgressTracker on a fake clock: cold, warm,
a skipped stage, a retried stage, an indeterminate stage, learned weights."""

from __future__ import annotations

import json
import random
from itertools import pairwise

import pytest

from progresscast.eta import EMA, GLIDE, Estimate, Forecast, Pace, _steady
from progresscast.history import History

from .pipelines import DECLARED, REAL, Run, drive

# ------------------------------------------------------------------------- EMA


def test_ema_is_zero_before_any_sample():
    assert EMA().value == 0.0


def test_ema_first_sample_is_not_dragged_to_zero():
    ema = EMA(0.3)
    assert ema.update(10.0) == pytest.approx(10.0)
    # the raw average is 0.3 * 10; the bias correction divides that out
    assert ema.last == pytest.approx(3.0)


@pytest.mark.parametrize("smoothing", [0.05, 0.3, 0.9])
def test_ema_of_a_constant_is_that_constant(smoothing):
    ema = EMA(smoothing)
    for _ in range(50):
        assert ema.update(4.0) == pytest.approx(4.0)


def test_ema_bias_corrected_formula():
    ema = EMA(0.3)
    ema.update(10.0)
    ema.update(20.0)
    # (0.3*20 + 0.7*0.3*10) / (1 - 0.7**2)
    assert ema.value == pytest.approx((6.0 + 2.1) / 0.51)
    assert 10.0 < ema.value < 20.0


def test_ema_smoothing_one_keeps_only_the_latest():
    ema = EMA(1.0)
    for x in (5.0, 1.0, 7.0):
        assert ema.update(x) == x


def test_ema_weights_recent_samples_more():
    ema = EMA(0.3)
    for x in [1.0] * 20 + [2.0] * 3:
        ema.update(x)
    plain_mean = (20 * 1.0 + 3 * 2.0) / 23
    assert plain_mean < ema.value < 2.0


@pytest.mark.parametrize("smoothing", [0.0, -0.1, 1.5])
def test_ema_smoothing_out_of_range_is_refused(smoothing):
    with pytest.raises(ValueError):
        EMA(smoothing)


# ------------------------------------------------------------------------ Pace


def test_pace_is_none_without_work():
    pace = Pace()
    assert pace.value is None
    pace.add(2.0, 0.0, 2.0)  # time passed, no work done
    assert pace.value is None
    assert pace.trend == 1.0


def test_pace_of_even_work_is_its_seconds_per_unit():
    pace = Pace()
    for i in range(1, 30):
        pace.add(0.5, 0.25, 0.5 * i)  # 2 s per unit throughout
    assert pace.value == pytest.approx(2.0)
    assert pace.trend == pytest.approx(1.0)


def test_pace_follows_work_that_slows_down_evenly():
    pace = Pace()
    span = 0.0
    for i in range(100):
        dt = 1.002**i  # each unit takes a little longer than the one before
        span += dt
        pace.add(dt, 1.0, span)
    average = span / 100
    assert average < pace.value < 1.002**99  # nearer the recent pace than the average
    assert pace.trend > 1.0  # and slowing: the recent pace is slower than the longer-run one


def test_pace_of_uneven_work_shows_no_trend():
    pace = Pace()
    span = 0.0
    for i in range(40):
        dt = 5.0 if i % 5 == 4 else 0.25  # bursts and pauses
        span += dt
        pace.add(dt, 1.0 if dt < 1 else 0.0, span)
    assert pace.value == pytest.approx(span / 32, rel=0.2)  # averaged over whole cycles
    assert pace.trend == 1.0


def test_pace_stored_as_a_list_reads_back_equal():
    pace = Pace()
    for dt, dx in [(1.0, 0.1), (0.5, 0.0), (2.0, 0.3)]:
        pace.add(dt, dx, 5.0)
    assert Pace(*json.loads(json.dumps(pace.to_list()))) == pace


# ----------------------------------------------------------- the _steady limiter


def steady_floor(before: float, dt: float, progress: float, was: float) -> float:
    """The lowest estimate _steady lets through after ``before``: the
    countdown (time passed and the reported work's share taken off), less
    GLIDE of the rest."""
    used = before * max(0.0, progress - was) / max(1e-9, 100.0 - was)
    countdown = max(0.0, before - dt - used)
    return (1 - GLIDE) * countdown


def test_steady_lets_a_rise_through_at_once():
    raw = Estimate(80.0, 70.0, 90.0)
    assert _steady(raw, 50.0, 1.0, 10.0, 9.0) == raw


def test_steady_lets_a_countdown_through():
    # 60 s left at 40 %, 2 s and 10 points later: 60 - 2 - 60 * 10 / 60 = 48
    raw = Estimate(48.0)
    assert _steady(raw, 60.0, 2.0, 50.0, 40.0) == raw


def test_steady_closes_only_glide_of_a_larger_fall():
    before, dt, progress, was = 60.0, 2.0, 50.0, 40.0
    countdown = 48.0
    out = _steady(Estimate(8.0, 4.0, 12.0), before, dt, progress, was)
    assert out.eta == pytest.approx(countdown - GLIDE * (countdown - 8.0))
    scale = out.eta / 8.0  # the range moves with the estimate
    assert out.low == pytest.approx(4.0 * scale)
    assert out.high == pytest.approx(12.0 * scale)
    assert out.eta == pytest.approx(steady_floor(before, dt, progress, was) + GLIDE * 8.0)


@pytest.mark.parametrize("raw", [0.0, 1.0, 30.0, 47.9])
def test_steady_never_lets_an_estimate_fall_below_its_floor(raw):
    out = _steady(Estimate(raw), 60.0, 2.0, 50.0, 40.0)
    assert out.eta >= steady_floor(60.0, 2.0, 50.0, 40.0) - 1e-9


def test_steady_lets_zero_through_once_the_countdown_is_over():
    assert _steady(Estimate(0.0), 5.0, 10.0, 50.0, 40.0).eta == 0.0


# -------------------------------------------------------------------- Forecast


def observe_steps(forecast: Forecast, steps, t: float, weights):
    """Feed (dt, stage, fraction, progress) steps; return the estimates."""
    out = []
    for dt, stage, fraction, progress in steps:
        t += dt
        out.append(forecast.observe(t, stage, fraction, weights, progress))
    return out


def test_forecast_before_start_says_nothing():
    assert Forecast().observe(10.0, 0, 0.5, [0.5, 0.5], 25.0) == Estimate()


def test_forecast_round_trips_through_json_and_goes_on_identically():
    weights = [0.25, 0.75]
    history = History([10.0, 30.0], (0.8, 1.3), 5)
    forecast = Forecast()
    forecast.start(0.0, 2, history)
    observe_steps(
        forecast, [(1.0, 0, 0.1, 2.5), (2.0, 0, 0.3, 7.5), (0.5, 0, 0.0, 0.0)], 0.0, weights
    )
    forecast.enter(5.0, 0, 1)
    observe_steps(forecast, [(1.0, 1, 0.2, 40.0)], 5.0, weights)
    data = json.loads(json.dumps(forecast.to_dict()))  # what a store keeps
    copy = Forecast.from_dict(data)
    assert copy.to_dict() == forecast.to_dict()
    steps = [(1.0, 1, 0.3, 47.5), (3.0, 1, 0.5, 62.5), (0.0, 1, 0.5, 62.5), (2.0, 1, 0.9, 92.5)]
    assert observe_steps(copy, steps, 6.0, weights) == observe_steps(forecast, steps, 6.0, weights)
    assert copy.to_dict() == forecast.to_dict()


def test_forecast_stored_form_is_plain_json():
    forecast = Forecast()
    forecast.start(0.0, 2, History([10.0, 30.0], (0.8, 1.3), 5))
    forecast.observe(1.0, 0, 0.1, [0.25, 0.75], 2.5)
    data = forecast.to_dict()
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        # the state of the estimator before issue 14 (tqdm's EMA of progress)
        {"last_t": 1_700_000_000.0, "last_p": 42.0, "dp": [3.1, 4], "dt": [0.9, 4]},
    ],
)
def test_forecast_from_nothing_or_an_old_estimator_is_empty(data):
    forecast = Forecast.from_dict(data)
    assert forecast.to_dict() == Forecast().to_dict()
    assert forecast.observe(5.0, 0, 0.5, [1.0], 50.0) == Estimate()
    forecast.enter(6.0, 0, None)  # nothing to end: no crash, nothing learned
    assert forecast.stage_seconds == []


# ----------------------------------------------------------------- properties


def check_eta_contract(run: Run) -> int:
    """Every reported ETA is >= 0, every range holds it (to its 0.1 s
    rounding), and between two reports of the same stage it falls no
    further than _steady allows. Returns how many pairs were checked."""
    for r in run.reports:
        if r.eta is not None:
            assert r.eta >= 0, r
        if r.low is not None or r.high is not None:
            assert r.eta is not None and r.low is not None and r.high is not None, r
            assert 0 <= r.low <= r.eta + 0.05 and r.eta <= r.high + 0.05, r
    checked = 0
    for a, b in pairwise(run.reports):
        if a.stage != b.stage or a.eta is None or b.eta is None:
            continue
        floor = steady_floor(a.eta, b.t - a.t, b.progress, a.progress)
        assert b.eta >= floor - 1e-3, (a, b, floor)
        checked += 1
    return checked


def noisy(seed: int, spread: float = 0.5):
    rng = random.Random(seed)
    return lambda stage, i: rng.uniform(1 - spread, 1 + spread)


def stepwise(stage, i):
    """Bursts and pauses: every fifth step takes five times as long."""
    return 5.0 if i % 5 == 4 else 0.25


def slowing(stage, i):
    return 1.0 + 0.05 * i


TRACES = {
    "steady": None,
    "noisy": noisy(1),
    "stepwise": stepwise,
    "slowing": slowing,
}


# ------------------------------------------------------------------------ cold


def test_cold_no_eta_before_any_progress(tracker, clock):
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    assert state.eta_seconds is None
    snap = tracker.snapshot(state.job_id)
    assert (snap["eta_seconds"], snap["eta_low"], snap["eta_high"]) == (None, None, None)
    clock.advance(3.0)
    _, state = tracker.apply(state.job_id, "progress_update", stage_progress=0)
    assert state.eta_seconds is None  # time passed, no work: nothing to go on
    clock.advance(1.0)
    _, state = tracker.apply(state.job_id, "progress_update", stage_progress=10)
    assert state.eta_seconds is not None and state.eta_seconds > 0


def test_cold_steady_pipeline_is_estimated_within_a_few_percent(tracker, clock):
    # weights that match the real durations: the pace so far is the truth
    real = {name: float(w) for name, w in DECLARED.items()}
    run = drive(tracker, clock, real)
    assert run.status == "completed"
    for r in run.reports:
        assert r.eta == pytest.approx(r.left, rel=0.03, abs=0.5), r
        assert (r.low, r.high) == (None, None)  # no history: no range
    assert check_eta_contract(run) > 50


def test_cold_noisy_pipeline_stays_near_the_truth(tracker, clock):
    real = {name: float(w) for name, w in DECLARED.items()}
    run = drive(tracker, clock, real, speed=noisy(7, spread=0.3))
    late = [r for r in run.reports if r.t > 0.25 * run.seconds]
    errors = [abs(r.eta - r.left) / r.left for r in late]
    assert sum(errors) / len(errors) < 0.1
    check_eta_contract(run)


# ------------------------------------------------------------------------ warm


def learn(tracker, clock, runs: int, durations=REAL, **kw) -> None:
    for _ in range(runs):
        assert drive(tracker, clock, durations, **kw).status == "completed"


@pytest.mark.parametrize("history", [1, 3, 5])
def test_warm_eta_is_within_10_percent_though_the_weights_are_wrong(tracker, clock, history):
    cold = drive(tracker, clock, REAL)  # weights 15/60/20/5, real 40/30/20/10
    at_quarter = cold.at(0.25)
    assert at_quarter.eta > 2 * at_quarter.left  # cold, the wrong weights mislead
    learn(tracker, clock, history - 1)
    run = drive(tracker, clock, REAL)
    for share in (0.25, 0.5, 0.75):
        r = run.at(share)
        assert r.eta == pytest.approx(r.left, rel=0.10), (share, r)
    check_eta_contract(run)


def test_warm_range_holds_the_estimate_once_three_runs_are_known(tracker, clock):
    # runs that vary a little, so the history has a spread
    for i, stretch in enumerate([1.0, 1.1, 0.9]):
        run = drive(tracker, clock, {k: v * stretch for k, v in REAL.items()})
        # a range from the 3rd run on, when 3 runs are known at its start
        assert all((r.low, r.high) == (None, None) for r in run.reports), i
    run = drive(tracker, clock, REAL)
    assert all(r.low is not None and r.high is not None for r in run.reports)
    assert any(r.low < r.eta < r.high for r in run.reports)
    check_eta_contract(run)
    # the snapshot carries the range too; terminal events leave it null
    final = tracker.get(run.job_id).snapshot()
    assert (final["eta_seconds"], final["eta_low"], final["eta_high"]) == (0.0, None, None)


def test_warm_range_holds_the_estimate_exactly(tracker, clock):
    learn(tracker, clock, 3)  # three identical runs: spread (1.0, 1.0)
    run = drive(tracker, clock, REAL, speed=lambda stage, i: 2.0)
    bad = [r for r in run.reports if not (r.low <= r.eta <= r.high)]
    assert bad == []


def test_warm_run_twice_as_slow_as_its_history_is_detected(tracker, clock):
    learn(tracker, clock, 3)
    run = drive(tracker, clock, REAL, speed=lambda stage, i: 2.0)
    assert run.seconds == pytest.approx(200.0)
    # history alone says 75/50/25 s left; the run's own pace doubles it.
    assert run.at(0.25).eta == pytest.approx(run.at(0.25).left, rel=0.25)
    for share in (0.5, 0.75):
        r = run.at(share)
        assert r.eta == pytest.approx(r.left, rel=0.10), (share, r)
    # already at 10 % (parsing a quarter done), far past what history alone
    # says (30 s of parsing, then 60 s): the pace so far counts. (Before,
    # the running stage counted by its share: 108 s at 10 %, truth 180 s.)
    early = run.at(0.1)
    assert early.left == pytest.approx(180.0)
    assert early.eta > 1.5 * 90.0


@pytest.mark.parametrize("trace", sorted(TRACES))
def test_eta_contract_holds_cold_and_warm(tracker, clock, trace):
    speed = TRACES[trace]
    checked = 0
    for _ in range(4):  # cold, then warm with 1, 2 and 3 runs of history
        checked += check_eta_contract(drive(tracker, clock, REAL, speed=speed))
    assert checked > 100


# --------------------------------------------------------- skipped, retried


def test_a_skipped_stage_records_zero_and_the_estimate_stays_sane(tracker, clock):
    learn(tracker, clock, 2)
    skipping = {k: v for k, v in REAL.items() if k != "analyzing"}
    run = drive(tracker, clock, skipping)
    # a report named integrating while parsing ran: parsing completed, analyzing skipped
    first_end = next(e for e in run.events if e["type"] == "stage_completed")
    assert (first_end["stage"], first_end["next_stage"]) == ("parsing", "integrating")
    snap = tracker.get(run.job_id).snapshot()
    assert [s["status"] for s in snap["stages"]] == [
        "completed",
        "skipped",
        "completed",
        "completed",
    ]
    (newest, *_) = tracker.history("pdf")
    assert newest["job_id"] == run.job_id
    assert dict(newest["stages"]) == {
        "parsing": 40.0,
        "analyzing": 0.0,
        "integrating": 20.0,
        "formatting": 10.0,
    }
    # after the skip, the stages left are as their history says
    after = [r for r in run.reports if r.stage == "integrating"]
    for r in after:
        assert r.eta == pytest.approx(r.left, rel=0.10), r
    check_eta_contract(run)
    # and the next full run is still warm: the skipped run's 0 s is one
    # sample of three for analyzing, its median stays 30 s
    run = drive(tracker, clock, REAL)
    for share in (0.25, 0.5, 0.75):
        assert run.at(share).eta == pytest.approx(run.at(share).left, rel=0.10)


class Reporter:
    """progress_updates of one job at chosen times; the ETAs they got."""

    def __init__(self, tracker, clock):
        self.tracker, self.clock = tracker, clock
        self.job = tracker.create_job("pdf", DECLARED, owner="alice", start=True).job_id
        self.t = 0.0
        self.etas: list[tuple[float, float | None]] = []  # (time since start, eta)

    def __call__(self, stage, pct, dt):
        self.clock.advance(dt)
        self.t += dt
        _, st = self.tracker.apply(self.job, "progress_update", stage=stage, stage_progress=pct)
        self.etas.append((self.t, st.eta_seconds))
        return st.eta_seconds

    def retried_parsing(self, step=2.0):
        """parsing to 60 % at the history's pace (40 s a stage), back to 0,
        then all of it again at that pace; then analyzing as its history."""
        for pct in range(5, 65, 5):
            self("parsing", pct, step)
        self("parsing", 0, 0.5)
        for pct in range(5, 100, 5):
            self("parsing", pct, step)
        self.clock.advance(step)
        self.t += step
        self.tracker.apply(self.job, "stage_completed", stage="parsing")
        for pct in range(10, 100, 10):
            self("analyzing", pct, 3.0)


@pytest.mark.parametrize("warm", [False, True])
def test_a_retried_stage_keeps_the_eta_non_negative_and_recovers(tracker, clock, warm):
    if warm:
        learn(tracker, clock, 3)
    report = Reporter(tracker, clock)
    report.retried_parsing()
    etas = [eta for _, eta in report.etas]
    assert all(eta is not None and eta >= 0 for eta in etas)
    retry = 12  # the report at 0 % again
    # it does not fall at the retry by more than the time that passed (it may rise)...
    assert etas[retry] >= etas[retry - 1] - 1.0
    # ...then counts down again through the retried attempt and the next stage
    after = etas[retry:]
    assert all(b < a for a, b in pairwise(after[:-9])), after
    assert all(b < a for a, b in pairwise(after[-9:])), after


def test_a_retry_at_the_historys_pace_keeps_the_warm_eta_near_the_truth(tracker, clock):
    learn(tracker, clock, 3)
    report = Reporter(tracker, clock)
    report.retried_parsing()
    end = 24.0 + 0.5 + 40.0 + 60.0  # the lost attempt, the retry, then as history
    # From the retry on, the run goes at its history's pace again: the lost
    # attempt neither makes it look slow nor counts as work done. (Before the
    # fix: 916.7 s left right after the retry, truth 100 s.)
    for t, eta in report.etas[12:]:
        assert eta == pytest.approx(end - t, rel=0.05), (t, eta, end - t)


def test_an_indeterminate_stage_has_no_eta(tracker, clock):
    learn(tracker, clock, 3)
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    clock.advance(5.0)
    _, st = tracker.apply(state.job_id, "progress_update", n=10, unit="pages")
    assert (st.eta_seconds, st.eta_low, st.eta_high) == (None, None, None)
    clock.advance(5.0)
    _, st = tracker.apply(state.job_id, "progress_update", n=20, total=100)
    assert st.eta_seconds is not None and st.eta_low is not None


# ------------------------------------------------------------ learned weights


def test_auto_weights_without_history_stay_declared(tracker, clock, sockets):
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True, weights="auto")
    assert state.weights == "declared"
    assert [s.weight for s in state.stages] == pytest.approx([0.15, 0.6, 0.2, 0.05])
    (started,) = sockets.events
    assert started["weights"] == "declared"
    assert [s["weight"] for s in started["stages"]] == pytest.approx([0.15, 0.6, 0.2, 0.05])


def test_auto_weights_without_history_of_every_stage_stay_declared(tracker, clock):
    drive(tracker, clock, REAL, stages=["parsing", "analyzing"])  # knows two of four
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True, weights="auto")
    assert state.weights == "declared"
    assert [s.weight for s in state.stages] == pytest.approx([0.15, 0.6, 0.2, 0.05])


def test_auto_weights_are_learned_from_median_durations(tracker, clock, sockets):
    learn(tracker, clock, 2, durations=REAL)
    learn(tracker, clock, 1, durations={k: 3 * v for k, v in REAL.items()})  # an outlier
    sockets.calls.clear()
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True, weights="auto")
    expected = [0.4, 0.3, 0.2, 0.1]  # medians 40/30/20/10 s, not the declared weights
    assert [s.weight for s in state.stages] == pytest.approx(expected)
    (started,) = sockets.events
    assert started["type"] == "job_started"
    assert started["weights"] == "learned"
    assert [s["weight"] for s in started["stages"]] == pytest.approx(expected)
    snap = tracker.snapshot(state.job_id)
    assert snap["weights"] == "learned"
    assert [s["weight"] for s in snap["stages"]] == pytest.approx(expected)
    # a job that did not ask keeps its declared weights
    plain = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    assert plain.weights == "declared" and plain.stages[0].weight == pytest.approx(0.15)


def test_auto_weights_have_a_floor_for_a_stage_that_takes_no_time(tracker, clock):
    learn(tracker, clock, 1, durations={k: v for k, v in REAL.items() if k != "analyzing"})
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True, weights="auto")
    weights = [s.weight for s in state.stages]
    floor = 0.01 * 70.0 / 4  # 1 % of the mean of 40/0/20/10
    assert weights == pytest.approx([w / (70.0 + floor) for w in (40.0, floor, 20.0, 10.0)])
    assert weights[1] > 0


def test_learned_weights_keep_overall_progress_exact_and_monotonic(tracker, clock):
    learn(tracker, clock, 3)
    run = drive(tracker, clock, REAL, weights="auto")
    state = tracker.get(run.job_id)
    assert state.weights == "learned"
    weights = {s.name: s.weight for s in state.stages}
    assert weights == pytest.approx(
        {"parsing": 0.4, "analyzing": 0.3, "integrating": 0.2, "formatting": 0.1}
    )
    # exact at each stage boundary...
    boundary = 0.0
    ends = [e for e in run.events if e["type"] == "stage_completed"]
    assert [e["stage"] for e in ends] == list(REAL)
    for e in ends:
        boundary += weights[e["stage"]]
        assert e["progress"] == pytest.approx(round(100 * boundary, 4), abs=1e-9)
    # ...monotonic within a stage and steady in time: the bar tracks the clock
    for a, b in pairwise(run.reports):
        assert b.progress >= a.progress
        assert b.progress == pytest.approx(b.t, abs=0.01)  # 100 s run: 1 % a second
    # ...and 100 at the end
    (done,) = [e for e in run.events if e["type"] == "job_completed"]
    assert done["progress"] == 100.0
    assert state.progress == 100.0


def coarse_run(tracker, clock, durations=REAL, steps=4) -> list[tuple[float, float]]:
    """One run whose stages each report ``steps`` times, after the work:
    the first report of a stage names it (no stage_completed), so the
    stage before ends there. Returns (true seconds left, eta) per report."""
    job = tracker.create_job("pdf", DECLARED, owner="alice", start=True).job_id
    total, t, seen = sum(durations.values()), 0.0, []
    for stage, seconds in durations.items():
        for i in range(1, steps + 1):
            clock.advance(seconds / steps)
            t += seconds / steps
            _, st = tracker.apply(
                job, "progress_update", stage=stage, stage_progress=100.0 * i / steps
            )
            seen.append((total - t, st.eta_seconds))
    tracker.apply(job, "job_completed")
    return seen


def test_a_stage_begun_by_its_first_report_counts_its_learned_time_from_there(tracker, clock):
    """A report that names the next stage ends the last one there: the new
    stage's learned time runs from that report, at that report's fraction.
    Before, it counted from fraction 0, so the run looked a quarter stage
    ahead of its history at each stage's first report (ETA 12 % short)."""
    for _ in range(3):
        coarse_run(tracker, clock)
    seen = coarse_run(tracker, clock)
    firsts = [seen[i] for i in (4, 8, 12)]  # the first reports of stages 2 to 4
    for left, eta in firsts:
        assert eta == pytest.approx(left, rel=0.03), firsts
