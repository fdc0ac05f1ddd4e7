"""Job groups: a parent job standing for its children (docs/protocol.md, "Groups").

The parent is a job like any other, with one stage (``jobs``). What it shows
follows from its children: its progress is their weighted mean, its count is
the children ended of all of them (unit ``jobs``, so its rate is jobs per
second), and it ends when the last of them has ended. This module holds the
rules; :class:`~progresscast.tracker.ProgressTracker` applies them whenever
a child changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidPayload
from .state import CHILD_COUNTS, EventType, JobState, JobStatus

#: the one stage of a parent job
GROUP_STAGE = "jobs"
#: the unit of a parent's count
GROUP_UNIT = "jobs"
#: children per group
MAX_CHILDREN = 1000
#: a parent's progress stays below 100 until its last child has completed
BELOW_DONE = 99.9
#: failed children named in a parent's error
NAMED_FAILURES = 5
#: the largest weight of a child (weights are relative: more says nothing,
#: and sums of huge ones overflow)
MAX_WEIGHT = 1e6


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of a group to create."""

    name: str
    stages: Any
    job_id: str | None = None
    weight: float = 1.0
    metadata: Mapping[str, Any] | None = None
    kind: str | None = None


def child_specs(children: Any) -> list[ChildSpec]:
    """Children as given to :meth:`ProgressTracker.group`: dicts ``{name,
    stages, job_id?, weight?, metadata?, kind?}``, ``(name, stages)`` pairs or
    :class:`ChildSpec`; 1 to ``MAX_CHILDREN`` of them."""
    if isinstance(children, str | bytes | Mapping) or not isinstance(children, Sequence):
        raise InvalidPayload("children must be a list", details={"children": ["not a list"]})
    if not 1 <= len(children) <= MAX_CHILDREN:
        raise InvalidPayload(
            f"a group has 1 to {MAX_CHILDREN} children, not {len(children)}",
            details={"children": [f"1 to {MAX_CHILDREN} children"]},
        )
    specs = [_spec(child, i) for i, child in enumerate(children)]
    ids = [s.job_id for s in specs if s.job_id is not None]
    if len(ids) != len(set(ids)):
        raise InvalidPayload("children's job_id repeat", details={"children": ["repeated job_id"]})
    return specs


def _spec(child: Any, index: int) -> ChildSpec:
    if isinstance(child, ChildSpec):
        spec = child
    elif isinstance(child, Mapping):
        unknown = set(child) - {"name", "stages", "job_id", "weight", "metadata", "kind"}
        if unknown or "name" not in child or "stages" not in child:
            raise InvalidPayload(
                f"child {index}: give name and stages (and job_id, weight, metadata, kind)",
                details={"children": {str(index): ["name and stages required"]}},
            )
        spec = ChildSpec(**child)
    elif isinstance(child, tuple | list) and len(child) == 2:
        spec = ChildSpec(child[0], child[1])
    else:
        raise InvalidPayload(
            f"child {index} must be {{name, stages, ...}} or (name, stages)",
            details={"children": {str(index): ["not a child"]}},
        )
    weight = spec.weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        weight = -1
    if not 0 < weight <= MAX_WEIGHT:
        raise InvalidPayload(
            f"child {index}: weight must be a number more than 0, at most {MAX_WEIGHT:g}",
            details={"children": {str(index): [f"weight must be in (0, {MAX_WEIGHT:g}]"]}},
        )
    return spec


@dataclass(frozen=True, slots=True)
class Aggregate:
    """What a parent shows, from its children's states."""

    counts: dict[str, int]
    progress: float
    ended: int

    @property
    def total(self) -> int:
        return self.counts["total"]

    @property
    def all_ended(self) -> bool:
        return self.ended == self.total


def aggregate(children: Sequence[JobState]) -> Aggregate:
    """The children's counts by status and their weighted mean progress (a
    completed child counts 100; the mean stays below 100 until all completed)."""
    counts = dict.fromkeys(CHILD_COUNTS, 0)
    counts["total"] = len(children)
    weights = done = 0.0
    for child in children:
        counts[child.status.value] += 1
        pct = 100.0 if child.status is JobStatus.COMPLETED else child.progress
        weights += child.weight
        done += child.weight * pct
    progress = min(100.0, max(0.0, done / weights)) if weights else 0.0
    if counts["completed"] < counts["total"]:
        progress = min(progress, BELOW_DONE)
    ended = counts["completed"] + counts["failed"] + counts["cancelled"]
    return Aggregate(counts, round(progress, 4), ended)


def report(agg: Aggregate) -> dict[str, Any]:
    """The fields of the parent's ``progress_update`` for ``agg``."""
    return {
        "stage_progress": agg.progress,
        "n": agg.ended,
        "total": agg.total,
        "unit": GROUP_UNIT,
        "children": agg.counts,
    }


def ending(agg: Aggregate, children: Sequence[JobState]) -> tuple[EventType, dict[str, Any]]:
    """How a parent ends once every child has: completed if all completed;
    failed (naming the failed children) if any failed; else cancelled."""
    counts, total = agg.counts, agg.total
    if counts["completed"] == total:
        return EventType.JOB_COMPLETED, {}
    if counts["failed"]:
        names = [c.name for c in children if c.status is JobStatus.FAILED]
        shown = ", ".join(names[:NAMED_FAILURES]) + (", …" if len(names) > NAMED_FAILURES else "")
        return EventType.JOB_FAILED, {
            "error": {
                "type": "children_failed",
                "message": f"{counts['failed']} of {total} jobs failed: {shown}",
            }
        }
    return EventType.JOB_CANCELLED, {
        "reason": f"{counts['cancelled']} of {total} jobs were cancelled"
    }
