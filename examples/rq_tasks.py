"""Report progress from an RQ task (https://python-rq.org).

The web app creates the job (queued) and enqueues the work::

    from redis import Redis
    from rq import Queue
    job = tracker.create_job("report.pdf", STAGES, owner=user_id)   # or POST /api/jobs
    Queue(connection=Redis.from_url(REDIS_URL)).enqueue(
        "examples.rq_tasks.check_document", job.job_id, pages=40)

and an RQ worker runs it (``rq worker --url redis://...``) with
``PROGRESSCAST_STORE_URL`` and ``PROGRESSCAST_MESSAGE_QUEUE_URL`` in its
environment. For Celery, ``progresscast.celery.ProgressTask`` does all this
from the task's own signals (docs/celery.md, examples/celery_app/).
"""

from __future__ import annotations

import os
import random
import time
from functools import cache

from progresscast import ProgressTracker
from progresscast.demo import DemoDocumentError, process_document


@cache
def tracker() -> ProgressTracker:
    """One tracker per worker process, from the environment."""
    return ProgressTracker.from_urls(
        os.environ["PROGRESSCAST_STORE_URL"], os.environ.get("PROGRESSCAST_MESSAGE_QUEUE_URL")
    )


def check_document(
    job_id: str, pages: int = 40, pace: float = 1.0, failure_rate: float = 0.0
) -> str:
    """Run the document check of an existing, queued job; return its final status."""
    job = tracker().start(job_id)
    try:
        with job:
            process_document(
                job, pages, lambda s: time.sleep(s * pace), random.Random(), failure_rate
            )
    except DemoDocumentError:
        pass  # recorded as job_failed; RQ sees a finished task
    return tracker().get(job_id).status.value
