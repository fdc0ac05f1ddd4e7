"""The progresscast server: Flask + Flask-SocketIO wired to the library.

``create_app(config)`` builds one app with its own ``SocketIO`` and tracker,
so tests can build as many isolated apps as they like.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from flask_cors import CORS
from flask_socketio import SocketIO

from config import Config, config_from_env
from progresscast import ProgressTracker, open_store
from progresscast.protocol import NAMESPACE

from .api import register_api
from .auth import resolve_secret
from .background import start_background_tasks
from .batching import client_manager
from .compression import NoWebsocketCompression
from .context import get_tracker
from .direct_websocket import EventletInput, install_direct_websockets
from .jsonutil import SocketJSON, StrictJSONProvider, TolerantPacket
from .pages import pages
from .sockets import ProgressNamespace

log = logging.getLogger(__name__)


def socket_origins(origins: list[str]):
    """Engine.IO's ``cors_allowed_origins``: the server's own origin, plus
    ``origins`` when configured (a bare list would lock out our own pages)."""
    if not origins:
        return None
    if "*" in origins:
        return "*"
    allowed = set(origins)

    def allow(origin: str | None, environ: dict) -> bool:
        if origin is None or origin in allowed:
            return True
        host = environ.get("HTTP_X_FORWARDED_HOST", environ.get("HTTP_HOST", ""))
        scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ.get("wsgi.url_scheme", "http"))
        return origin in (
            f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}",
            f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}",
        )

    return allow


class ProgressFlask(Flask):
    json_provider_class = StrictJSONProvider


def create_app(config: type[Config] | dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` is a Config class or a dict of overrides;
    ``PROGRESSCAST_*`` environment variables win over both."""
    # The instance folder (demo secret, default SQLite file) can move, e.g. in tests.
    instance = (
        (config.get("INSTANCE_PATH") if isinstance(config, dict) else None)
        or os.environ.get("PROGRESSCAST_INSTANCE_PATH")
        or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "instance"))
    )
    app = ProgressFlask(__name__, instance_path=instance)
    if isinstance(config, dict):
        app.config.from_object(config_from_env())
        app.config.update(config)
    else:
        app.config.from_object(config or config_from_env())
    app.config.from_prefixed_env("PROGRESSCAST")
    resolve_secret(app)

    socketio = SocketIO()
    tracker = ProgressTracker(
        open_store(app.config["STORE_URL"]),
        emitter=socketio,
        namespace=NAMESPACE,
        min_interval=app.config["MIN_INTERVAL"],
        runner=app.config["SERVER_ID"],
    )
    app.extensions["progresscast"] = tracker

    register_api(app)
    app.register_blueprint(pages)
    namespace = ProgressNamespace(NAMESPACE, app.config)
    socketio.on_namespace(namespace)
    origins = app.config["CORS_ALLOWED_ORIGINS"]
    if origins:  # only the configured origins; same-origin (no CORS headers) otherwise
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Pagination"],
        )
    socketio.init_app(
        app,
        async_mode=app.config["ASYNC_MODE"],
        # Our manager (delivery plus dashboard batching), on Redis when
        # MESSAGE_QUEUE_URL is set, instead of Flask-SocketIO's default.
        client_manager=client_manager(
            app.config["MESSAGE_QUEUE_URL"],
            app.config["SOCKETIO_CHANNEL"],
            app.config["BATCH_INTERVAL"],
        ),
        # Same origin only by default (Engine.IO's None); never "*" unless configured.
        cors_allowed_origins=socket_origins(app.config["CORS_ALLOWED_ORIGINS"]),
        ping_interval=app.config["PING_INTERVAL"],
        ping_timeout=app.config["PING_TIMEOUT"],
        max_http_buffer_size=app.config["MAX_HTTP_BUFFER_SIZE"],
        json=SocketJSON,
        serializer=TolerantPacket,
    )
    if app.config["MESSAGE_QUEUE_URL"]:
        # Subscribe now, not at the first connection (python-socketio's
        # default): until then, events from workers and other instances are
        # not delivered here, and joins wait (web/batching.py).
        socketio.server.manager_initialized = True
        socketio.server.manager.initialize()
    if app.config["DIRECT_WEBSOCKET"]:
        install_direct_websockets(socketio.server.eio, app.config["WEBSOCKET_MAX_BACKLOG"])
    # Outermost, so the Engine.IO middleware sees what these leave.
    if socketio.async_mode == "eventlet":
        app.wsgi_app = EventletInput(app.wsgi_app)
    if not app.config["WEBSOCKET_COMPRESSION"]:
        app.wsgi_app = NoWebsocketCompression(app.wsgi_app)
    start_background_tasks(app, socketio, tracker, namespace)
    return app


__all__ = ["create_app", "get_tracker"]
