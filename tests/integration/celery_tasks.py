"""The Celery app and tasks of tests/integration/test_celery.py.

A worker runs them with ``python -m celery -A tests.integration.celery_tasks
worker``; its broker and result backend come from ``CELERY_BROKER_URL`` and
``CELERY_RESULT_BACKEND`` (Celery reads them itself), progresscast's URLs
from ``PROGRESSCAST_STORE_URL`` and ``PROGRESSCAST_MESSAGE_QUEUE_URL``. The
test process sets the same in ``app.conf``. Every step sleeps ``pace``
seconds: tens of milliseconds, so a whole pipeline takes well under a second.
"""

from __future__ import annotations

import time

from celery import Celery

from progresscast.celery import ProgressTask

app = Celery("tests.integration.celery_tasks")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)

VIDEO = [("download", 1), ("transcode", 3)]


@app.task(base=ProgressTask, bind=True, stages=VIDEO, progress_name="Transcode")
def transcode(self, frames: int = 8, pace: float = 0.02) -> dict:
    """Both stages, with counts; returns what it did."""
    with self.progress.stage("download", total=4):
        for _ in range(4):
            time.sleep(pace)
            self.progress.advance()
    with self.progress.stage("transcode", total=frames, unit="frames"):
        for frame in range(1, frames + 1):
            time.sleep(pace)
            self.progress.advance(message=f"frame {frame} of {frames}")
    return {"frames": frames}


@app.task(base=ProgressTask, bind=True, stages=["publish"])
def publish(self, transcoded: dict, pace: float = 0.02) -> str:
    """The next link of a chain: gets transcode's result."""
    with self.progress.stage("publish", total=2):
        for _ in range(2):
            time.sleep(pace)
            self.progress.advance()
    return f"published {transcoded['frames']} frames"


@app.task(base=ProgressTask, bind=True, stages=VIDEO)
def corrupt(self, pace: float = 0.02) -> None:
    """Fails in its second stage."""
    with self.progress.stage("download"):
        time.sleep(pace)
    with self.progress.stage("transcode", total=10):
        for _ in range(3):
            time.sleep(pace)
            self.progress.advance()
        raise ValueError("corrupt frame 3")


@app.task(base=ProgressTask, bind=True, stages=VIDEO, max_retries=3)
def flaky(self, fails: int = 2, pace: float = 0.02) -> str:
    """Fails ``fails`` times in its second stage, retrying after 0.2 s, then succeeds."""
    with self.progress.stage("download", total=2):
        for _ in range(2):
            time.sleep(pace)
            self.progress.advance()
    with self.progress.stage("transcode", total=4):
        for _ in range(2):
            time.sleep(pace)
            self.progress.advance()
        if self.request.retries < fails:
            raise self.retry(exc=ConnectionError("peer reset"), countdown=0.2)
        for _ in range(2):
            time.sleep(pace)
            self.progress.advance()
    return f"done after {self.request.retries} retries"


@app.task(base=ProgressTask, bind=True, stages=["work"])
def endless(self, steps: int = 3000, pace: float = 0.02) -> None:
    """Runs for a minute unless stopped: for cancel, revoke and SIGKILL."""
    with self.progress.stage("work", total=steps):
        for _ in range(steps):
            time.sleep(pace)
            self.progress.advance()


@app.task(base=ProgressTask, bind=True, stages=VIDEO, acks_late=True, reject_on_worker_lost=True)
def sturdy(self, frames: int = 30, pace: float = 0.05) -> dict:
    """acks_late: if its pool process dies, the message goes back to the queue
    and the task runs again, rejoining its job."""
    with self.progress.stage("download", total=2):
        for _ in range(2):
            time.sleep(pace)
            self.progress.advance()
    with self.progress.stage("transcode", total=frames, unit="frames"):
        for _ in range(frames):
            time.sleep(pace)
            self.progress.advance()
    return {"frames": frames, "redelivered": bool(self.request.delivery_info.get("redelivered"))}
