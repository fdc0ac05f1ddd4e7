"""The job page (/jobs/<id>): the job's card, its details and its timeline."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import dashboard_url
from tests.browser.support import card, create_job, expect_card_matches, get_job, post

pytestmark = [pytest.mark.server, pytest.mark.browser]


def test_the_timeline_replays_history_then_goes_on_live(live_server, user, page):
    job_id = create_job(live_server, user, name="timeline.pdf", metadata={"pages": 82}, start=True)[
        "job_id"
    ]
    post(live_server, user, job_id, type="progress_update", stage="parsing", stage_progress=50)
    post(
        live_server,
        user,
        job_id,
        type="progress_update",
        stage="analyzing",
        stage_progress=25,
        message="page 20 of 82",
    )
    page.goto(dashboard_url(live_server, user, f"/jobs/{job_id}"))
    expect(page).to_have_title("timeline.pdf · progresscast")
    expect(page.get_by_role("heading", level=1, name="timeline.pdf")).to_be_visible()
    rows = page.locator("#events tr")
    expect(rows).to_have_count(4)  # started, progress, stage_completed, progress
    expect(rows.locator("td.seq")).to_have_text(["4", "3", "2", "1"])
    expect(rows.locator(".etype")).to_have_text(
        ["progress_update", "stage_completed", "progress_update", "job_started"]
    )
    expect(rows.nth(0).locator("td.details")).to_have_text(
        # the cold ETA (the pace so far) sits between the numbers and the message
        re.compile(r"^analyzing 25% · overall 30% · ETA about \d+ s · “page 20 of 82”$")
    )
    expect(rows.nth(3).locator("td.details")).to_contain_text(
        "stages parsing 15%, analyzing 60%, integrating 20%, formatting 5%"
    )
    expect(rows.nth(0).locator("time")).to_have_attribute(
        "datetime", _ts(live_server, user, job_id, 4)
    )
    expect(page.locator(".facts")).to_contain_text('{"pages":82}')

    post(
        live_server,
        user,
        job_id,
        type="job_failed",
        error={"type": "FontError", "message": "embedded font 'Garamond-Bold' is corrupt"},
    )
    expect(rows).to_have_count(5)
    expect(rows.nth(0).locator("td.details")).to_have_text(
        "FontError: embedded font 'Garamond-Bold' is corrupt (in analyzing, at 30%)"
    )
    job_card = card(page, job_id)
    expect(job_card.locator(".error-type")).to_have_text("FontError")
    expect_card_matches(job_card, get_job(live_server, user, job_id))

    # Progress updates can be hidden, with the keyboard too.
    page.get_by_label("Show progress updates").focus()
    page.keyboard.press("Space")
    expect(page.locator('#events tr[data-type="progress_update"]').first).to_be_hidden()
    expect(page.locator('#events tr[data-type="job_failed"]')).to_be_visible()


def _ts(server, user, job_id, seq):
    r = server.http("GET", f"/api/jobs/{job_id}/events?since={seq - 1}&limit=1", user=user)
    return r.json()["events"][0]["ts"]


def test_a_job_the_caller_may_not_see_is_not_found(live_server, user, page):
    theirs = create_job(live_server, "someone-else", name="private.pdf")["job_id"]
    page.goto(dashboard_url(live_server, user, f"/jobs/{theirs}"))
    expect(page.get_by_role("alert")).to_contain_text("Job not found")
    expect(page.locator("article.job")).to_have_count(0)
    assert requests.get(f"{live_server.url}/jobs/-bad-id", timeout=5).status_code == 404
