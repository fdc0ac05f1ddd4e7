"""The standalone server's own sign-in: its token secret and demo mode.

Without demo mode every caller brings a bearer token. In demo mode
(``DEMO``) a caller without one is the demo user, the pages carry a demo
token, and the demo pipeline runs in the server.
"""

from __future__ import annotations

import logging
import os
import random
import secrets

from flask import Flask

from progresscast.demo import run_demo
from progresscast.flask import Principal, ProgressCast
from progresscast.flask.pages import page_token
from progresscast.tokens import check_secret, demo_secret_path, issue_token

log = logging.getLogger(__name__)


def add_demo(app: Flask, progress: ProgressCast) -> None:
    """Demo mode, when ``DEMO`` is on: the demo user, its tokens, its pipeline."""

    # The pages' token renewal under its old name too (404 outside demo mode).
    app.add_url_rule("/demo/token", "demo_token", page_token)
    if not app.config["DEMO"]:
        return
    user = app.config["DEMO_USER"]
    # Not a cookie: no browser sends the demo identity by itself, so no
    # cross-site rules (the demo server is never to be exposed anyway).
    demo_principal = Principal(user, session=False)
    progress.user_loader(lambda: demo_principal)
    progress.token_loader(lambda: demo_token(app))
    log.warning("DEMO MODE: demo pipelines run as user %r; do not expose this server", user)
    socketio = progress.for_app(app).socketio
    pace = app.config["DEMO_PACE"]
    socketio.start_background_task(
        run_demo,
        progress.for_app(app).tracker,
        owner=user,
        concurrency=app.config["DEMO_CONCURRENCY"],
        spawn=socketio.start_background_task,
        sleep=lambda seconds: socketio.sleep(seconds * pace),
        rng=random.Random(),
    )


def demo_token(app: Flask) -> str:
    """A token for the demo user (demo mode only), for the demo pages."""
    assert app.config["DEMO"], "demo tokens exist only in demo mode"
    return issue_token(
        app.config["SECRET_KEY"], app.config["DEMO_USER"], ttl=app.config["DEMO_TOKEN_TTL"]
    )


def resolve_secret(app: Flask) -> None:
    """Make sure ``SECRET_KEY`` is set and strong enough.

    Demo mode without a configured secret keeps a random one in the instance
    folder (so tokens survive a restart); otherwise a missing secret stops
    the server from starting, with instructions.
    """
    # The raw environment value: from_prefixed_env would turn an all-digit
    # secret into a number.
    secret = os.environ.get("PROGRESSCAST_SECRET_KEY") or app.config.get("SECRET_KEY")
    if not secret and app.config["DEMO"]:
        path = demo_secret_path(app.instance_path)
        if not os.path.exists(path):
            os.makedirs(app.instance_path, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            log.warning("demo mode: created a token secret in %s", path)
        with open(path) as f:
            secret = f.read().strip()
    if not secret:
        raise RuntimeError(
            "PROGRESSCAST_SECRET_KEY is not set. Generate one with"
            " python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            " and set it in the environment (PROGRESSCAST_DEMO=1 makes one up for local demos)."
        )
    app.config["SECRET_KEY"] = check_secret(secret)
