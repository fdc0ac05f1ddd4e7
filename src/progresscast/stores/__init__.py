"""Job stores: where job state and event history live.

``open_store(url)`` picks the back-end from a URL:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite:///:memory:`` — :class:`SQLiteStore`, the embedded default.
- ``redis://host:port/db`` (``rediss://``, ``unix://``) — :class:`RedisStore`,
  for several instances and worker processes (needs redis-py).

Store options go in the query string: ``max_events_per_job``, and for Redis
``prefix`` and ``retention_seconds``; other query arguments are the driver's.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import JobStore
from .sqlite import SQLiteStore

__all__ = ["JobStore", "SQLiteStore", "open_store", "sqlite_path"]

_OPTIONS = {
    "max_events_per_job": int,
    "prefix": str,
    "retention_seconds": int,
    "max_connections": int,
}


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite:///`` URL names (``:memory:`` included); ``None``
    for another scheme. ``sqlite:///x.db`` → ``x.db`` (relative),
    ``sqlite:////x.db`` → ``/x.db``."""
    if urlsplit(url).scheme != "sqlite":
        return None
    return url.split("?", 1)[0][len("sqlite:///") :]


def open_store(url: str) -> JobStore:
    """Open the store a URL names; raise ``ValueError`` for an unknown scheme."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    options = {k: _OPTIONS[k](v) for k, v in query if k in _OPTIONS}
    driver_query = urlencode([(k, v) for k, v in query if k not in _OPTIONS])
    if parts.scheme == "sqlite":
        path = sqlite_path(url)
        if not path:
            raise ValueError(f"store URL {url!r} names no file; try sqlite:///progresscast.db")
        kwargs = {}
        if "max_events_per_job" in options:
            kwargs["max_events_per_job"] = int(options["max_events_per_job"])
        return SQLiteStore(path, **kwargs)
    if parts.scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        plain = urlunsplit(parts._replace(query=driver_query))
        return RedisStore(plain, **options)
    raise ValueError(
        f"unsupported store URL {url!r}; expected sqlite:///path.db or redis://host:port/db"
    )
