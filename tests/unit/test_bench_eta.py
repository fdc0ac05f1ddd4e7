"""bench/eta.py (ETA accuracy, issue 14) measures what it says: a quick run of
its small kinds, cold and warm, and its metric on traces whose answer is known."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

# bench/ is not a package; load bench/eta.py without putting bench/ on sys.path
# (its lib.py, emitter.py... would shadow other modules).
_spec = importlib.util.spec_from_file_location(
    "bench_eta", Path(__file__).resolve().parents[2] / "bench" / "eta.py"
)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_eta"] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)


def test_steady_pipeline_with_matching_weights_is_estimated_exactly():
    run = bench.run_kind(bench.KINDS_BY_NAME["steady"])
    assert run.status == "completed"
    assert run.end - run.start == pytest.approx(bench.DURATION)
    assert len(run.updates) > 100
    for name, series in bench.ESTIMATORS.items():
        error = bench.mean_relative_error(series(run), run.start, run.end)
        assert error < 0.005, name


def test_progresscast_column_is_the_trackers_own_eta():
    run = bench.run_kind(bench.KINDS_BY_NAME["noisy"])
    emitted = [eta for _, _, eta in run.updates]
    assert bench.progresscast_series(run) == [(t, eta) for t, _, eta in run.updates]
    assert sum(eta is not None for eta in emitted) > len(emitted) - 3


def test_wrong_weights_make_the_plain_average_wrong_by_a_known_amount():
    # Real durations 40/30/20/10 against weights 15/60/20/5: at 25 % of the
    # time parsing is 62.5 % done, 9.375 % overall; the plain average then
    # says 25 × 90.625 / 9.375 = 241.7 % of the job is left (true: 75 %).
    run = bench.run_kind(bench.KINDS_BY_NAME["wrong-40-30-20-10"])
    series = bench.plain_average_series(run)
    t = run.start + 0.25 * (run.end - run.start)
    left = bench.estimate_at(series, t)
    assert left / (run.end - t) == pytest.approx(241.67 / 75, rel=0.02)


def test_metric_on_hand_made_series():
    start, end = 0.0, 100.0
    truth = [(t, end - t) for t in range(0, 100)]
    assert bench.mean_relative_error(truth, start, end) == pytest.approx(0.0)
    # one exact estimate at the start, counted down: exact everywhere
    assert bench.mean_relative_error([(0.0, 100.0)], start, end) == pytest.approx(0.0)
    # twice the truth everywhere: error 100 %
    double = [(t, 2 * (end - t)) for t in range(0, 100)]
    assert bench.mean_relative_error(double, start, end, samples=11) == pytest.approx(1.0)
    # no estimate at all counts as 100 %
    assert bench.mean_relative_error([(0.0, None)], start, end) == pytest.approx(1.0)
    assert bench.mean_relative_error([], start, end) == pytest.approx(1.0)


def test_traces_are_deterministic_and_the_failing_kind_fails():
    kind = bench.KINDS_BY_NAME["stepwise"]
    assert bench.make_trace(kind, random.Random(1)) == bench.make_trace(kind, random.Random(1))
    run = bench.run_kind(bench.KINDS_BY_NAME["fails-halfway"])
    assert run.status == "failed"
    assert run.end - run.start == pytest.approx(bench.DURATION / 2)


def test_history_runs_go_through_the_same_store_first():
    """The warm columns: earlier runs of the pipeline, then the same measured run."""
    kind = bench.KINDS_BY_NAME["steady"]
    cold = bench.run_kind(kind)
    warm = bench.run_kind(kind, history=2)
    assert warm.start > cold.start + 2 * bench.DURATION
    assert [p for _, p, _ in warm.updates] == [p for _, p, _ in cold.updates]
    assert cold.history == 1  # the measured run itself, once completed
    assert warm.history == 3


def test_a_warm_run_learns_what_a_cold_one_cannot_know():
    kind = bench.KINDS_BY_NAME["wrong-40-30-20-10"]
    cold = bench.score(bench.run_kind(kind))
    warm = bench.score(bench.run_kind(kind, history=3))
    assert cold["progresscast"] > 0.5
    assert warm["progresscast"] < bench.WARM_TARGET
    # the references don't learn: the same trace scores the same
    for name in ("tqdm EMA", "plain average"):
        assert warm[name] == pytest.approx(cold[name], abs=1e-9)


def test_failed_runs_leave_no_history():
    run = bench.run_kind(bench.KINDS_BY_NAME["fails-halfway"], history=3)
    assert run.status == "failed"
    assert run.history == 0


def test_table_has_a_row_per_kind_and_the_warm_columns():
    kinds = [bench.KINDS_BY_NAME["steady"], bench.KINDS_BY_NAME["fails-halfway"]]
    results = bench.measure(kinds, seeds=1)
    assert results["seeds"] == [0]
    steady, failing = results["rows"]
    assert set(steady["warm"]) == set(bench.WARM_RUNS)
    for n in bench.WARM_RUNS:
        assert set(steady["warm"][n]) == set(bench.ESTIMATORS)
        assert steady["history"][n] == n + 1
    assert failing["cold"] == {} and failing["warm"] == {}
    assert all(runs == 0 for runs in failing["history"].values())
    assert bench.failed_history(results) == [
        ("fails-halfway", n + 1, 0) for n in (0, *bench.WARM_RUNS)
    ]
    assert bench.cold_misses(results) == []
    assert bench.warm_misses(results) == []

    table = bench.markdown(results)
    assert table.count("\n") == 3
    header = table.splitlines()[0]
    for n in bench.WARM_RUNS:
        assert f"progresscast after {n} runs" in header
    assert "(failed after 300 s)" in table
    assert "history after 11 failed runs: 0 runs ✓" in table
    assert "✗" not in table
    assert bench.plain(results).endswith("(seed 0)")

    section = "\n".join(bench.docs_section(results))
    assert section.startswith(bench.DOCS_HEADING)
    assert table in section
    assert "**met** on every kind" in section
    # as bench/report.py renders it: from bench/results/eta.json, read back
    assert bench.docs_section(json.loads(json.dumps(results))) == bench.docs_section(results)
