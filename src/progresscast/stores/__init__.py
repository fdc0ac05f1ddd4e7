"""Job stores: where job state and event history live.

``open_store(url)`` picks the back-end from a URL:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite:///:memory:`` — :class:`SQLiteStore`, the embedded default.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from .base import JobStore
from .sqlite import SQLiteStore

__all__ = ["JobStore", "SQLiteStore", "open_store"]


def open_store(url: str) -> JobStore:
    """Open the store a URL names; raise ``ValueError`` for an unknown scheme."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "sqlite":
        # sqlite:///x.db → "x.db" (relative); sqlite:////x.db → "/x.db"
        path = url.split("?", 1)[0][len("sqlite:///") :]
        if not path:
            raise ValueError(f"store URL {url!r} names no file; try sqlite:///progresscast.db")
        kwargs = {}
        if "max_events_per_job" in options:
            kwargs["max_events_per_job"] = int(options["max_events_per_job"])
        return SQLiteStore(path, **kwargs)
    raise ValueError(f"unsupported store URL {url!r}; expected sqlite:///path.db")
