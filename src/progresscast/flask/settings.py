"""The extension's settings and their defaults.

An app sets them in ``app.config`` with the prefix ``PROGRESSCAST_``
(``PROGRESSCAST_STORE_URL``, ``PROGRESSCAST_URL_PREFIX``...). The standalone
server (``web/``) reads them without a prefix from its ``config.py``, whose
classes start from :class:`Defaults`. docs/flask-extension.md lists them all.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

#: the prefix of every setting in an app's config
PREFIX = "PROGRESSCAST_"


class Defaults:
    """Every setting of the extension, with its default. Nothing is open
    that was not asked for."""

    # --- where things are
    # Where the REST API (<prefix>/api), the pages and the JS client
    # (<prefix>/static/progresscast.js) are mounted; "" mounts them at the root.
    URL_PREFIX = "/progress"
    # None: a SQLite file in the app's instance folder (progresscast.db).
    STORE_URL: str | None = None
    # The dashboard (<prefix>/) and job pages (<prefix>/jobs/<id>).
    PAGES = True
    # Where the pages load the official Socket.IO client (ESM build) from;
    # None: the jsDelivr build of the version this release is tested with.
    SOCKETIO_CLIENT_URL: str | None = None

    # --- message queue (workers and other instances publish through it)
    # None: the app's SocketIO's own message_queue, if it has one.
    MESSAGE_QUEUE_URL: str | None = None
    SOCKETIO_CHANNEL = "flask-socketio"  # must match workers' write-only emitters
    # join_job and watch_jobs wait this long for the subscription to the
    # message queue (after a start or a Redis restart), then ack `unavailable`.
    QUEUE_READY_TIMEOUT = 5.0
    # Named in ping acks and /healthz, to tell instances apart behind a proxy.
    INSTANCE_NAME = f"{socket.gethostname()}:{os.getpid()}"
    # This server's name across restarts. Jobs whose pipeline runs in its
    # process are marked with it; when it starts, the ones its last run left
    # queued or running fail as "interrupted" (their pipeline died with it).
    # Default: the host, plus PROGRESSCAST_BIND when set, so instances on one
    # host that bind apart are told apart; otherwise give each its own.
    SERVER_ID = socket.gethostname() + (
        f"@{os.environ['PROGRESSCAST_BIND']}" if os.environ.get("PROGRESSCAST_BIND") else ""
    )

    # --- security
    # Signs bearer tokens (JWT HS256), at least 32 characters. The extension
    # falls back to the app's SECRET_KEY; if neither is long enough, bearer
    # tokens are refused and only the app's own sign-in (user_loader) works.
    SECRET_KEY: str | None = None
    TOKEN_LEEWAY = 0  # seconds of clock skew tolerated on `exp`
    # Browser origins besides the app's own that may call the REST API (CORS)
    # and make cookie-authenticated writes. Empty: same origin only. Never "*"
    # by default.
    CORS_ALLOWED_ORIGINS: list[str] = []
    EXPIRY_SWEEP_SECONDS = 5  # connections whose token expired are closed this often
    MAX_CONNECTIONS = 20_000  # per instance
    MAX_CONNECTIONS_PER_USER = 10  # per instance
    SOCKET_RATE = 20  # requests per second per connection ...
    SOCKET_BURST = 40  # ... with this much saved up
    # A connection refused more than SOCKET_STRIKES_BURST times, beyond
    # SOCKET_STRIKES_RATE refusals a second, is a flood: it is disconnected.
    SOCKET_STRIKES_RATE = 5
    SOCKET_STRIKES_BURST = 50
    HTTP_RATE = 50  # requests per second per user (or per address for anonymous calls)
    HTTP_BURST = 100

    # --- operators: metrics and the Socket.IO Admin UI
    # Prometheus metrics at <prefix>/metrics (metrics.py), served to this host
    # only (a request from loopback that no proxy forwarded) or to a bearer of
    # METRICS_TOKEN. False: no /metrics, nothing measured.
    METRICS = True
    METRICS_TOKEN: str | None = None  # at least 16 characters; None: localhost only
    # python-socketio's Admin UI (its instrument()) on the namespace /admin,
    # for these credentials; off while ADMIN_UI_PASSWORD is None. "production"
    # mode sends server statistics only; "development" also every socket, its
    # handshake headers and its events (admin.py).
    ADMIN_UI_USERNAME = "admin"
    ADMIN_UI_PASSWORD: str | None = None
    ADMIN_UI_MODE = "production"

    # --- the fast websocket path (eventlet and gevent)
    # permessage-deflate: off, since deflating each small event once per client
    # is the dominant cost of a delivery (compression.py, docs/benchmarks.md).
    WEBSOCKET_COMPRESSION = False
    # Websocket frames written straight to the socket, idle readers parked in
    # the event loop's hub, one pinger for all (transport/); off (or a
    # dependency in a version it was not tested with, transport/hooks.py) =
    # python-engineio's own path.
    DIRECT_WEBSOCKET = True
    # Bytes a slow reader may have waiting before it is disconnected (it resumes).
    WEBSOCKET_MAX_BACKLOG = 4 * 1024 * 1024

    # --- Server-Sent Events (<prefix>/api/jobs/<id>/stream, <prefix>/api/stream)
    SSE_HEARTBEAT = 15.0  # seconds between ": ping" comments, so proxies keep a quiet stream
    SSE_RETRY_MS = 2000  # the `retry:` a stream starts with: EventSource's reconnect delay
    # Events waiting for a slow reader before its stream is cut (it resumes
    # with Last-Event-ID).
    SSE_MAX_BACKLOG = 1000
    SSE_TOKEN_TTL = 60  # seconds a stream token (POST <prefix>/api/stream-tokens) opens streams

    # --- jobs
    MIN_INTERVAL = 0.1  # emitter throttle, seconds
    # The ETA learns from the newest ETA_HISTORY_RUNS completed runs of each
    # kind, none older than ETA_HISTORY_DAYS (docs/eta.md). 0 runs: no history.
    ETA_HISTORY_RUNS = 20
    ETA_HISTORY_DAYS = 30
    JOIN_MAX_EVENTS = 1000  # more missed events than this: the join ack says `truncated`
    WATCH_MAX_JOBS = 200  # jobs listed in a watch_jobs ack
    BATCH_INTERVAL = 0.1  # seconds between job_events frames for watch_jobs {batch: true}
    RETENTION_SECONDS = 7 * 24 * 3600  # finished jobs older than this are pruned
    PRUNE_EVERY_SECONDS = 600
    # A running job with no event for this long is failed as "stalled" (its
    # worker presumably died); checked every STALL_CHECK_SECONDS. 0 disables.
    STALL_SECONDS = 600
    STALL_CHECK_SECONDS = 10
    # A cancellation request that the job's pipeline has not acknowledged
    # within this many seconds ends the job as cancelled anyway (its pipeline
    # is gone, or deaf); checked every CANCEL_CHECK_SECONDS. 0 disables.
    CANCEL_GRACE_SECONDS = 10
    CANCEL_CHECK_SECONDS = 1
    # SQLite: the WAL is checkpointed this often from an OS thread, not inside
    # a commit on the event loop (stores/sqlite.py). 0: SQLite's own.
    STORE_CHECKPOINT_SECONDS = 1.0


#: setting name (no prefix) → default
DEFAULTS: dict[str, Any] = {k: v for k, v in vars(Defaults).items() if k.isupper()}

#: the socket.io-client build the pages load when SOCKETIO_CLIENT_URL is not set
SOCKETIO_CLIENT_CDN = (
    "https://cdn.jsdelivr.net/npm/socket.io-client@4.8.1/dist/socket.io.esm.min.js"
)


def read_settings(config: Mapping[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The extension's settings from an app's ``config``: each ``<prefix>NAME``
    that is set, else its default. Unknown ``<prefix>*`` keys are an error,
    so a misspelt setting does not silently keep its default."""
    if prefix:
        unknown = sorted(
            k for k in config if k.startswith(prefix) and k[len(prefix) :] not in KNOWN
        )
        if unknown:
            raise ValueError(f"unknown progresscast settings: {', '.join(unknown)}")
    settings = {name: config.get(prefix + name, default) for name, default in DEFAULTS.items()}
    prefix_url = settings["URL_PREFIX"] or ""
    if prefix_url and (not prefix_url.startswith("/") or prefix_url.endswith("/")):
        raise ValueError(
            f"{prefix}URL_PREFIX must start with '/' and not end with it: {prefix_url!r}"
        )
    token = settings["METRICS_TOKEN"]
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ValueError(f"{prefix}METRICS_TOKEN must be a string of at least 16 characters")
    password = settings["ADMIN_UI_PASSWORD"]
    if password is not None and (not isinstance(password, str) or len(password) < 12):
        raise ValueError(f"{prefix}ADMIN_UI_PASSWORD must be a string of at least 12 characters")
    for name in ("SSE_HEARTBEAT", "SSE_TOKEN_TTL"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{prefix}{name} must be a positive number of seconds")
    if settings["SSE_TOKEN_TTL"] > 3600:
        raise ValueError(f"{prefix}SSE_TOKEN_TTL is at most 3600: stream tokens are short-lived")
    backlog = settings["SSE_MAX_BACKLOG"]
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
        raise ValueError(f"{prefix}SSE_MAX_BACKLOG must be a positive number of events")
    if settings["ADMIN_UI_MODE"] not in ("production", "development"):
        raise ValueError(f"{prefix}ADMIN_UI_MODE must be 'production' or 'development'")
    return settings


#: flask-smorest's own settings, which an app may also give with our prefix
#: (PROGRESSCAST_API_TITLE...); they are not ours to check.
API_SETTINGS = frozenset(
    {
        "API_TITLE",
        "API_VERSION",
        "OPENAPI_VERSION",
        "OPENAPI_URL_PREFIX",
        "OPENAPI_JSON_PATH",
        "OPENAPI_SWAGGER_UI_PATH",
        "OPENAPI_SWAGGER_UI_URL",
        "OPENAPI_SWAGGER_UI_CONFIG",
        "OPENAPI_REDOC_PATH",
        "OPENAPI_REDOC_URL",
        "OPENAPI_RAPIDOC_PATH",
        "OPENAPI_RAPIDOC_URL",
        "API_SPEC_OPTIONS",
    }
)
KNOWN = frozenset(DEFAULTS) | API_SETTINGS
