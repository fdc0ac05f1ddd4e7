"""A demo pipeline: document checks with weighted stages, varied speeds and
the occasional failure, so a newcomer sees live progress at once.

It uses only the public API (:meth:`ProgressTracker.job`, :meth:`~ProgressTracker.group`
and the emitter);
``spawn`` and ``sleep`` come from the host (``socketio.start_background_task``
and ``socketio.sleep`` in the server), so it runs under any async mode.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from typing import Any

from .emitter import ProgressEmitter
from .tracker import ProgressTracker

log = logging.getLogger(__name__)

STAGES = {"parsing": 0.15, "analyzing": 0.60, "integrating": 0.20, "formatting": 0.05}
#: every check is a run of one pipeline, whatever its document: its ETA learns
KIND = "document check"
DOCUMENTS = [
    "contract",
    "annual-report",
    "thesis",
    "invoice-batch",
    "manual",
    "whitepaper",
    "minutes",
    "policy",
    "proposal",
    "datasheet",
]
FAILURES = [
    ("analyzing", "TableStructureError", "table on page {page} has no header row"),
    ("analyzing", "FontError", "embedded font 'Garamond-Bold' is corrupt"),
    ("integrating", "ReferenceError", "cross-reference to section {page} is dangling"),
]


class DemoDocumentError(Exception):
    """A simulated problem in a document."""


def make_error(kind: str, text: str) -> Exception:
    return type(kind, (DemoDocumentError,), {})(text)


#: seconds per page in each stage, before the machine's speed factor
SECONDS_PER_PAGE = {"parsing": 0.02, "analyzing": 0.09, "integrating": 0.03, "formatting": 0.01}


def process_document(
    job: ProgressEmitter,
    pages: int,
    sleep: Callable[[float], Any],
    rng: random.Random,
    failure_rate: float = 0.15,
) -> None:
    """The work of one simulated document check, reported through ``job``.

    Raises :class:`DemoDocumentError` now and then (``failure_rate``); used
    inside ``with job:``, that becomes ``job_failed`` with its stage.
    """
    speed = rng.uniform(0.6, 1.8)  # a slower or faster machine
    failure = rng.choice(FAILURES) if rng.random() < failure_rate else None
    fail_at = rng.randint(max(1, pages // 4), max(1, pages - 1))
    for stage in STAGES:
        per_page = SECONDS_PER_PAGE[stage] * speed
        with job.stage(stage, total=pages, unit="pages"):
            for page in range(1, pages + 1):
                if failure and failure[0] == stage and page == fail_at:
                    raise make_error(failure[1], failure[2].format(page=page))
                job.advance(message=f"{stage} page {page} of {pages}")
                # Uneven pages: some take several times longer.
                sleep(per_page * rng.choice((0.5, 1, 1, 1, 3)))
    job.complete({"pages": pages, "issues_found": rng.randint(0, 12)})


def check_document(
    tracker: ProgressTracker,
    owner: str,
    sleep: Callable[[float], Any],
    rng: random.Random,
    failure_rate: float = 0.15,
) -> str:
    """Create and run one simulated document check; return its job id."""
    pages = rng.randint(20, 160)
    name = document_name(rng)
    job = tracker.job(name, STAGES, owner=owner, kind=KIND, metadata={"pages": pages, "demo": True})
    run_check(job, pages, sleep, rng, failure_rate)
    return job.job_id


def document_name(rng: random.Random) -> str:
    return f"{rng.choice(DOCUMENTS)}-{rng.randint(100, 999)}.pdf"


def run_check(
    job: ProgressEmitter,
    pages: int,
    sleep: Callable[[float], Any],
    rng: random.Random,
    failure_rate: float = 0.15,
) -> None:
    """:func:`process_document` as a job: a simulated problem ends it as
    ``job_failed`` (the emitter reports it) and the demo goes on."""
    try:
        with job:
            process_document(job, pages, sleep, rng, failure_rate)
    except DemoDocumentError:
        pass


def check_batch(
    tracker: ProgressTracker,
    owner: str,
    sleep: Callable[[float], Any],
    rng: random.Random,
    size: int = 3,
) -> str:
    """A batch of ``size`` documents as one group: its children checked one
    after the other, the parent following them. Returns the parent's id."""
    docs = [(document_name(rng), rng.randint(10, 60)) for _ in range(size)]
    parent, children = tracker.group(
        f"batch of {size} documents",
        [
            {
                "name": name,
                "stages": STAGES,
                "kind": KIND,
                "metadata": {"pages": pages, "demo": True},
            }
            for name, pages in docs
        ],
        owner=owner,
        metadata={"demo": True},
        run_here=True,
    )
    for child, (_, pages) in zip(children, docs, strict=True):
        # A failed child: the batch goes on, and fails at its end.
        run_check(tracker.start(child.job_id), pages, sleep, rng)
    return parent.job_id


def run_demo(
    tracker: ProgressTracker,
    *,
    owner: str,
    concurrency: int,
    spawn: Callable[..., Any],
    sleep: Callable[[float], Any],
    rng: random.Random | None = None,
) -> None:
    """Keep ``concurrency`` demo jobs running, forever, a few seconds apart;
    the first worker checks a batch (a group) every fourth time."""
    rng = rng or random.Random()

    def worker(index: int) -> None:
        sleep(index * 2.0)  # stagger the starts
        for round_ in itertools.count(1):
            try:
                if index == 0 and round_ % 4 == 2:
                    check_batch(tracker, owner, sleep, rng)
                else:
                    check_document(tracker, owner, sleep, rng)
            except Exception:
                log.exception("demo job crashed")
            sleep(rng.uniform(1.0, 4.0))

    for i in range(concurrency):
        spawn(worker, i)
