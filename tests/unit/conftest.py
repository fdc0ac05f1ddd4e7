from __future__ import annotations

import pytest

from progresscast import ProgressTracker, SQLiteStore

from .fakes import T0, FakeClock, RecordingEmitter


@pytest.fixture
def clock() -> FakeClock:
    """The tracker's wall clock (timestamps, elapsed time)."""
    return FakeClock(T0)


@pytest.fixture
def mono() -> FakeClock:
    """The emitter's monotonic clock (throttling)."""
    return FakeClock(0.0)


@pytest.fixture
def sockets() -> RecordingEmitter:
    return RecordingEmitter()


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "progress.db"))
    yield s
    s.close()


@pytest.fixture
def tracker(store, sockets, clock) -> ProgressTracker:
    return ProgressTracker(store, sockets, clock=clock, min_interval=0.1)
