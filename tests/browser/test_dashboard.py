"""The dashboard (/) in headless Chromium against a real server: jobs driven
over REST step by step, and the demo pipeline running inside the server."""

from __future__ import annotations

import re
import threading
import time

import pytest
from playwright.sync_api import expect

from progresscast import SQLiteStore
from tests.browser.conftest import dashboard_url
from tests.browser.support import (
    CHIP_RECORDER,
    STAGES,
    assert_stages_moved_in_order,
    card,
    chip_log,
    create_job,
    expect_card_matches,
    expect_chips,
    get_job,
    post,
)
from tests.harness import ServerProcess, token_for, wait_until

pytestmark = [pytest.mark.server, pytest.mark.browser]


def test_a_job_reaches_100_with_its_stages_in_order(live_server, user, page):
    page.add_init_script(CHIP_RECORDER)
    page.goto(dashboard_url(live_server, user))
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#empty")).to_contain_text("No jobs yet")

    job = create_job(live_server, user, name="annual-report.pdf")
    job_card = card(page, job["job_id"])
    expect(job_card.locator(".badge")).to_have_text("Queued")
    expect_chips(job_card, ["pending"] * 4)
    expect(page.locator("#empty")).to_be_hidden()

    post(live_server, user, job["job_id"], type="job_started")
    expect_chips(job_card, ["current", "pending", "pending", "pending"])
    expect(job_card.locator(".badge")).to_have_text("Running")

    for i, stage in enumerate(STAGES):
        post(
            live_server,
            user,
            job["job_id"],
            type="progress_update",
            stage=stage["name"],
            stage_progress=50,
            message=f"{stage['name']}: page 6 of 12",
        )
        expect_chips(job_card, ["done"] * i + ["current"] + ["pending"] * (3 - i))
        expect(job_card.locator(".job-message")).to_have_text(f"{stage['name']}: page 6 of 12")
        expect_card_matches(job_card, get_job(live_server, user, job["job_id"]))

    post(live_server, user, job["job_id"], type="job_completed", result={"pages": 12, "issues": 2})
    expect_chips(job_card, ["done"] * 4)
    bar = page.get_by_role("progressbar", name="Progress of annual-report.pdf")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(job_card.locator(".pct")).to_have_text("100%")
    expect(job_card.locator(".badge")).to_have_text("Completed")
    expect(job_card.locator(".job-message")).to_have_text("Result: pages 12 · issues 2")
    expect(job_card.get_by_role("button", name="Cancel annual-report.pdf")).to_be_hidden()
    expect_card_matches(job_card, get_job(live_server, user, job["job_id"]))
    # Every state the chips showed, frame by frame, was in order.
    history = chip_log(page)[job["job_id"]]
    assert history[0] == ["pending"] * 4 and history[-1] == ["done"] * 4
    assert_stages_moved_in_order(history)


def test_a_failed_job_shows_its_error(live_server, user, page):
    job = create_job(live_server, user, name="invoice-batch.pdf", start=True)
    post(
        live_server,
        user,
        job["job_id"],
        type="progress_update",
        stage="analyzing",
        stage_progress=40,
    )
    page.goto(dashboard_url(live_server, user))
    job_card = card(page, job["job_id"])
    expect_chips(job_card, ["done", "current", "pending", "pending"])

    post(
        live_server,
        user,
        job["job_id"],
        type="job_failed",
        stage_progress=63,
        message="page 41 of 65",
        error={"type": "TableStructureError", "message": "table on page 41 has no header row"},
    )
    expect(job_card.locator(".badge")).to_have_text("Failed")
    error = job_card.locator(".job-error")
    expect(error).to_be_visible()
    expect(error.locator(".error-type")).to_have_text("TableStructureError")
    expect(error.locator(".error-stage")).to_have_text("analyzing")
    expect(error.locator(".error-message")).to_have_text("table on page 41 has no header row")
    # The pipeline's last numbers came with the failure: the page shows them too.
    expect(job_card.locator(".job-message")).to_have_text("page 41 of 65")
    expect_card_matches(job_card, get_job(live_server, user, job["job_id"]))
    expect(job_card.get_by_role("button")).to_have_count(0)

    # The failed filter shows it, the completed one does not.
    page.get_by_role("radio", name="Failed").check()
    expect(job_card).to_be_visible()
    page.get_by_role("radio", name="Completed").check()
    expect(job_card).to_have_count(0)
    expect(page.locator("#empty")).to_have_text("No completed jobs.")


