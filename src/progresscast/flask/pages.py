"""The dashboard and job pages, the JS client and the health checks, under
the extension's URL prefix.

- ``<prefix>/`` and ``<prefix>/jobs/<id>``: the pages (``PAGES`` turns them off);
- ``<prefix>/static/progresscast.js``: the JS client, for the app's own pages;
- ``<prefix>/healthz`` and ``<prefix>/readyz``: for load balancers.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, abort, jsonify, make_response, render_template, url_for

from progresscast import ProgressCastError, Unavailable
from progresscast.protocol import JOB_ID_RE

from .context import current_progress
from .settings import SOCKETIO_CLIENT_CDN as _CDN

log = logging.getLogger(__name__)

pages = Blueprint(
    "progresscast",
    __name__,
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)


def register_pages(app: Flask, url_prefix: str) -> None:
    app.register_blueprint(pages, url_prefix=url_prefix)


def _page(template: str, **context):
    """A page. It connects with the ``token_loader``'s token if the app has
    one, else as the user the app's ``user_loader`` signed in (its cookie);
    with neither, the page asks for a token (``#token=...`` or sessionStorage)."""
    progress = current_progress()
    if not progress.settings["PAGES"]:
        abort(404)
    token = progress.page_token()
    try:
        user = progress.load_user() if token is None else None
    except ProgressCastError:
        user = None
    page = render_template(
        template,
        base=url_for("progresscast.index").rstrip("/"),
        page_token=token,
        session_user=user,
        socketio_client_url=progress.settings["SOCKETIO_CLIENT_URL"] or _CDN,
        **context,
    )
    response = make_response(page)
    # a token does not belong in a cache, nor a page naming who is signed in
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/")
def index():
    """The dashboard: all the caller's jobs, live."""
    return _page("progresscast/index.html")


@pages.get("/jobs/<job_id>")
def job_page(job_id: str):
    """One job: its card and its event timeline, live. Access is checked by the
    socket's join_job, like every read."""
    if not JOB_ID_RE.match(job_id):
        abort(404)
    return _page("progresscast/job.html", job_id=job_id)


@pages.get("/page-token")
def page_token():
    """A fresh token for the pages (the ``token_loader``'s), for a page whose
    token expired; 404 without a token_loader."""
    progress = current_progress()
    token = progress.page_token() if progress.settings["PAGES"] else None
    if token is None:
        abort(404)
    response = jsonify({"token": token})
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok", "instance": current_progress().settings["INSTANCE_NAME"]})


@pages.get("/readyz")
def readyz():
    """Readiness: the store answers and, with a message queue, this server
    is subscribed to it."""
    progress = current_progress()
    checks = {}
    probes = {"store": progress.tracker.ping}
    if progress.message_queue_url:
        probes["message_queue"] = _queue_ready
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # report, never crash the probe
            log.warning("readiness: %s unavailable: %s", name, exc)
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )


def _queue_ready() -> None:
    """Redis answers, and this server is subscribed to its channel (joins
    wait for that, batching.py)."""
    progress = current_progress()
    if not getattr(progress.socketio.server.manager, "subscribed", True):
        raise Unavailable("not subscribed to the message queue")
    client = progress.queue_probe
    if client is None:
        import redis

        client = progress.queue_probe = redis.Redis.from_url(
            progress.message_queue_url, socket_timeout=1, socket_connect_timeout=1
        )
    client.ping()
