"""The standalone progresscast server: an app built on the Flask extension.

``create_app(config)`` builds one app with its own ``SocketIO`` and
:class:`~progresscast.flask.ProgressCast`, so tests can build as many
isolated apps as they like. What it adds to the extension: its settings
from ``config.py`` and the environment, signing in with bearer tokens only
(JWT), demo mode, the API docs page and the vendored browser files, and
JSON for every error of the app.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_socketio import SocketIO

from config import Config, config_from_env
from progresscast.flask import ProgressCast, client_manager, get_tracker, socket_origins
from progresscast.flask.errors import register_http_errors
from progresscast.flask.jsonutil import SocketJSON, StrictJSONProvider, TolerantPacket

from .demo import add_demo, resolve_secret
from .vendor import vendor


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
    # No app static folder: the extension's assets are served at /static.
    app = ProgressFlask(__name__, instance_path=instance, static_folder=None)
    if isinstance(config, dict):
        app.config.from_object(config_from_env())
        app.config.update(config)
    else:
        app.config.from_object(config or config_from_env())
    app.config.from_prefixed_env("PROGRESSCAST")
    resolve_secret(app)

    socketio = SocketIO(
        app,
        async_mode=app.config["ASYNC_MODE"],
        # The extension's manager (delivery plus dashboard batching), on
        # Redis when MESSAGE_QUEUE_URL is set.
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
        # A request runs in the green thread that received it (the
        # connection's receiver), not in one more started per request: a
        # flood of 19,000 pings made 19,000 extra green threads. A handler
        # that blocks (join_job reading the store) delays that one
        # connection's next requests only, as it would from one client.
        async_handlers=False,
    )
    # Settings without a prefix, all URLs at the root, as before the extension.
    progress = ProgressCast(app, socketio, config_prefix="")
    app.register_blueprint(vendor)
    register_http_errors(app)  # the whole app is ours: JSON for every error
    add_demo(app, progress)
    return app


__all__ = ["create_app", "get_tracker"]
