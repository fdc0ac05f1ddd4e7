"""Weighted stages and overall progress.

A job is an ordered list of stages, each with a positive weight. Weights are
normalised to sum 1, so overall progress in percent is::

    100 * (Σ weight(stages before the current one) + weight(current) * fraction)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import InvalidPayload

MAX_STAGES = 100
MAX_STAGE_NAME = 100

#: What callers may pass: names (equal weights), (name, weight) pairs,
#: ``{"name": ..., "weight": ...}`` dicts, a ``{name: weight}`` mapping, or Stages.
StageSpec = Union[str, tuple, Mapping[str, Any], "Stage"]


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a job; ``weight`` is normalised (all weights sum to 1)."""

    name: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight}


def _one(spec: Any, index: int) -> tuple[str, float]:
    if isinstance(spec, Stage):
        return spec.name, spec.weight
    if isinstance(spec, str):
        return spec, 1.0
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise InvalidPayload(
                f"stage {index}: missing 'name'",
                details={"stages": {str(index): ["missing 'name'"]}},
            )
        return spec["name"], spec.get("weight", 1.0)
    if isinstance(spec, tuple) and len(spec) == 2:
        return spec[0], spec[1]
    raise InvalidPayload(
        f"stage {index}: expected a name, a (name, weight) pair or "
        f"{{'name', 'weight'}}, got {type(spec).__name__}",
        details={"stages": {str(index): ["unsupported stage form"]}},
    )


def is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates ("\\ud800"): not Unicode, not
    storable as UTF-8, not JSON a browser reads back."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize_stages(specs: Iterable[StageSpec] | Mapping[str, float]) -> tuple[Stage, ...]:
    """Validate stage specs and return stages whose weights sum to 1.

    Raises :class:`InvalidPayload` naming the offending stage when a name is
    empty or repeated, or a weight is not a positive finite number.
    """
    if isinstance(specs, Mapping):
        specs = list(specs.items())
    specs = list(specs)
    if not specs:
        raise InvalidPayload("a job needs at least one stage", details={"stages": ["empty"]})
    if len(specs) > MAX_STAGES:
        raise InvalidPayload(
            f"at most {MAX_STAGES} stages, got {len(specs)}",
            details={"stages": [f"more than {MAX_STAGES} stages"]},
        )
    pairs: list[tuple[str, float]] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        name, weight = _one(spec, index)
        problem = None
        if not isinstance(name, str) or not name.strip() or not is_unicode(name):
            problem = "name must be a non-empty (valid Unicode) string"
        elif len(name) > MAX_STAGE_NAME:
            problem = f"name longer than {MAX_STAGE_NAME} characters"
        elif name in seen:
            problem = f"duplicate stage name {name!r}"
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)):
            problem = f"weight must be a number, got {type(weight).__name__}"
        elif not math.isfinite(weight) or weight <= 0:
            problem = f"weight must be positive and finite, got {weight!r}"
        if problem:
            raise InvalidPayload(
                f"stage {index}: {problem}", details={"stages": {str(index): [problem]}}
            )
        seen.add(name)
        pairs.append((name, float(weight)))
    # Scale by the largest weight first: huge finite weights must not overflow.
    top = max(w for _, w in pairs)
    scaled = [(name, w / top) for name, w in pairs]
    total = math.fsum(w for _, w in scaled)
    return tuple(Stage(name, w / total) for name, w in scaled)


def stage_index(stages: Sequence[Stage], name: str) -> int:
    """Position of the stage called ``name``; :class:`InvalidPayload` if unknown."""
    for i, stage in enumerate(stages):
        if stage.name == name:
            return i
    known = ", ".join(s.name for s in stages)
    raise InvalidPayload(
        f"unknown stage {name!r}; this job's stages are: {known}",
        details={"stage": [f"unknown stage {name!r}"]},
    )


def overall_progress(stages: Sequence[Stage], index: int | None, fraction: float) -> float:
    """Overall percent (0–100) with stages before ``index`` done and
    ``fraction`` (0–1) of stage ``index`` done. ``index=None`` means all done."""
    if index is None:
        return 100.0
    fraction = min(1.0, max(0.0, fraction))
    done = math.fsum(s.weight for s in stages[:index])
    return round(min(100.0, 100.0 * (done + stages[index].weight * fraction)), 4)
