import itertools
import json

import pytest

from progresscast.eta import EMA, MIN_SAMPLES, EtaEstimator

from .fakes import T0, FakeClock

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


# ---------------------------------------------------------------- EtaEstimator


def run(est, clock, steps):
    """Feed (dt, dp) steps to ``est`` on a fake clock; return the ETA after each."""
    p = est.last_p
    out = []
    for dt, dp in steps:
        clock.advance(dt)
        p += dp
        out.append(est.observe(clock(), p))
    return out


def test_none_until_enough_samples():
    clock = FakeClock(T0)
    est = EtaEstimator()
    assert est.observe(clock(), 0.0) is None  # a first point has no rate
    etas = run(est, clock, [(1.0, 2.0)] * 3)
    assert MIN_SAMPLES == 2
    assert etas[0] is None
    assert etas[1] is not None
    assert est.eta(50.0) is not None


def test_constant_rate_gives_the_exact_remaining_time():
    clock = FakeClock(T0)
    est = EtaEstimator()
    est.observe(clock(), 0.0)
    etas = run(est, clock, [(1.0, 2.0)] * 40)  # 2 % per second
    for k, eta in enumerate(etas[1:], start=2):
        assert eta == pytest.approx((100.0 - 2.0 * k) / 2.0, abs=1e-3)


def test_constant_rate_with_irregular_samples_is_still_exact():
    clock = FakeClock(T0)
    est = EtaEstimator()
    p = 10.0
    est.observe(clock(), p)
    checked = 0
    for dt in [0.5, 2.0, 0.25, 3.0, 0.125, 1.5, 0.75]:  # 4 % per second throughout
        clock.advance(dt)
        p += 4.0 * dt
        eta = est.observe(clock(), p)
        if est.dp.calls >= MIN_SAMPLES:
            assert eta == pytest.approx((100.0 - p) / 4.0, abs=1e-3)
            checked += 1
    assert checked == 6


@pytest.mark.parametrize(("old", "new"), [(1.0, 3.0), (3.0, 0.5)])
def test_a_rate_change_moves_the_estimate_smoothly(old, new):
    clock = FakeClock(T0)
    est = EtaEstimator()
    est.observe(clock(), 0.0)
    run(est, clock, [(1.0, old)] * 10)
    p = 10 * old
    implied = [old]  # the rate the estimate assumes: remaining / eta
    for _ in range(12):
        clock.advance(1.0)
        p += new
        eta = est.observe(clock(), p)
        at_old, at_new = (100 - p) / old, (100 - p) / new
        assert min(at_old, at_new) < eta < max(at_old, at_new)
        implied.append((100 - p) / eta)
    # monotone from the old rate towards the new one, never overshooting
    steps = [b - a for a, b in itertools.pairwise(implied)]
    assert all(s * (new - old) > 0 for s in steps)
    # one sample does not jump half-way, a dozen get close
    assert abs(implied[1] - old) < abs(new - old) / 2
    assert abs(implied[-1] - new) < abs(new - old) * 0.05


def test_zero_at_100_percent():
    clock = FakeClock(T0)
    est = EtaEstimator()
    assert est.observe(clock(), 100.0) == 0.0  # even without a rate
    est = EtaEstimator()
    est.observe(clock(), 0.0)
    etas = run(est, clock, [(1.0, 10.0)] * 10)
    assert etas[-2] == pytest.approx(1.0, abs=1e-3)  # at 90 %, 10 % per second
    assert etas[-1] == 0.0


def test_steps_back_and_zero_time_are_ignored():
    clock = FakeClock(T0)
    est = EtaEstimator()
    est.observe(clock(), 0.0)
    run(est, clock, [(1.0, 5.0)] * 4)
    calls = (est.dp.calls, est.dt.calls)
    eta_before = est.eta(20.0)
    est.observe(clock(), 20.0)  # no time passed
    clock.advance(1.0)
    est.observe(clock(), 12.0)  # a retried stage: progress went back
    assert (est.dp.calls, est.dt.calls) == calls
    assert est.eta(20.0) == eta_before
    # the retried point is the new reference: 12 → 17 in 1 s is the usual rate
    assert run(est, clock, [(1.0, 5.0)])[0] == pytest.approx((100 - 17) / 5.0, abs=1e-3)


def test_no_progress_gives_none():
    clock = FakeClock(T0)
    est = EtaEstimator()
    est.observe(clock(), 30.0)
    assert run(est, clock, [(1.0, 0.0)] * 5)[-1] is None


def test_round_trip_keeps_behaviour_identical():
    clock = FakeClock(T0)
    est = EtaEstimator()
    est.observe(clock(), 0.0)
    run(est, clock, [(1.0, 1.0), (2.0, 5.0), (0.5, 0.5), (1.0, 3.0)])
    data = json.loads(json.dumps(est.to_dict()))  # what a store keeps
    copy = EtaEstimator.from_dict(data)
    assert copy.to_dict() == est.to_dict()
    assert copy.eta(est.last_p) == est.eta(est.last_p)
    steps = [(1.0, 2.0), (0.25, 4.0), (3.0, 1.0), (1.0, -2.0), (0.0, 1.0), (1.0, 6.0)]
    assert run(copy, FakeClock(clock()), steps) == run(est, clock, steps)
    assert copy.to_dict() == est.to_dict()


def test_from_empty_dict_is_a_fresh_estimator():
    for data in (None, {}):
        est = EtaEstimator.from_dict(data)
        assert est.last_t is None
        assert est.dp.calls == est.dt.calls == 0
        assert est.to_dict() == EtaEstimator().to_dict()
