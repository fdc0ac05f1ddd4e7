"""Pages, health checks and front-end assets installed by npm."""

from __future__ import annotations

import logging
import os

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    send_from_directory,
)

from progresscast import Unavailable
from progresscast.protocol import JOB_ID_RE

from .auth import demo_token
from .context import get_tracker

log = logging.getLogger(__name__)

pages = Blueprint("pages", __name__)

#: /vendor/<prefix>/<file> → the npm package folder it is served from.
VENDOR = {
    "socket.io": ("socket.io-client", "dist"),
    "swagger-ui": ("swagger-ui-dist",),
}


def _page(template: str, **context):
    """A page of the dashboard. In demo mode it carries a demo token (data-token);
    otherwise the browser brings its own (``#token=...`` or sessionStorage)."""
    config = current_app.config
    token = demo_token(current_app) if config["DEMO"] else None
    page = render_template(
        template, demo=config["DEMO"], demo_user=config["DEMO_USER"], demo_token=token, **context
    )
    response = make_response(page)
    if token:
        response.headers["Cache-Control"] = "no-store"  # a token does not belong in a cache
    return response


@pages.get("/")
def index():
    """The dashboard: all the caller's jobs, live."""
    return _page("index.html")


@pages.get("/jobs/<job_id>")
def job_page(job_id: str):
    """One job: its card and its event timeline, live. Access is checked by the
    socket's join_job, like every read."""
    if not JOB_ID_RE.match(job_id):
        abort(404)
    return _page("job.html", job_id=job_id)


@pages.get("/demo/token")
def demo_token_json():
    """A fresh demo token (demo mode only), for a dashboard whose token expired."""
    if not current_app.config["DEMO"]:
        abort(404)
    response = jsonify({"token": demo_token(current_app)})
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok", "instance": current_app.config["INSTANCE_NAME"]})


@pages.get("/readyz")
def readyz():
    """Readiness: the store answers and, with a message queue, this server
    is subscribed to it."""
    checks = {}
    probes = {"store": get_tracker().ping}
    if current_app.config["MESSAGE_QUEUE_URL"]:
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
    wait for that, web/batching.py)."""
    if not current_app.extensions["socketio"].server.manager.subscribed:
        raise Unavailable("not subscribed to the message queue")
    _queue_ping()


def _queue_ping() -> None:
    client = current_app.extensions.get("progresscast.queue_probe")
    if client is None:
        import redis

        client = redis.Redis.from_url(
            current_app.config["MESSAGE_QUEUE_URL"], socket_timeout=1, socket_connect_timeout=1
        )
        current_app.extensions["progresscast.queue_probe"] = client
    client.ping()


@pages.get("/vendor/<prefix>/<path:filename>")
def vendor(prefix: str, filename: str):
    """Third-party browser files from node_modules (fetched by npm, never committed)."""
    if prefix not in VENDOR:
        abort(404)
    folder = os.path.join(current_app.config["NODE_MODULES_DIR"], *VENDOR[prefix])
    if not os.path.isdir(folder):
        abort(404, description=f"{VENDOR[prefix][0]} is not installed: run `make setup`")
    return send_from_directory(folder, filename, max_age=3600)
