"""Synthetic pipelines driven through a real ``ProgressTracker`` on a fake
clock, for the ETA's tests (issue 14): each stage runs for a known number of
seconds, reporting its progress at a fixed step, so the true time left is
known at every report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from progresscast import ProgressTracker

from .fakes import FakeClock

#: The DESIGN §3 weights the demo declares...
DECLARED = {"parsing": 15, "analyzing": 60, "integrating": 20, "formatting": 5}
#: ...and how long its stages really take (seconds): nothing like them.
REAL = {"parsing": 40.0, "analyzing": 30.0, "integrating": 20.0, "formatting": 10.0}


@dataclass
class Report:
    """One ``progress_update`` as the tracker stored it."""

    t: float  # seconds since the job started
    left: float  # the true seconds left
    stage: str
    stage_progress: float
    progress: float
    eta: float | None
    low: float | None
    high: float | None


@dataclass
class Run:
    job_id: str
    status: str
    seconds: float  # how long the job ran
    reports: list[Report] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def at(self, share: float) -> Report:
        """The report nearest to ``share`` (0-1) of the run's time."""
        return min(self.reports, key=lambda r: abs(r.t - share * self.seconds))


def drive(
    tracker: ProgressTracker,
    clock: FakeClock,
    durations: Mapping[str, float],
    *,
    name: str = "pdf",
    stages: Any = DECLARED,
    kind: str | None = None,
    weights: str = "declared",
    step: float = 1.0,
    speed: Callable[[str, int], float] | None = None,
    end: str = "completed",
    stop_at: float = 0.5,
    teach: bool = True,
) -> Run:
    """Run one job whose stage ``s`` takes ``durations[s]`` seconds (stages
    missing from ``durations`` are skipped: the next report names a later
    stage), reporting every ``step`` seconds. ``speed(stage, i)`` stretches
    the ``i``-th step of a stage (noise, pauses). ``end``: ``completed``, or
    ``failed``/``cancelled`` at ``stop_at`` of the planned time."""
    state = tracker.create_job(name, stages, owner="alice", start=True, kind=kind, weights=weights)
    job_id, t0 = state.job_id, clock()
    names = [s.name for s in state.stages]
    plan: list[tuple[str, float]] = []  # (stage, seconds of this step), in order
    for stage in names:
        if stage not in durations:
            continue
        n = max(1, round(durations[stage] / step))
        for i in range(n):
            stretch = speed(stage, i) if speed else 1.0
            plan.append((stage, durations[stage] / n * stretch))
    ends = {}  # each stage's planned end, as a running sum
    total = 0.0
    for stage, dt in plan:
        total += dt
        ends[stage] = total
    run = Run(job_id, "running", 0.0, events=list(tracker.store.events_since(job_id)))
    done: dict[str, int] = {}
    current = names[0]
    elapsed = 0.0
    for k, (stage, dt) in enumerate(plan):
        if end != "completed" and elapsed + dt > stop_at * total:
            break
        if stage != current:
            # The stage before ended: name the next one (a later one skips
            # those between).
            if names.index(stage) == names.index(current) + 1:
                events, _ = tracker.apply(job_id, "stage_completed", stage=current)
            else:
                events, _ = tracker.apply(job_id, "progress_update", stage=stage, stage_progress=0)
            run.events += events
            current = stage
        clock.advance(dt)
        elapsed += dt
        done[stage] = done.get(stage, 0) + 1
        last_step = k == len(plan) - 1 or plan[k + 1][0] != stage
        if last_step:
            continue  # the stage's end is the next stage's start (or the job's end)
        steps = sum(1 for s, _ in plan if s == stage)
        events, state = tracker.apply(
            job_id, "progress_update", stage=stage, stage_progress=100.0 * done[stage] / steps
        )
        run.events += events
        run.reports.append(
            Report(
                clock() - t0,
                total - elapsed,
                stage,
                state.stage_progress,
                state.progress,
                state.eta_seconds,
                state.eta_low,
                state.eta_high,
            )
        )
    if end == "completed":
        events, state = tracker.apply(job_id, "job_completed", teach=teach)
    elif end == "failed":
        events, state = tracker.apply(job_id, "job_failed", error="broken")
    else:
        events, state = tracker.apply(job_id, "job_cancelled", reason="enough")
    run.events += events
    run.status = state.status.value
    run.seconds = clock() - t0
    clock.advance(60.0)  # some time between runs
    return run
