"""Read by gunicorn from this folder, before it loads its eventlet worker.

Run: ``gunicorn -k eventlet -w 1 -b 127.0.0.1:8000 app:app`` (one worker:
Socket.IO needs every request of a connection to reach the same process).
"""

import warnings

# The eventlet worker imports eventlet, which announces its own deprecation
# (EventletDeprecationWarning); accept that one warning by its text, nothing else.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