def _pipeline_that_stops_when_asked(
    server, user: str, job_id: str, may_stop: threading.Event
) -> threading.Thread:
    """An HTTP pipeline: reports progress until its answers say cancel_requested,
    then stops (posts job_cancelled) once ``may_stop`` is set, as a pipeline
    takes a while to wind down."""

    def run():
        def asked():
            r = server.http(
                "POST",
                f"/api/jobs/{job_id}/events",
                user=user,
                json={"type": "progress_update", "stage": "parsing", "stage_progress": 10},
            )
            return r.json()["job"]["cancel_requested"]

        reason = wait_until(asked, 20, interval=0.1, what="a cancel request")
        assert may_stop.wait(20)
        post(server, user, job_id, type="job_cancelled", reason=reason)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cancel_from_the_dashboard(live_server, user, page):
    running = create_job(live_server, user, name="nightly-import.csv", start=True)
    queued = create_job(live_server, user, name="waiting.pdf")
    page.goto(dashboard_url(live_server, user))
    running_card = card(page, running["job_id"])
    expect(running_card.locator(".badge")).to_have_text("Running")

    may_stop = threading.Event()
    pipeline = _pipeline_that_stops_when_asked(live_server, user, running["job_id"], may_stop)
    running_card.get_by_role("button", name="Cancel nightly-import.csv").click()
    # Until the pipeline stops, the card says so (cancel_requested).
    expect(running_card.get_by_role("button", name="Cancelling nightly-import.csv")).to_have_text(
        "Cancelling…"
    )
    expect(running_card.locator(".badge")).to_have_text("Cancelling…")
    may_stop.set()
    expect(running_card.locator(".badge")).to_have_text("Cancelled")
    pipeline.join(timeout=20)
    assert not pipeline.is_alive()
    snapshot = get_job(live_server, user, running["job_id"])
    assert snapshot["status"] == "cancelled"
    assert snapshot["cancel_requested"] == "cancelled on request"
    expect_card_matches(running_card, snapshot)
    expect(running_card.get_by_role("button")).to_have_count(0)

    # A queued job has no pipeline yet: cancelled at once.
    queued_card = card(page, queued["job_id"])
    queued_card.get_by_role("button", name="Cancel waiting.pdf").click()
    expect(queued_card.locator(".badge")).to_have_text("Cancelled")
    assert get_job(live_server, user, queued["job_id"])["status"] == "cancelled"


def test_keyboard_reaches_and_operates_filters_and_cancel(live_server, user, page):
    done = create_job(live_server, user, name="done.pdf", start=True)
    post(live_server, user, done["job_id"], type="job_completed")
    running = create_job(live_server, user, name="busy.pdf", start=True)
    page.goto(dashboard_url(live_server, user))
    expect(card(page, running["job_id"])).to_be_visible()

    def tab_to(predicate_js: str, what: str, limit: int = 25) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(
                f"(el) => {predicate_js}", page.evaluate_handle("document.activeElement")
            ):
                return
        raise AssertionError(f"Tab never reached {what}")

    # The filter is one tab stop; the arrow keys move it.
    tab_to("el.name === 'filter'", "the filter")
    assert page.evaluate("document.activeElement.value") == "all"
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name="Running")).to_be_checked()
    expect(page).to_have_url(f"{live_server.url}/?status=running")
    expect(card(page, done["job_id"])).to_have_count(0)
    expect(card(page, running["job_id"])).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name="Completed")).to_be_checked()
    expect(card(page, done["job_id"])).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("radio", name="Running")).to_be_checked()

    # On to the running job's cancel button, and press it with the keyboard.
    tab_to("el.classList.contains('cancel')", "the cancel button")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Cancel busy.pdf"
    page.keyboard.press("Enter")
    button = card(page, running["job_id"]).locator("button.cancel")
    expect(button).to_have_attribute("aria-disabled", "true")
    expect(button).to_have_text("Cancelling…")
    expect(button).to_be_focused()  # focus stays where the user is
    wait_until(
        lambda: get_job(live_server, user, running["job_id"])["cancel_requested"],
        10,
        what="cancel request",
    )


def test_accessibility_attributes(live_server, user, page):
    job = create_job(live_server, user, name="a11y.pdf", start=True)
    post(
        live_server,
        user,
        job["job_id"],
        type="progress_update",
        stage="analyzing",
        stage_progress=50,
    )
    page.goto(dashboard_url(live_server, user))
    assert page.get_attribute("html", "lang") == "en"
    bar = page.get_by_role("progressbar", name="Progress of a11y.pdf")
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    expect(bar).to_have_attribute("aria-valuenow", "45")
    expect(bar).to_have_attribute("aria-valuetext", "45%, analyzing, running")
    expect(page.get_by_role("main")).to_be_visible()
    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()
    expect(page.get_by_role("group", name="Show jobs")).to_be_visible()
    expect(page.get_by_role("radio")).to_have_count(5)
    expect(page.get_by_role("list", name="Stages")).to_have_count(1)
    # Chips say their state in words, not only in colour.
    expect(page.get_by_role("listitem").nth(1)).to_contain_text("analyzing")
    expect(page.get_by_role("listitem").nth(1).locator(".sr-only")).to_have_text(": current, 50%")
    expect(page.get_by_role("article", name="a11y.pdf")).to_be_visible()
    # The banner and the announcer are live regions.
    assert page.get_attribute("#banner", "role") == "status"
    assert page.get_attribute("#announcer", "aria-live") == "polite"
    expect(page.get_by_role("link", name="Skip to content")).to_be_attached()

    # The name links to the job page, signed in with the same tab's token.
    page.get_by_role("link", name="a11y.pdf").click()
    expect(page).to_have_url(f"{live_server.url}/jobs/{job['job_id']}")
    expect(page.get_by_role("heading", level=1, name="a11y.pdf")).to_be_visible()
    expect(page.locator("#events tr")).to_have_count(3)


