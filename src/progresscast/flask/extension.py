"""``ProgressCast``: live job progress added to a Flask app and its ``SocketIO``."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import socketio as python_socketio
from engineio import json as engineio_json
from flask import Flask, current_app, has_app_context
from flask_cors import CORS
from flask_socketio import SocketIO
from socketio.packet import Packet

from progresscast import ProgressTracker, open_store
from progresscast.protocol import NAMESPACE
from progresscast.ratelimit import BucketMap
from progresscast.tokens import VerifiedTokens, check_secret

from . import event_lane, transport
from .admin import instrument_admin_ui, register_admin
from .api import register_api
from .auth import Principal, principal_from
from .background import start_background_tasks
from .batching import BatchingRedisManager, batches, client_manager
from .compression import NoWebsocketCompression
from .in_order import JobOrder
from .jsonutil import SocketJSON, TolerantPacket
from .metrics import Metrics, register_metrics
from .pages import register_pages
from .settings import PREFIX, read_settings
from .sockets import ProgressNamespace
from .sse import SSEHub
from .streams import register_streams

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
    or ``socketio.init_app(app)``) when ``init_app`` runs. One ``ProgressCast``
    may serve several apps (an app factory): each gets its own tracker and
    settings (:class:`AppProgress`, in ``app.extensions["progresscast"]``);
    the hooks are shared.
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
        self._apps: list[AppProgress] = []
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

    @property
    def has_user_loader(self) -> bool:
        return self._user_loader is not None

    # ------------------------------------------------------ the app's state

    def for_app(self, app: Flask | None = None) -> AppProgress:
        """What this extension holds for ``app``: the current app's, or the
        only app's when there is one (a background task has no app context)."""
        if app is None and has_app_context():
            app = current_app._get_current_object()
        if app is not None:
            state = app.extensions.get("progresscast")
            if state is None or state.extension is not self:
                raise RuntimeError("this ProgressCast was not added to this app (init_app)")
            return state
        if len(self._apps) == 1:
            return self._apps[0]
        raise RuntimeError(
            "ProgressCast.init_app(app, socketio) has not run yet"
            if not self._apps
            else "this ProgressCast serves several apps: use it inside an app context"
        )

    @property
    def tracker(self) -> ProgressTracker:
        """The app's :class:`~progresscast.ProgressTracker`."""
        return self.for_app().tracker

    @property
    def settings(self) -> dict[str, Any]:
        """The app's settings, without their prefix (settings.py lists them)."""
        return self.for_app().settings

    @property
    def token_secret(self) -> str | None:
        """The secret the app's bearer tokens are signed with (for
        ``progresscast.tokens.issue_token``); None when tokens are off."""
        return self.for_app().token_secret

    def close(self) -> None:
        """Stop every app's background sweeps and release their stores."""
        for state in list(self._apps):
            state.close()

    # ------------------------------------------------------------------ setup

    def init_app(self, app: Flask, socketio: SocketIO) -> None:
        """Add progresscast to ``app`` and its (already set up) ``socketio``."""
        if socketio.server is None:
            raise RuntimeError(
                "ProgressCast needs the app's SocketIO set up first:"
                " SocketIO(app), or socketio.init_app(app), before ProgressCast"
            )
        if "progresscast" in app.extensions:
            raise RuntimeError("progresscast is already added to this app")
        if any(state.socketio is socketio for state in self._apps):
            # Flask-SocketIO serves only the app it was last set up for.
            raise RuntimeError(
                "this SocketIO already serves another app with progresscast: give each app"
                " its own SocketIO, or close() the other app's progresscast first"
            )
        settings = read_settings(app.config, self.config_prefix)
        store_url = settings["STORE_URL"] or "sqlite:///" + os.path.join(
            app.instance_path, "progresscast.db"
        )
        if store_url.startswith("sqlite:///") and ":memory:" not in store_url:
            os.makedirs(os.path.dirname(os.path.abspath(store_url[10:])), exist_ok=True)
        tracker = ProgressTracker(
            open_store(store_url),
            emitter=socketio,
            namespace=NAMESPACE,
            min_interval=settings["MIN_INTERVAL"],
            runner=settings["SERVER_ID"],
            history_runs=settings["ETA_HISTORY_RUNS"],
            history_days=settings["ETA_HISTORY_DAYS"],
        )
        try:
            message_queue_url = _install_manager(socketio, settings, self.config_prefix)
            manager = socketio.server.manager
            if isinstance(manager, BatchingRedisManager) and manager.order is None:
                # events from several publishers, back in seq order (in_order.py)
                manager.order = JobOrder(
                    lambda job_id, since, limit: tracker.events_page(job_id, since, limit).events
                )
        except Exception:
            tracker.close()
            raise
        state = AppProgress(self, app, socketio, settings, tracker)
        state.token_secret = _token_secret(settings, app)
        if state.token_secret is not None:
            state.tokens = VerifiedTokens(
                state.token_secret,
                leeway=settings["TOKEN_LEEWAY"],
                size=min(settings["MAX_CONNECTIONS"], 20_000),  # valid tokens only
            )
        state.message_queue_url = message_queue_url
        if settings["METRICS"]:
            state.metrics = tracker.observer = Metrics(state)
        app.extensions["progresscast"] = state
        self._apps.append(state)

        api = register_api(app, settings["URL_PREFIX"], self.config_prefix)
        register_admin(api, settings["URL_PREFIX"])
        register_streams(app, settings["URL_PREFIX"])
        register_pages(app, settings["URL_PREFIX"])
        register_metrics(app, settings["URL_PREFIX"])
        origins = settings["CORS_ALLOWED_ORIGINS"]
        if origins:  # else same origin only (no CORS headers)
            CORS(
                app,
                resources={settings["URL_PREFIX"] + "/api/*": {"origins": origins}},
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["X-Pagination"],
                # The listed origins may send the user's cookie; never every site.
                supports_credentials="*" not in origins,
            )

        state.namespace = ProgressNamespace(NAMESPACE, settings)
        state.namespace.metrics = state.metrics
        state.sse = SSEHub(
            socketio.server.eio.create_event, settings["SSE_MAX_BACKLOG"], state.metrics
        )
        state.namespace.sse = state.sse
        socketio.on_namespace(state.namespace)
        server = socketio.server
        if batches(server.manager):
            server.manager.metrics = state.metrics
            server.manager.sse = state.sse
            # admin disconnects and notices, from this or any other server
            server.manager.admin_handler = state.namespace.run_admin
            if state.token_secret and hasattr(server.manager, "admin_key"):
                # commands between servers are signed (batching.py)
                server.manager.admin_key = hmac.new(
                    state.token_secret.encode(), b"progresscast admin command", hashlib.sha256
                ).digest()
        state.admin_ui = instrument_admin_ui(socketio, settings)
        if server.packet_class is Packet:  # not when the app chose another serializer
            server.packet_class = _tolerant_packet()
        # Direct writes and parked readers under eventlet and gevent, one
        # pinger for every connection in any mode (transport/). The loop's
        # middleware goes outside the Engine.IO one, which sees what it leaves.
        app.wsgi_app = transport.install(
            server.eio,
            socketio.async_mode,
            app.wsgi_app,
            enabled=settings["DIRECT_WEBSOCKET"],
            max_backlog=settings["WEBSOCKET_MAX_BACKLOG"],
        )
        if transport.is_installed(server.eio):
            # Requests in one pass (event_lane.py), on the same terms as the
            # transport: DIRECT_WEBSOCKET on and versions it was tested with.
            event_lane.install(server)
        if not settings["WEBSOCKET_COMPRESSION"]:
            app.wsgi_app = NoWebsocketCompression(app.wsgi_app)
        start_background_tasks(state)


