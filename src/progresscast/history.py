"""What earlier runs of a pipeline say about the next one (issue 14), pure.

A pipeline is known by its ``kind`` (the job's name unless given). When a
job completes, :func:`run_record` turns it into one run of its kind: how
long each stage ran. The store keeps the newest runs per kind; when a job
of that kind starts, :meth:`History.learn` reduces them to what the ETA
needs (the median duration of each of the job's stages, and how much whole
runs vary) and that goes into the job's stored state. Nothing here reads a
store or a clock.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .state import JobState

#: Runs needed before a range (``eta_low``/``eta_high``) is given: with fewer,
#: their spread says nothing.
MIN_RANGE_RUNS = 3
#: The spread of a range: these quantiles of (run's total / median total).
RANGE_QUANTILES = (0.1, 0.9)
#: A learned weight is at least this share of the mean weight, so a stage that
#: usually takes no time still moves the bar when it runs.
MIN_LEARNED_WEIGHT = 0.01


@dataclass(slots=True)
class History:
    """A kind's history, reduced to a job's stages.

    ``durations[i]``: the median seconds of the job's stage ``i`` over the
    runs that knew a stage of that name (``None`` if none did);
    ``spread``: low and high quantiles of a run's total over the median total
    (``None`` with fewer than :data:`MIN_RANGE_RUNS` runs); ``runs``: how many
    runs were read.
    """

    durations: list[float | None]
    spread: tuple[float, float] | None
    runs: int

    @classmethod
    def learn(cls, stage_names: Sequence[str], runs: Sequence[Mapping[str, Any]]) -> History | None:
        """Reduce ``runs`` (store records, any order) to ``stage_names``;
        ``None`` when no run knows any of them."""
        per_stage: dict[str, list[float]] = {name: [] for name in stage_names}
        totals: list[float] = []
        for run in runs:
            stages = run.get("stages") or []
            seconds = {name: float(s) for name, s in stages if _finite(s) and s >= 0}
            for name in stage_names:
                if name in seconds:
                    per_stage[name].append(seconds[name])
            known = [seconds[n] for n in stage_names if n in seconds]
            if len(known) == len(stage_names):  # a total of this job's stages only
                totals.append(math.fsum(known))
        durations = [statistics.median(v) if v else None for v in per_stage.values()]
        if all(d is None for d in durations):
            return None
        spread = None
        median_total = statistics.median(totals) if totals else 0.0
        if len(totals) >= MIN_RANGE_RUNS and median_total > 0:
            ratios = sorted(t / median_total for t in totals)
            lo, hi = (_quantile(ratios, q) for q in RANGE_QUANTILES)
            spread = (round(min(lo, 1.0), 4), round(max(hi, 1.0), 4))
        return cls(durations, spread, len(runs))

    def weights(self) -> list[float] | None:
        """Stage weights in proportion to the learned durations, or ``None``
        unless every stage has history and they add up to some time."""
        if any(d is None for d in self.durations):
            return None
        total = math.fsum(self.durations)  # type: ignore[arg-type]
        if total <= 0:
            return None
        floor = MIN_LEARNED_WEIGHT * total / len(self.durations)
        return [max(d, floor) for d in self.durations]  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        spread = None if self.spread is None else list(self.spread)  # as JSON has it
        return {"durations": self.durations, "spread": spread, "runs": self.runs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> History | None:
        if not data:
            return None
        spread = data.get("spread")
        return cls(list(data["durations"]), tuple(spread) if spread else None, data["runs"])


def run_record(state: JobState) -> dict[str, Any] | None:
    """One run of ``state``'s kind for the store, or ``None`` if the job did
    not complete (a failed or cancelled run says nothing of a whole run)."""
    from .state import JobStatus, StageStatus  # the state machine imports this module

    if state.status is not JobStatus.COMPLETED or state.started_at is None:
        return None
    seconds = (state.eta or {}).get("stage_seconds") or []
    if len(seconds) != len(state.stages):
        return None  # a job stored before history existed
    stages = []
    for stage, status, took in zip(state.stages, state.stage_status, seconds, strict=True):
        if status is StageStatus.SKIPPED:
            took = 0.0
        elif took is None:
            return None
        stages.append([stage.name, round(took, 3)])
    return {
        "job_id": state.job_id,
        "finished_at": state.finished_at,
        "elapsed": state.elapsed_seconds,
        "stages": stages,
    }


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
