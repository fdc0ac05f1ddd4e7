"""Helpers of the browser tests: driving jobs over REST, reading cards."""

from __future__ import annotations

import itertools
import re
from typing import Any

STAGES = [
    {"name": "parsing", "weight": 0.15},
    {"name": "analyzing", "weight": 0.6},
    {"name": "integrating", "weight": 0.2},
    {"name": "formatting", "weight": 0.05},
]
#: a stage's status in snapshots → its chip's data-state on the page
CHIP_STATE = {
    "completed": "done",
    "running": "current",
    "pending": "pending",
    "skipped": "skipped",
    "failed": "failed",
    "cancelled": "cancelled",
}

# Records every change of every card's chip states (see chip_log), from the
# first paint on, so a test can check that stages only ever moved forward.
CHIP_RECORDER = """
window.__chipLog = [];
document.addEventListener("DOMContentLoaded", () => {
  const seen = new Map();
  const record = () => {
    for (const card of document.querySelectorAll("article.job")) {
      const states = [...card.querySelectorAll(".chip")].map((c) => c.dataset.state).join(",");
      if (seen.get(card.dataset.jobId) !== states) {
        seen.set(card.dataset.jobId, states);
        window.__chipLog.push([card.dataset.jobId, states]);
      }
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
  });
});
"""

_VALID = re.compile(r"^((done|skipped),)*((current|failed|cancelled),)?(pending,)*$")
_RANK = {"pending": 0, "current": 1, "done": 2, "skipped": 2, "failed": 2, "cancelled": 2}


def create_job(server, user: str, **body: Any) -> dict:
    r = server.http(
        "POST", "/api/jobs", user=user, json={"name": "report.pdf", "stages": STAGES, **body}
    )
    assert r.status_code == 201, r.text
    return r.json()


def post(server, user: str, job_id: str, **body: Any) -> list[dict]:
    r = server.http("POST", f"/api/jobs/{job_id}/events", user=user, json=body)
    assert r.status_code == 201, r.text
    return r.json()["events"]


def get_job(server, user: str | None, job_id: str) -> dict:
    r = server.http("GET", f"/api/jobs/{job_id}", user=user)
    assert r.status_code == 200, r.text
    return r.json()


def card(page, job_id: str):
    return page.locator(f'article.job[data-job-id="{job_id}"]')


def chip_states(card_locator) -> list[str]:
    return card_locator.locator(".chip").evaluate_all("els => els.map((e) => e.dataset.state)")


def expect_chips(card_locator, states: list[str]) -> None:
    from playwright.sync_api import expect

    chips = card_locator.locator(".chip")
    expect(chips).to_have_count(len(states))
    for i, state in enumerate(states):
        expect(chips.nth(i)).to_have_attribute("data-state", state)


def expect_card_matches(card_locator, job: dict) -> None:
    """The card shows the server's snapshot: status, percent, bar value, every stage."""
    from playwright.sync_api import expect

    expect(card_locator).to_have_attribute("data-status", job["status"])
    pct = 100 if job["progress"] >= 100 else int(job["progress"])
    expect(card_locator.locator(".pct")).to_have_text(f"{pct}%")
    # the card's own bar (a group's card has its children's bars too)
    expect(card_locator.locator(".job-progress > [role=progressbar]")).to_have_attribute(
        "aria-valuenow", _number(round(job["progress"], 1))
    )
    expect_chips(card_locator, [CHIP_STATE[s["status"]] for s in job["stages"]])


def _number(value: float) -> str:
    """How JavaScript writes a number into an attribute (45.0 → "45")."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def chip_log(page) -> dict[str, list[list[str]]]:
    """Every chip-state vector each card went through, in order."""
    log: dict[str, list[list[str]]] = {}
    for job_id, states in page.evaluate("window.__chipLog"):
        log.setdefault(job_id, []).append(states.split(",") if states else [])
    return log


def assert_stages_moved_in_order(history: list[list[str]], job: str = "") -> None:
    """At every moment: finished stages, then at most one current (or failed or
    cancelled) stage, then pending ones; and no chip ever moved backwards."""
    for states in history:
        in_order = _VALID.match("".join(f"{s}," for s in states))
        assert in_order, f"{job}: stages out of order: {states}"
    for before, after in itertools.pairwise(history):
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            assert _RANK[b] >= _RANK[a], f"{job}: stage {i} went back from {a} to {b}: {history}"
