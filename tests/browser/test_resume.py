"""A server killed and restarted mid-job: the pages say they are
reconnecting, then catch up through `since` with nothing missing."""

from __future__ import annotations

import signal

import pytest
from playwright.sync_api import expect

from progresscast import ProgressTracker, open_store
from tests.browser.conftest import dashboard_url
from tests.browser.support import (
    card,
    create_job,
    expect_card_matches,
    expect_chips,
    get_job,
    post,
)
from tests.harness import ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.browser]


def test_pages_catch_up_after_the_server_is_killed_and_restarted(tmp_path, new_page, user):
    server = ServerProcess(tmp_path).start()
    port = server.port
    try:
        job_id = create_job(server, user, name="restart.pdf", start=True)["job_id"]
        post(server, user, job_id, type="progress_update", stage="parsing", stage_progress=50)
        dashboard = new_page()
        dashboard.goto(dashboard_url(server, user))
        detail = new_page()
        detail.goto(dashboard_url(server, user, f"/jobs/{job_id}"))
        for page in (dashboard, detail):
            expect_chips(card(page, job_id), ["current", "pending", "pending", "pending"])
        expect(detail.locator("#events tr")).to_have_count(2)

        server.stop(signal.SIGKILL)
        for page in (dashboard, detail):
            expect(page.locator("#banner")).to_be_visible()
            expect(page.locator("#banner")).to_contain_text("Reconnecting…")
            expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")

        # The job goes on while the web server is down (a worker writing to the
        # store, as with Redis): three stage moves the pages never saw live.
        store = open_store(server.env["PROGRESSCAST_STORE_URL"])
        try:
            worker = ProgressTracker(store)
            worker.record(job_id, "progress_update", stage="parsing", stage_progress=100)
            worker.record(job_id, "progress_update", stage="analyzing", stage_progress=70)
            worker.record(job_id, "stage_completed", next_stage="formatting")  # skips integrating
        finally:
            store.close()

        server = ServerProcess(tmp_path).start(port=port)  # same port, same store
        for page in (dashboard, detail):
            expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
            expect(page.locator("#banner")).to_be_hidden()
            expect_chips(card(page, job_id), ["done", "done", "skipped", "current"])

        post(server, user, job_id, type="progress_update", stage="formatting", stage_progress=50)
        post(server, user, job_id, type="job_completed", result={"pages": 7})
        final = get_job(server, user, job_id)
        assert final["status"] == "completed"
        for page in (dashboard, detail):
            expect_card_matches(card(page, job_id), final)

        # The timeline holds every event exactly once: seq N … 1, no gap, every stage move.
        rows = detail.locator("#events tr")
        expect(rows).to_have_count(final["seq"])
        seqs = rows.evaluate_all("rows => rows.map((r) => Number(r.dataset.seq))")
        assert seqs == list(range(final["seq"], 0, -1))
        moves = detail.locator('#events tr[data-type="stage_completed"] td.details')
        expect(moves).to_have_text(
            [
                "formatting done → no stage left · overall 100%",
                "analyzing done → formatting · overall 95%",
                "parsing done → analyzing · overall 15%",
            ]
        )
    finally:
        server.stop()


def test_offline_then_back_catches_up(live_server, user, page):
    job_id = create_job(live_server, user, name="offline.pdf", start=True)["job_id"]
    page.goto(dashboard_url(live_server, user))
    job_card = card(page, job_id)
    expect_chips(job_card, ["current", "pending", "pending", "pending"])

    page.context.set_offline(True)
    expect(page.locator("#banner")).to_contain_text("Offline")
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    post(live_server, user, job_id, type="progress_update", stage="integrating", stage_progress=30)
    post(live_server, user, job_id, type="job_failed", error="disk full")
    expect(job_card).to_have_attribute("data-status", "running")  # nothing arrives offline

    page.context.set_offline(False)
    expect(page.locator("#banner")).to_be_hidden()
    expect_card_matches(job_card, get_job(live_server, user, job_id))
    expect(job_card.locator(".error-message")).to_have_text("disk full")
