"""gunicorn settings read from the working directory before the worker class loads.

Run: ``gunicorn -k eventlet -w 1 wsgi:app`` (add ``-b 0.0.0.0:8000`` to listen wider).
"""

import os
import warnings

# The eventlet worker imports eventlet, which announces its own deprecation
# (EventletDeprecationWarning); accept that one warning by its text, nothing else.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

bind = os.environ.get("PROGRESSCAST_BIND", "127.0.0.1:8000")
worker_class = "eventlet"
workers = 1  # Socket.IO needs sticky sessions: scale with instances, not workers
# Long-lived websocket connections per worker (eventlet's default caps at 1000).
worker_connections = int(os.environ.get("PROGRESSCAST_WORKER_CONNECTIONS", "10000"))
timeout = 30
graceful_timeout = 10
accesslog = os.environ.get("PROGRESSCAST_ACCESS_LOG") or None
