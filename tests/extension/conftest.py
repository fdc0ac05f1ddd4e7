"""An app of someone else's, with progresscast added: its own session
sign-in, its own Socket.IO event, ``ProgressCast(app, socketio)``.
Threading mode and Flask-SocketIO's test clients; live_app.py is the same
app for real server processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, abort, jsonify, session
from flask_socketio import SocketIO, emit

from progresscast.flask import Principal, ProgressCast
from tests.harness import SECRET

NS = "/progress"


def build_app(tmp_path, *, user_loader: bool = True, **config: Any) -> Flask:
    """The app: /login/<user> signs in (``root`` is an admin), /work starts
    a job for the signed-in user, ``notice`` is its own Socket.IO event."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY=SECRET,
        PROGRESSCAST_STORE_URL=f"sqlite:///{tmp_path / 'progress.db'}",
        PROGRESSCAST_PRUNE_EVERY_SECONDS=0,
        PROGRESSCAST_STALL_SECONDS=0,
        PROGRESSCAST_CANCEL_GRACE_SECONDS=0,
        PROGRESSCAST_EXPIRY_SWEEP_SECONDS=0,
        PROGRESSCAST_STORE_CHECKPOINT_SECONDS=0,
    )
    app.config.update(config)
    socketio = SocketIO(app, async_mode="threading")
    progress = ProgressCast(app, socketio)

    if user_loader:

        @progress.user_loader
        def current_user():
            user = session.get("user_id")
            return Principal(user, admin=True) if user == "root" else user

    @app.post("/login/<user>")
    def login(user):
        session["user_id"] = user
        return "", 204

    @app.post("/work")
    def work():
        user = session.get("user_id") or abort(401)
        state = progress.tracker.create_job("import", ["fetch", "parse"], owner=user)
        return jsonify(job_id=state.job_id)

    @app.get("/own")
    def own_page():
        abort(404)  # the app's own error page, not progresscast's JSON

    @socketio.on("notice")
    def notice(data):
        emit("notice", {"text": data["text"], "from": session.get("user_id")}, broadcast=True)

    return app


@pytest.fixture
def make_app(tmp_path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**kwargs: Any) -> Flask:
        app = build_app(tmp_path / str(len(apps)), **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["progresscast"].close()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


def signed_in(app: Flask, user: str):
    """Flask's test client with ``user``'s session cookie."""
    client = app.test_client()
    assert client.post(f"/login/{user}").status_code == 204
    return client


#: what a browser on the app's own pages sends with a Socket.IO handshake
SAME_ORIGIN = {"Origin": "http://localhost"}


def socket_for(app: Flask, http=None, namespace: str = NS, **kwargs: Any):
    """A Socket.IO test client that sends ``http``'s cookies (its session),
    from the app's own origin unless ``headers`` say otherwise."""
    socketio = app.extensions["socketio"]
    kwargs.setdefault("headers", SAME_ORIGIN)
    return socketio.test_client(app, namespace=namespace, flask_test_client=http, **kwargs)
