"""``ProgressCast``: live job progress added to a Flask app and its ``SocketIO``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import socketio as python_socketio
from flask import Flask
from flask_cors import CORS
from flask_socketio import SocketIO
from socketio.packet import Packet

from progresscast import ProgressTracker, open_store
from progresscast.protocol import NAMESPACE
from progresscast.ratelimit import BucketMap
from progresscast.tokens import check_secret

from .api import register_api
from .auth import Principal, principal_from
from .background import start_background_tasks
from .batching import BatchingManager, BatchingRedisManager, client_manager
from .compression import NoWebsocketCompression
from .direct_websocket import EventletInput, install_direct_websockets
from .jsonutil import TolerantPacket
from .pages import register_pages
from .settings import PREFIX, read_settings
from .sockets import ProgressNamespace

log = logging.getLogger(__name__)


class ProgressCast:
    """Live progress for an app's long jobs: the ``/progress`` Socket.IO
    namespace on the app's own ``SocketIO``, the REST API and the pages under
    ``PROGRESSCAST_URL_PREFIX``, and :attr:`tracker` to run pipelines with.

    ::

        socketio = SocketIO(app)
        progress = ProgressCast(app, socketio)

        @progress.user_loader
        def current_user_id():
            return session.get("user_id")

    Settings are ``PROGRESSCAST_*`` keys of ``app.config``
    (``config_prefix`` changes the prefix; the standalone server uses "").
    The ``SocketIO`` must already be set up for the app (``SocketIO(app)``
    or ``socketio.init_app(app)``) when ``init_app`` runs.
    """

    def __init__(
        self,
        app: Flask | None = None,
        socketio: SocketIO | None = None,
        *,
        config_prefix: str = PREFIX,
    ) -> None:
        self.config_prefix = config_prefix
        self._user_loader: Callable[[], Any] | None = None
        self._token_loader: Callable[[], str | None] | None = None
        self.app: Flask | None = None
        self.socketio: SocketIO | None = None
        #: the app's settings, without their prefix (settings.py lists them)
        self.settings: dict[str, Any] = {}
        self._tracker: ProgressTracker | None = None
        self.namespace: ProgressNamespace | None = None
        self.token_secret: str | None = None
        self.message_queue_url: str | None = None
        #: set by :meth:`close`: the background sweeps stop
        self.closed = False
        if app is not None:
            if socketio is None:
                raise TypeError("ProgressCast(app, socketio): pass the app's SocketIO too")
            self.init_app(app, socketio)

    # ------------------------------------------------------------------ hooks

    def user_loader(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Register the app's notion of who is signed in (decorator).

        ``fn()`` runs for HTTP requests and Socket.IO connects that carry no
        bearer token, inside the request, so ``session`` and Flask-Login's
        ``current_user`` work. It returns None (nobody), a user id, or a
        :class:`Principal` (``Principal(id, admin=True)`` for an admin).
        """
        self._user_loader = fn
        return fn

    def token_loader(self, fn: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register where the built-in pages get a bearer token (decorator);
        without one they connect as the app's signed-in user (its cookie)."""
        self._token_loader = fn
        return fn

    def load_user(self) -> Principal | None:
        """The signed-in caller according to the ``user_loader``, if any."""
        return principal_from(self._user_loader()) if self._user_loader else None

    def page_token(self) -> str | None:
        """A bearer token for the built-in pages, from the ``token_loader``."""
        return self._token_loader() if self._token_loader else None

    # ------------------------------------------------------------------ setup

    @property
    def tracker(self) -> ProgressTracker:
        """The app's :class:`~progresscast.ProgressTracker`."""
        if self._tracker is None:
            raise RuntimeError("ProgressCast.init_app(app, socketio) has not run yet")
        return self._tracker

    def init_app(self, app: Flask, socketio: SocketIO) -> None:
        """Add progresscast to ``app`` and its (already set up) ``socketio``."""
        if socketio.server is None:
            raise RuntimeError(
                "ProgressCast needs the app's SocketIO set up first:"
                " SocketIO(app), or socketio.init_app(app), before ProgressCast"
            )
        if "progresscast" in app.extensions:
            raise RuntimeError("progresscast is already added to this app")
        self.app, self.socketio = app, socketio
        settings = self.settings = read_settings(app.config, self.config_prefix)
        self.token_secret = self._token_secret(app)
        store_url = settings["STORE_URL"] or "sqlite:///" + os.path.join(
            app.instance_path, "progresscast.db"
        )
        if store_url.startswith("sqlite:///") and ":memory:" not in store_url:
            os.makedirs(os.path.dirname(os.path.abspath(store_url[10:])), exist_ok=True)
        self._tracker = ProgressTracker(
            open_store(store_url),
            emitter=socketio,
            namespace=NAMESPACE,
            min_interval=settings["MIN_INTERVAL"],
            runner=settings["SERVER_ID"],
        )
        app.extensions["progresscast"] = self
        self.http_buckets = BucketMap(settings["HTTP_RATE"], settings["HTTP_BURST"])

        register_api(app, settings["URL_PREFIX"], self.config_prefix)
        register_pages(app, settings["URL_PREFIX"])
        if settings["CORS_ALLOWED_ORIGINS"]:  # else same origin only (no CORS headers)
            CORS(
                app,
                resources={
                    settings["URL_PREFIX"] + "/api/*": {"origins": settings["CORS_ALLOWED_ORIGINS"]}
                },
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["X-Pagination"],
            )

        self.namespace = ProgressNamespace(NAMESPACE, settings)
        socketio.on_namespace(self.namespace)
        self._install_manager(socketio)
        server = socketio.server
        if server.packet_class is Packet:  # not when the app chose another serializer
            server.packet_class = TolerantPacket
        if socketio.async_mode == "eventlet":
            if settings["DIRECT_WEBSOCKET"]:
                install_direct_websockets(server.eio, settings["WEBSOCKET_MAX_BACKLOG"])
            # Outermost, so the Engine.IO middleware sees what these leave.
            app.wsgi_app = EventletInput(app.wsgi_app)
        if not settings["WEBSOCKET_COMPRESSION"]:
            app.wsgi_app = NoWebsocketCompression(app.wsgi_app)
        start_background_tasks(self)

    def close(self) -> None:
        """Stop the background sweeps and release the store (tests, app teardown)."""
        self.closed = True
        if self._tracker is not None:
            self._tracker.close()

    def _token_secret(self, app: Flask) -> str | None:
        secret = self.settings["SECRET_KEY"] or app.config.get("SECRET_KEY")
        try:
            return check_secret(secret) if secret else None
        except ValueError as exc:
            log.warning("progresscast: bearer tokens are off: %s", exc)
            return None

    def _install_manager(self, socketio: SocketIO) -> None:
        """Our client manager (one encoding per room, dashboard batching,
        queue subscription state) in place of python-socketio's default,
        on the app's message queue if it has one."""
        server = socketio.server
        manager = server.manager
        settings = self.settings
        url = settings["MESSAGE_QUEUE_URL"]
        if isinstance(manager, BatchingManager | BatchingRedisManager):
            ours = manager  # the app built it with progresscast.flask.client_manager
            url = getattr(manager, "redis_url", None)
        elif type(manager) is python_socketio.RedisManager and not server.manager_initialized:
            if url and url != manager.redis_url:
                raise ValueError(
                    f"{self.config_prefix}MESSAGE_QUEUE_URL is not the SocketIO's message_queue"
                )
            url = manager.redis_url
            ours = client_manager(url, manager.channel, settings["BATCH_INTERVAL"])
        elif type(manager) is python_socketio.Manager and not server.manager_initialized:
            ours = client_manager(url, settings["SOCKETIO_CHANNEL"], settings["BATCH_INTERVAL"])
        else:
            # Another manager (Kombu, ZeroMQ, the app's own): keep it;
            # watch_jobs {batch: true} is then delivered unbatched.
            log.info("progresscast: keeping the app's %s", type(manager).__name__)
            self.message_queue_url = url
            return
        if ours is not manager:
            ours.set_server(server)
            server.manager = ours
        self.message_queue_url = url
        if url and not server.manager_initialized:
            # Subscribe now, not at the first connection (python-socketio's
            # default): until then, events from workers and other instances
            # are not delivered here, and joins wait (batching.py).
            server.manager_initialized = True
            ours.initialize()
