"""Test doubles shared by the unit tests: a hand-driven clock and a Socket.IO stand-in."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

#: A wall-clock epoch to start fake time at (2023-11-14T22:13:20Z).
T0 = 1_700_000_000.0

#: The DESIGN §3 default example; the weights already sum to 1.
DOC_STAGES = {"parsing": 0.15, "analyzing": 0.60, "integrating": 0.20, "formatting": 0.05}


class FakeClock:
    """A clock that only moves when the test says so (like tqdm's DiscreteTimer).

    ``advance`` is thread-safe, so worker threads can each account for the
    time their own calls take.
    """

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass(frozen=True)
class Emitted:
    event: str
    data: dict[str, Any]
    to: Any
    namespace: str | None


class RecordingEmitter:
    """The Socket.IO ``emit`` the tracker depends on, recording what it was given."""

    def __init__(self) -> None:
        self.calls: list[Emitted] = []
        self._lock = threading.Lock()

    def emit(self, event: str, data: Any, to: Any = None, namespace: str | None = None) -> None:
        with self._lock:
            self.calls.append(Emitted(event, data, to, namespace))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [c.data for c in self.calls]

    def types(self) -> list[str]:
        return [c.event for c in self.calls]


class BrokenEmitter:
    """An ``emit`` that always fails, like a message queue that is down."""

    def __init__(self) -> None:
        self.attempts = 0

    def emit(self, event: str, data: Any, to: Any = None, namespace: str | None = None) -> None:
        self.attempts += 1
        raise ConnectionError("message queue unreachable")
