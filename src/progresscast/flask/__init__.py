"""progresscast for Flask: live job progress inside your own Flask app.

::

    from progresscast.flask import ProgressCast

    socketio = SocketIO(app)
    progress = ProgressCast(app, socketio)

    @progress.user_loader
    def current_user_id():
        return session.get("user_id")

Installed with ``pip install "progresscast[flask]"``; see
docs/flask-extension.md. ``import progresscast`` alone never imports Flask.
"""

from .auth import Principal
from .batching import client_manager
from .context import current_progress, get_tracker
from .extension import AppProgress, ProgressCast
from .origin import socket_origins

__all__ = [
    "AppProgress",
    "Principal",
    "ProgressCast",
    "client_manager",
    "current_progress",
    "get_tracker",
    "socket_origins",
]
