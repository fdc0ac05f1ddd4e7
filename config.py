"""Configuration classes.

Every setting can be overridden from the environment with the prefix
``PROGRESSCAST_``: ``PROGRESSCAST_STORE_URL=sqlite:////var/lib/pc.db``,
``PROGRESSCAST_DEMO=1``, ``PROGRESSCAST_ASYNC_MODE=gevent``. Values are read
as JSON when they parse (numbers, booleans, lists), else as strings — Flask's
``Config.from_prefixed_env``. ``PROGRESSCAST_CONFIG`` picks the class:
``production`` (default), ``development`` or ``testing``.
"""

from __future__ import annotations

import os
import socket

HERE = os.path.dirname(os.path.abspath(__file__))


class Config:
    """Production defaults: nothing open that was not asked for."""

    # --- server
    ASYNC_MODE = "eventlet"  # eventlet | gevent | threading
    STORE_URL = f"sqlite:///{os.path.join(HERE, 'instance', 'progresscast.db')}"
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
    # Allowed browser origins for Socket.IO and the REST API; empty means same
    # origin only. Never "*" by default.
    CORS_ALLOWED_ORIGINS: list[str] = []
    # permessage-deflate: off, since deflating each small event once per client
    # is the dominant cost of a delivery (web/compression.py, docs/benchmarks.md).
    WEBSOCKET_COMPRESSION = False
    # Websocket frames written straight to the socket, idle readers parked in
    # eventlet's hub (web/direct_websocket.py); eventlet only, off = python-engineio's path.
    DIRECT_WEBSOCKET = True
    # Bytes a slow reader may have waiting before it is disconnected (it resumes).
    WEBSOCKET_MAX_BACKLOG = 4 * 1024 * 1024
    PING_INTERVAL = 25
    PING_TIMEOUT = 20
    # Largest Socket.IO message and HTTP body accepted, in bytes.
    MAX_HTTP_BUFFER_SIZE = 16 * 1024
    MAX_CONTENT_LENGTH = 64 * 1024

    # --- security
    # Signs access tokens (JWT HS256); at least 32 characters. Required unless
    # DEMO is on, where a random one is kept in instance/demo-secret-key.
    SECRET_KEY: str | None = None
    TOKEN_LEEWAY = 0  # seconds of clock skew tolerated on `exp`
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

    # --- jobs
    MIN_INTERVAL = 0.1  # emitter throttle, seconds
    JOIN_MAX_EVENTS = 1000  # more missed events than this: the join ack says `truncated`
    WATCH_MAX_JOBS = 200  # jobs listed in a watch_jobs ack
    BATCH_INTERVAL = 0.1  # seconds between job_events frames for watch_jobs {batch: true}
    RETENTION_SECONDS = 7 * 24 * 3600  # finished jobs older than this are pruned
    # A running job with no event for this long is failed as "stalled" (its
    # worker presumably died); checked every STALL_CHECK_SECONDS. 0 disables.
    STALL_SECONDS = 600
    STALL_CHECK_SECONDS = 10
    # A cancellation request that the job's pipeline has not acknowledged
    # within this many seconds ends the job as cancelled anyway (its pipeline
    # is gone, or deaf); checked every CANCEL_CHECK_SECONDS. 0 disables.
    CANCEL_GRACE_SECONDS = 10
    CANCEL_CHECK_SECONDS = 1
    PRUNE_EVERY_SECONDS = 600
    # SQLite: the WAL is checkpointed this often from an OS thread, not inside
    # a commit on the event loop (src/progresscast/stores/sqlite.py). 0: SQLite's own.
    STORE_CHECKPOINT_SECONDS = 1.0

    # --- demo
    DEMO = False  # PROGRESSCAST_DEMO=1: demo pipeline, demo user, no sign-in
    DEMO_USER = "demo"
    DEMO_TOKEN_TTL = 12 * 3600
    DEMO_CONCURRENCY = 3
    DEMO_PACE = 1.0  # multiplies the demo's sleeps; tests use 0.02 for ~1 s jobs

    # --- front-end assets installed by npm (never committed)
    NODE_MODULES_DIR = os.path.join(HERE, "node_modules")

    # --- REST API / OpenAPI (flask-smorest)
    API_TITLE = "progresscast"
    API_VERSION = "1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/vendor/swagger-ui/"
    API_SPEC_OPTIONS = {
        "info": {"description": "Live progress for long-running jobs. See docs/protocol.md."},
        "security": [{"bearer": []}],
    }


class DevConfig(Config):
    """Local development: the demo pipeline on, everything else as production."""

    DEMO = True


class TestConfig(Config):
    """Handler tests: threading mode (no monkey patching in pytest), no demo."""

    TESTING = True
    ASYNC_MODE = "threading"
    STORE_URL = "sqlite:///:memory:"
    PRUNE_EVERY_SECONDS = 0  # no background pruner
    STALL_SECONDS = 0  # no stall detection
    CANCEL_GRACE_SECONDS = 0  # no forced cancellation
    EXPIRY_SWEEP_SECONDS = 0  # no background sweeper (integration tests cover it)
    STORE_CHECKPOINT_SECONDS = 0  # SQLite's own checkpoints (integration tests cover ours)


CONFIGS = {"production": Config, "development": DevConfig, "testing": TestConfig}


def config_from_env() -> type[Config]:
    """The class ``PROGRESSCAST_CONFIG`` names (``production`` when unset)."""
    name = os.environ.get("PROGRESSCAST_CONFIG", "production")
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(
            f"PROGRESSCAST_CONFIG={name!r}; expected one of {', '.join(CONFIGS)}"
        ) from None
