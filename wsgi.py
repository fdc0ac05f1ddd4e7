"""WSGI entry point: ``gunicorn -k eventlet -w 1 wsgi:app``.

Monkey patching must happen before anything else imports ``socket`` or
``threading``, so it comes first and reads the async mode straight from the
environment.
"""

import gc
import os
import warnings

ASYNC_MODE = os.environ.get("PROGRESSCAST_ASYNC_MODE", "eventlet")

if ASYNC_MODE == "eventlet":
    # eventlet 0.41 warns that it is deprecated on import; we know (see
    # docs/deployment.md for gevent), and accept that one warning only.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
elif ASYNC_MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()

from web import create_app  # noqa: E402  (after monkey patching, on purpose)

app = create_app()

# The garbage collector: thousands of long-lived connection objects make
# every full collection a pause of the whole event loop (bench/: a third of
# the server's time at 5,000 clients). Freeze what start-up created, and
# collect the young generations less often.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)
