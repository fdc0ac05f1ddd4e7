"""How the Flask extension and web/ sit on the library: they read jobs
through the tracker, never its store, and answer every request the
protocol names."""

from __future__ import annotations

import re
from pathlib import Path

from progresscast.flask.sockets import ProgressNamespace
from progresscast.protocol import REQUESTS, Request

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [ROOT / "web", ROOT / "src" / "progresscast" / "flask"]


def test_web_and_extension_never_touch_the_store_behind_the_tracker():
    """Reads, resume, listings, pruning and probes are the tracker's
    (read_since, events_page, list_jobs, count_jobs, prune, ping, checkpoint):
    one rule for truncated history, one place to change it."""
    store = re.compile(r"\.store\b")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for layer in LAYERS
        for path in sorted(layer.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if store.search(line)
    ]
    assert found == []


def test_every_request_of_the_protocol_has_a_handler():
    assert {r.value for r in Request} == REQUESTS
    for name in REQUESTS:
        assert callable(getattr(ProgressNamespace, f"on_{name}", None)), name
