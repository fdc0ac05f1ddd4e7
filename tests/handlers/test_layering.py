"""How web/ sits on the library: it reads jobs through the tracker, never its
store, and answers every request the protocol names."""

from __future__ import annotations

import re
from pathlib import Path

from progresscast.protocol import REQUESTS, Request
from web.sockets import ProgressNamespace

WEB = Path(__file__).resolve().parents[2] / "web"


def test_web_never_touches_the_store_behind_the_tracker():
    """Reads, resume, listings, pruning and probes are the tracker's
    (read_since, events_page, list_jobs, count_jobs, prune, ping, checkpoint):
    one rule for truncated history, one place to change it."""
    store = re.compile(r"\.store\b")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(WEB.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if store.search(line)
    ]
    assert found == []


def test_every_request_of_the_protocol_has_a_handler():
    assert {r.value for r in Request} == REQUESTS
    for name in REQUESTS:
        assert callable(getattr(ProgressNamespace, f"on_{name}", None)), name
