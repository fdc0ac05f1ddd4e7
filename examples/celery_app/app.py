"""A Flask app that sends Celery tasks and shows their progress live.

Every visitor signs in with a name (DEMO ONLY: no password), presses
**Transcode a video**, and watches the job's bar, stage, counts and ETA on the
same page until the Celery worker ends it; **Cancel** stops the task at its
next step. The lines that are about progresscast end with ``# progresscast``.

Run (from this folder, with redis-server on 127.0.0.1:6379)::

    celery -A tasks worker --loglevel INFO
    gunicorn -k eventlet -w 1 -b 127.0.0.1:8000 app:app

Settings come from the environment: ``SECRET_KEY`` (signs the session
cookie), ``REDIS_URL`` and the others that tasks.py reads,
``SOCKETIO_CLIENT_URL`` (where the page loads the Socket.IO client from).
"""

# ruff: noqa: E402  (eventlet patches the standard library before anything imports it)
import warnings

# eventlet 0.41 announces its own deprecation on import; accept that one warning.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet

eventlet.monkey_patch()

import os
import secrets

from flask import Flask, abort, redirect, render_template, request, session, url_for
from flask_socketio import SocketIO
from tasks import celery_app, transcode

from progresscast.celery import progress_group  # progresscast
from progresscast.flask import ProgressCast  # progresscast

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
app.config.update(
    SESSION_COOKIE_SAMESITE="Lax",
    SOCKETIO_CLIENT_URL=os.environ.get(
        "SOCKETIO_CLIENT_URL",
        "https://cdn.jsdelivr.net/npm/socket.io-client@4.8.1/dist/socket.io.esm.min.js",
    ),
    PROGRESSCAST_STORE_URL=celery_app.conf.progresscast_store_url,  # progresscast
)
# The worker's events reach this app's Socket.IO server through the message queue.
socketio = SocketIO(app, message_queue=celery_app.conf.progresscast_message_queue_url)
progress = ProgressCast(app, socketio)  # progresscast


@progress.user_loader  # progresscast
def current_user() -> str | None:
    return session.get("user")


@app.route("/", methods=["GET", "POST"])
def index():
    if request.method == "POST":  # DEMO ONLY: sign in as anyone, no password
        name = request.form.get("name", "").strip()[:40]
        if name:
            session["user"] = name
        return redirect(url_for("index"))
    return render_template("index.html", user=current_user())


def signed_in_json() -> tuple[str, dict]:
    """The signed-in user and the request's JSON object, or a 401/415/400.
    A JSON body: another site's page cannot send one without CORS allowing it."""
    user = current_user() or abort(401)
    if not request.is_json:
        abort(415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400)
    return user, body


@app.post("/videos")
def start_transcode():
    user, body = signed_in_json()
    if not isinstance(body.get("frames", 240), int):
        abort(400)
    video = str(body.get("video") or "holiday.mp4")[:100]
    frames = min(max(body.get("frames", 240), 1), 100_000)
    result = transcode.apply_async(  # progresscast: the job is created (queued) here
        (video, frames), progress={"owner": user, "name": f"Transcode {video}"}
    )
    return {"job_id": result.id}, 202  # the task's id is the job's id


@app.post("/imports")
def start_import():
    """A Celery group: one transcode per video, one parent job for them all."""
    user, body = signed_in_json()
    count = body.get("videos", 3)
    if not isinstance(count, int) or not 1 <= count <= 20:
        abort(400)
    videos = [f"clip-{i:02}.mp4" for i in range(1, count + 1)]
    result = progress_group(  # progresscast: the parent and a child job per task
        [transcode.s(video, 120).set(progress={"name": video}) for video in videos],
        owner=user,
        name=f"Import {count} videos",
    )
    return {"job_id": result.id}, 202  # the group's id is the parent job's id


if __name__ == "__main__":
    socketio.run(app)
