"""The Celery side of the example: the app, its settings, and one task whose
runs are progresscast jobs.

The web app (app.py) imports this module to send the task; the worker runs it::

    celery -A tasks worker --loglevel INFO              # prefork: processes
    celery -A tasks worker --pool threads -c 8          # or threads

Settings come from the environment: ``REDIS_URL`` (default
``redis://127.0.0.1:6379``: the broker in database 1, progresscast's store
and message queue in database 0), or each of ``CELERY_BROKER_URL``,
``PROGRESSCAST_STORE_URL`` and ``PROGRESSCAST_MESSAGE_QUEUE_URL``;
``EXAMPLE_PACE`` multiplies the simulated work's sleeps.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from progresscast.celery import ProgressTask

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
PACE = float(os.environ.get("EXAMPLE_PACE", "1"))

celery_app = Celery("tasks", broker=os.environ.get("CELERY_BROKER_URL", f"{REDIS_URL}/1"))
celery_app.conf.update(
    # progresscast: the store the web app reads and the queue it listens on
    progresscast_store_url=os.environ.get("PROGRESSCAST_STORE_URL", f"{REDIS_URL}/0"),
    progresscast_message_queue_url=os.environ.get(
        "PROGRESSCAST_MESSAGE_QUEUE_URL", f"{REDIS_URL}/0"
    ),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)


@celery_app.task(
    base=ProgressTask,
    bind=True,
    stages=[("download", 1), ("transcode", 4), ("publish", 1)],  # weights: shares of the bar
    progress_name="Transcode",
)
def transcode(self, video: str, frames: int = 240) -> dict:
    """A video's transcode (simulated): every stage reports through self.progress."""
    with self.progress.stage("download", total=8, unit="chunks"):
        for chunk in range(1, 9):
            time.sleep(0.15 * PACE)
            self.progress.advance(message=f"chunk {chunk} of 8")
    with self.progress.stage("transcode", total=frames, unit="frames"):
        for frame in range(1, frames + 1):
            time.sleep(0.025 * PACE)
            self.progress.advance(message=f"frame {frame} of {frames}")
    with self.progress.stage("publish"):
        time.sleep(0.5 * PACE)
    return {"video": video, "frames": frames}