class AppProgress:
    """What :class:`ProgressCast` holds for one app
    (``app.extensions["progresscast"]``, ``current_progress()``)."""

    def __init__(
        self,
        extension: ProgressCast,
        app: Flask,
        socketio: SocketIO,
        settings: dict[str, Any],
        tracker: ProgressTracker,
    ) -> None:
        self.extension = extension
        self.app = app
        self.socketio = socketio
        #: the app's settings, without their prefix (settings.py lists them)
        self.settings = settings
        self.tracker = tracker
        self.namespace: ProgressNamespace | None = None
        #: the open SSE streams (sse.py); live events reach them through our
        #: client manager only (another manager: streams get no live events)
        self.sse: SSEHub | None = None
        self.token_secret: str | None = None
        #: bearer tokens verified with ``token_secret`` (tokens.VerifiedTokens)
        self.tokens: VerifiedTokens | None = None
        self.message_queue_url: str | None = None
        self.queue_probe: Any = None  # a Redis client for /readyz, made at its first call
        #: the app's Prometheus metrics (metrics.py); None when METRICS is off
        self.metrics: Metrics | None = None
        #: python-socketio's Admin UI instrumentation, when ADMIN_UI_PASSWORD is set
        self.admin_ui: Any = None
        self.http_buckets = BucketMap(settings["HTTP_RATE"], settings["HTTP_BURST"])
        #: set by :meth:`close`: the background sweeps stop
        self.closed = False

    def load_user(self) -> Principal | None:
        """The signed-in caller according to the ``user_loader``, if any."""
        loader = self.extension._user_loader
        return principal_from(loader()) if loader else None

    def page_token(self) -> str | None:
        """A bearer token for the built-in pages, from the ``token_loader``."""
        loader = self.extension._token_loader
        return loader() if loader else None

    def close(self) -> None:
        """Stop the background sweeps and release the store (tests, app
        teardown); the extension forgets this app."""
        self.closed = True
        if self.admin_ui is not None:
            self.admin_ui.shutdown()  # its stats task
        self.tracker.close()
        if self.queue_probe is not None:
            self.queue_probe.close()
        if self in self.extension._apps:
            self.extension._apps.remove(self)


