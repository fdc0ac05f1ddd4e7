"""A small team's document importer: its own sign-in, its own page, its own
Socket.IO event (team notices), and progresscast added to it.

Every line that adds progresscast ends with ``# progresscast``: that is the
whole integration on the Python side. The page's script
(static/importer.js) draws the imports' progress bars.

Run (from this folder)::

    gunicorn -k eventlet -w 1 -b 127.0.0.1:8000 app:app
    python app.py        # the development server, on http://127.0.0.1:5000/

Settings come from the environment: ``SECRET_KEY`` (signs the session
cookie), ``PROGRESSCAST_STORE_URL`` (where jobs are kept; default a SQLite
file in ./instance), ``EXAMPLE_PACE`` (multiplies the simulated work's
sleeps; 0.1 is ten times faster), ``SOCKETIO_CLIENT_URL`` (where the page
loads the Socket.IO client from).
"""

# ruff: noqa: E402  (eventlet patches the standard library before anything imports it)
import warnings

# eventlet 0.41 announces its own deprecation on import; accept that one warning.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet

eventlet.monkey_patch()

import functools
import os
import random
import secrets
from datetime import UTC, datetime

from flask import Flask, abort, redirect, render_template, request, session, url_for
from flask_socketio import SocketIO, join_room
from werkzeug.security import check_password_hash, generate_password_hash

from progresscast.flask import ProgressCast  # progresscast

app = Flask(__name__)
app.config.update(
    SESSION_COOKIE_SAMESITE="Lax",  # the cookie stays home on other sites' POSTs
    SOCKETIO_CLIENT_URL=os.environ.get(
        "SOCKETIO_CLIENT_URL",
        "https://cdn.jsdelivr.net/npm/socket.io-client@4.8.1/dist/socket.io.esm.min.js",
    ),
)
app.secret_key = os.environ.get("SECRET_KEY")
if not app.secret_key:
    app.secret_key = secrets.token_hex(32)
    app.logger.warning(
        "SECRET_KEY is not set: using a random one, so everyone is signed out"
        " when the app restarts (and each worker would have its own)"
    )
app.config["PROGRESSCAST_STORE_URL"] = os.environ.get("PROGRESSCAST_STORE_URL")  # progresscast
socketio = SocketIO(app)
progress = ProgressCast(app, socketio)  # progresscast

# DEMO ONLY: a hard-coded user table. A real app keeps its users in a database.
USERS = {
    "alice": generate_password_hash("alice-password"),
    "bob": generate_password_hash("bob-password"),
}

#: the steps of an import, with the seconds each takes per document
STEPS = {"fetching": 0.12, "converting": 0.3, "indexing": 0.08}
PACE = float(os.environ.get("EXAMPLE_PACE", "1"))  # multiplies the sleeps (tests run fast)
DOCUMENTS_PER_IMPORT = 12


def current_user() -> str | None:
    return session.get("user")


progress.user_loader(current_user)  # progresscast


def csrf_token() -> str:
    """The token the app's forms carry (a real app would use Flask-WTF)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


app.jinja_env.globals["csrf_token"] = csrf_token


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, "this form has expired: reload the page")


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            return redirect(url_for("login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


@app.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        check_csrf()
        name = request.form.get("username", "")
        password = request.form.get("password", "")
        if name in USERS and check_password_hash(USERS[name], password):
            session.clear()  # a fresh session (and form token) for the signed-in user
            session["user"] = name
            target = request.args.get("next", "")
            # only a path on this site: never send someone elsewhere after signing in
            local = target.startswith("/") and not target.startswith(("//", "/\\"))
            return redirect(target if local else "/")
        error = "Wrong user name or password."
    return render_template("login.html", error=error), 401 if error else 200


@app.post("/logout")
def logout():
    check_csrf()
    session.clear()
    return redirect(url_for("login"))


@app.get("/")
@login_required
def index():
    return render_template("index.html", user=current_user())


def import_documents(user: str, folder: str, documents: list[str]) -> None:
    """The import itself (simulated): each step for every document in turn."""
    with progress.tracker.job(f"Import {folder}", STEPS, owner=user) as job:  # progresscast
        for step, seconds in STEPS.items():
            with job.stage(step, total=len(documents)):  # progresscast
                for doc in documents:
                    socketio.sleep(seconds * PACE * random.uniform(0.5, 1.5))
                    job.advance(message=f"{step} {doc}")  # progresscast
    app.logger.info("%s imported %d documents from %s", user, len(documents), folder)


@app.post("/import")
@login_required
def start_import():
    check_csrf()
    folder = request.form.get("folder", "").strip()[:100] or "inbox"
    documents = [f"{folder}/scan-{i:02}.pdf" for i in range(1, DOCUMENTS_PER_IMPORT + 1)]
    socketio.start_background_task(import_documents, current_user(), folder, documents)
    return redirect(url_for("index"))


# --- the app's own Socket.IO event: team notices, live on every signed-in page


@socketio.on("connect")
def on_connect(auth=None):
    if current_user() is None:
        return False  # signed-in users only
    join_room("team")


@socketio.on("notice")
def on_notice(data):
    text = str(data.get("text", "") if isinstance(data, dict) else "").strip()[:200]
    if text:
        notice = {"user": current_user(), "text": text, "at": datetime.now(UTC).isoformat()}
        socketio.emit("notice", notice, to="team")


if __name__ == "__main__":
    socketio.run(app)
