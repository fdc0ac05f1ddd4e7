"""conftest.build_app's kind of app, for real server processes: an app of
someone else's with progresscast added, in the async mode named by
``LIVE_ASYNC_MODE`` (eventlet, gevent, threading).

gunicorn: ``gunicorn -k eventlet|gevent|gthread -w 1 tests.extension.live_app:app``
(the worker patches the standard library). The development server:
``python -m tests.extension.live_app PORT``, which patches first itself.
"""

from __future__ import annotations

import os
import sys
import warnings

MODE = os.environ.get("LIVE_ASYNC_MODE", "threading")

if __name__ == "__main__":  # the development server: patch before anything else
    if MODE == "eventlet":
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        import eventlet

        eventlet.monkey_patch()
    elif MODE == "gevent":
        from gevent import monkey

        monkey.patch_all()

from flask import Flask, abort, jsonify, session  # noqa: E402
from flask_socketio import SocketIO, emit  # noqa: E402

from progresscast.flask import ProgressCast  # noqa: E402

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["LIVE_SECRET_KEY"],
    PROGRESSCAST_STORE_URL=os.environ["LIVE_STORE_URL"],
    PROGRESSCAST_SERVER_ID=os.environ.get("LIVE_SERVER_ID", "live"),
)
# An app that opened its Socket.IO to every origin (Engine.IO's CORS check):
# progresscast still refuses cross-site connects signed in by cookie.
# With LIVE_MESSAGE_QUEUE, its own message queue: workers publish through it.
socketio = SocketIO(
    app,
    async_mode=MODE,
    cors_allowed_origins="*",
    message_queue=os.environ.get("LIVE_MESSAGE_QUEUE") or None,
)
progress = ProgressCast(app, socketio)


@progress.user_loader
def current_user():
    return session.get("user_id")


@app.post("/login/<user>")
def login(user: str):
    session["user_id"] = user
    return "", 204


@app.post("/work")
def work():
    """Start a short pipeline for the signed-in user, in this process."""
    user = session.get("user_id") or abort(401)
    job = progress.tracker.job("import", [("fetch", 1), ("parse", 3)], owner=user)

    def run() -> None:
        with job:
            for name in ("fetch", "parse"):
                with job.stage(name, total=5):
                    for _ in range(5):
                        socketio.sleep(0.02)
                        job.advance()

    socketio.start_background_task(run)
    return jsonify(job_id=job.job_id)


@socketio.on("notice")
def notice(data):
    """The app's own event: a notice every connected browser sees."""
    emit("notice", {"text": data["text"], "from": session.get("user_id")}, broadcast=True)


if __name__ == "__main__":
    socketio.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), allow_unsafe_werkzeug=True, debug=False
    )
