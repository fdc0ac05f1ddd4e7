"""Configuration of the standalone server.

Every setting can be overridden from the environment with the prefix
``PROGRESSCAST_``: ``PROGRESSCAST_STORE_URL=sqlite:////var/lib/pc.db``,
``PROGRESSCAST_DEMO=1``, ``PROGRESSCAST_ASYNC_MODE=gevent``. Values are read
as JSON when they parse (numbers, booleans, lists), else as strings — Flask's
``Config.from_prefixed_env``. ``PROGRESSCAST_CONFIG`` picks the class:
``production`` (default), ``development`` or ``testing``.
"""

from __future__ import annotations

import os

from progresscast.flask.settings import Defaults

HERE = os.path.dirname(os.path.abspath(__file__))


class Config(Defaults):
    """Production defaults: nothing open that was not asked for. Every
    setting of the extension (progresscast/flask/settings.py) plus the
    standalone server's own below."""

    # --- the extension's, as the standalone server uses them
    URL_PREFIX = ""  # pages, API and assets at the root
    # The repository's instance folder, whatever INSTANCE_PATH says (as ever).
    STORE_URL = f"sqlite:///{os.path.join(HERE, 'instance', 'progresscast.db')}"
    SOCKETIO_CLIENT_URL = "/vendor/socket.io/socket.io.esm.min.js"  # from node_modules (npm)

    # --- server
    ASYNC_MODE = "eventlet"  # eventlet | gevent | threading
    PING_INTERVAL = 25
    PING_TIMEOUT = 20
    # Largest Socket.IO message and HTTP body accepted, in bytes.
    MAX_HTTP_BUFFER_SIZE = 16 * 1024
    MAX_CONTENT_LENGTH = 64 * 1024

    # --- demo
    DEMO = False  # PROGRESSCAST_DEMO=1: demo pipeline, demo user, no sign-in
    DEMO_USER = "demo"
    DEMO_TOKEN_TTL = 12 * 3600
    DEMO_CONCURRENCY = 3
    DEMO_PACE = 1.0  # multiplies the demo's sleeps; tests use 0.02 for ~1 s jobs

    # --- front-end assets installed by npm (never committed)
    NODE_MODULES_DIR = os.path.join(HERE, "node_modules")

    # --- REST API docs (flask-smorest's settings; the extension sets the rest)
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/vendor/swagger-ui/"


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