def _token_secret(settings: dict[str, Any], app: Flask) -> str | None:
    """The secret bearer tokens are signed with, or None: tokens are off."""
    secret = settings["SECRET_KEY"] or app.config.get("SECRET_KEY")
    try:
        return check_secret(secret) if secret else None
    except ValueError as exc:
        log.warning("progresscast: bearer tokens are off: %s", exc)
        return None


def _tolerant_packet() -> type[Packet]:
    """Our packet class, with the app's ``json=`` module if it gave SocketIO one."""
    if Packet.json in (engineio_json, json, SocketJSON):  # python-socketio sets it process-wide
        return TolerantPacket
    return type("AppJSONTolerantPacket", (TolerantPacket,), {"json": Packet.json})


def _install_manager(socketio: SocketIO, settings: dict[str, Any], prefix: str) -> str | None:
    """Our client manager (one encoding per room, dashboard batching,
    queue subscription state) in place of python-socketio's default, on the
    app's message queue if it has one. Returns the message queue's URL."""
    server = socketio.server
    manager = server.manager
    url = settings["MESSAGE_QUEUE_URL"]
    if batches(manager):
        ours = manager  # the app built it with progresscast.flask.client_manager
        url = getattr(manager, "redis_url", None)
    elif type(manager) is python_socketio.RedisManager and not server.manager_initialized:
        if url and url != manager.redis_url:
            raise ValueError(f"{prefix}MESSAGE_QUEUE_URL is not the SocketIO's message_queue")
        url = manager.redis_url
        ours = client_manager(url, manager.channel, settings["BATCH_INTERVAL"])
    elif type(manager) is python_socketio.Manager and not server.manager_initialized:
        ours = client_manager(url, settings["SOCKETIO_CHANNEL"], settings["BATCH_INTERVAL"])
    else:
        # Another manager (Kombu, ZeroMQ, the app's own): keep it;
        # watch_jobs {batch: true} is then delivered unbatched.
        log.info("progresscast: keeping the app's %s", type(manager).__name__)
        return url
    if ours is not manager:
        ours.set_server(server)
        server.manager = ours
    if url and not server.manager_initialized:
        # Subscribe now, not at the first connection (python-socketio's
        # default): until then, events from workers and other instances
        # are not delivered here, and joins wait (batching.py).
        server.manager_initialized = True
        ours.initialize()
    return url
