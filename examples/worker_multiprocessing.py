"""Report progress from worker processes: no Flask, no eventlet, just Redis.

The server runs with the same Redis as store and message queue::

    PROGRESSCAST_STORE_URL=redis://127.0.0.1:6379/0 \\
    PROGRESSCAST_MESSAGE_QUEUE_URL=redis://127.0.0.1:6379/0 \\
        gunicorn -k eventlet -w 1 wsgi:app

and this script starts N processes, each running one document check::

    python examples/worker_multiprocessing.py --store redis://127.0.0.1:6379/0 \\
        --queue redis://127.0.0.1:6379/0 --owner alice --jobs 3

It prints each job id as it is created. ``--job-id`` runs a job that already
exists (created queued by ``POST /api/jobs``), which is how a web app hands
work to a worker: create, return the id to the browser, enqueue.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import threading
import time

from progresscast import JobCancelled, ProgressTracker
from progresscast.demo import STAGES, DemoDocumentError, process_document


def run_one(args: argparse.Namespace, index: int, job_id: str | None) -> None:
    # One tracker per process: connections must not cross a fork.
    tracker = ProgressTracker.from_urls(args.store, args.queue)
    rng = random.Random(args.seed + index if args.seed is not None else None)
    pages = args.pages or rng.randint(20, 80)
    if job_id is None:
        job = tracker.job(
            f"document-{index}.pdf", STAGES, owner=args.owner, metadata={"pages": pages}
        )
    else:
        job = tracker.start(job_id)
    # One write per line: the processes share stdout, and print() writes the
    # id and its newline separately (two writes when Python runs unbuffered,
    # PYTHONUNBUFFERED=1), so two ids could run together on one line.
    sys.stdout.write(f"{job.job_id}\n")
    sys.stdout.flush()
    sleep = (lambda s: time.sleep(s * args.pace)) if args.pace else (lambda s: None)
    try:
        with job:
            if args.threads > 1:
                run_threaded(job, pages, args.threads, sleep)
            else:
                process_document(job, pages, sleep, rng, failure_rate=args.failure_rate)
    except DemoDocumentError:
        pass  # reported as job_failed
    except JobCancelled:  # pragma: no cover - the `with` block swallows it
        pass


def run_threaded(job, pages: int, threads: int, sleep) -> None:
    """Every stage's pages split over several threads reporting on one emitter."""
    for stage in STAGES:
        with job.stage(stage, total=pages):

            def work(share: int) -> None:
                for _ in range(share):
                    job.advance()
                    sleep(0.01)

            shares = [pages // threads + (i < pages % threads) for i in range(threads)]
            workers = [threading.Thread(target=work, args=(n,)) for n in shares]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
    job.complete({"pages": pages, "threads": threads})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="store URL, e.g. redis://host:6379/0")
    parser.add_argument("--queue", help="message queue URL (the server's MESSAGE_QUEUE_URL)")
    parser.add_argument("--owner", default="demo")
    parser.add_argument("--jobs", type=int, default=1, help="processes (one job each)")
    parser.add_argument("--job-id", action="append", help="run these queued jobs instead")
    parser.add_argument("--pages", type=int, help="pages per document (random if unset)")
    parser.add_argument("--pace", type=float, default=1.0, help="multiplies every sleep")
    parser.add_argument("--threads", type=int, default=1, help="threads per job")
    parser.add_argument("--failure-rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    ids = args.job_id or [None] * args.jobs
    procs = [
        multiprocessing.Process(target=run_one, args=(args, i, job_id))
        for i, job_id in enumerate(ids)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    raise SystemExit(max((p.exitcode or 0) for p in procs))


if __name__ == "__main__":
    main()
