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
# Connections the kernel holds before the worker accepts them. After a restart
# every client reconnects at once, before the worker has loaded the app; what
# does not fit has its SYN dropped and retried seconds later (bench/storm.py).
# The kernel caps it at net.core.somaxconn (4096 on current kernels): raise
# that too for instances with over 4,000 clients (docs/deployment.md).
backlog = int(os.environ.get("PROGRESSCAST_BACKLOG", "16384"))
timeout = 30
graceful_timeout = 10
accesslog = os.environ.get("PROGRESSCAST_ACCESS_LOG") or None