def test_sign_in_needed_without_a_token(live_server, user, page):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Sign-in needed")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    # A pasted token signs in; it stays in this tab and never goes into the address.
    page.get_by_label("Access token").fill(token_for(user))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#who")).to_have_text(f"Signed in as {user}")
    assert "token" not in page.url


def test_a_token_in_the_fragment_moves_out_of_the_address(live_server, user, page):
    page.goto(dashboard_url(live_server, user))
    expect(page.locator("#who")).to_have_text(f"Signed in as {user}")
    assert page.url == live_server.url + "/"
    page.reload()  # sessionStorage keeps it for this tab
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign-in needed")).to_be_visible()


def test_a_refused_token_asks_to_sign_in_again(live_server, user, page):
    page.goto(f"{live_server.url}/#token=not-a-real-token")
    expect(page.get_by_role("heading", name="Sign-in needed")).to_be_visible()
    expect(page.locator(".refused")).to_contain_text("refused the token")


def test_demo_mode_runs_jobs_to_their_end(tmp_path, page):
    demo = ServerProcess(
        tmp_path, env={"PROGRESSCAST_DEMO": "1", "PROGRESSCAST_DEMO_PACE": "0.02"}
    ).start()
    try:
        page.add_init_script(CHIP_RECORDER)
        page.goto(demo.url + "/")
        expect(page.locator(".demo-banner")).to_contain_text("Demo mode")
        expect(page.locator("#who")).to_have_text("Signed in as demo")
        # A few demo jobs run to their end: completed ones at 100 %. (Not a
        # batch: its card is a group's, with one stage and its documents inside.)
        finished = page.locator('article.job[data-status="completed"]:not(:has(.job-kids))')
        expect(finished.first).to_be_visible(timeout=30_000)
        first = finished.first
        expect(first.locator(".pct")).to_have_text("100%")
        expect_chips(first, ["done"] * 4)
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected")

        # The newest finished cards show exactly what the server says (older
        # ones may scroll off the first page while the demo goes on).
        ids = page.locator("article.job").evaluate_all(
            "els => els.filter((e) => ['completed', 'failed'].includes(e.dataset.status))"
            ".map((e) => e.dataset.jobId)"
        )
        assert ids
        for job_id in ids[:4]:
            expect_card_matches(card(page, job_id), get_job(demo, None, job_id))
        for job_id, history in chip_log(page).items():
            assert_stages_moved_in_order(history, job_id)
    finally:
        demo.stop()


def test_a_warm_job_shows_its_range_on_its_card_and_its_timeline(live_server, user, page):
    """With 3 runs of its kind in the store, a job's ETA is a range: the card
    says "7–13 min" (not a precise number it doesn't have), the exact seconds
    sit in the title, and the job page's timeline shows the same range."""
    kind = f"range check {user}"
    store = SQLiteStore(str(live_server.workdir / "progresscast.db"))  # the server's own
    try:
        now = time.time()
        for i, scale in enumerate((1.0, 1.5, 2.0)):  # runs of 400, 600 and 800 s
            stages = [[s["name"], 400.0 * s["weight"] * scale] for s in STAGES]
            run = {"job_id": f"seed-{i}", "finished_at": now - 60 * (3 - i), "stages": stages}
            store.add_run(kind, {**run, "elapsed": 400.0 * scale}, keep=20)
    finally:
        store.close()
    job_id = create_job(live_server, user, name="warm.pdf", kind=kind, start=True)["job_id"]
    post(live_server, user, job_id, type="progress_update", stage="parsing", stage_progress=10)
    snap = get_job(live_server, user, job_id)
    low, eta, high = snap["eta_low"], snap["eta_seconds"], snap["eta_high"]
    assert low is not None and low < eta < high, snap  # the server gave a range

    page.goto(dashboard_url(live_server, user))
    shown = card(page, job_id).locator("dd.eta")
    expect(shown).to_have_text(re.compile(r"^\d+–\d+ min$"))
    a, b = (int(x) for x in re.findall(r"\d+", shown.inner_text()))
    assert a * 60 <= low + 30 and high - 30 <= b * 60, (a, b, low, high)  # whole minutes
    expect(shown).to_have_attribute(
        "title", f"{round(eta)} s left (likely {round(low)}–{round(high)} s)"
    )

    page.goto(dashboard_url(live_server, user, f"/jobs/{job_id}"))
    expect(page.locator("#events tr").nth(0).locator("td.details")).to_contain_text(
        f"ETA {a}–{b} min"
    )
