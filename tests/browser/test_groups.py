"""Groups and counts in the browser (issue 13): a group is one card with its
children nested and collapsible; a counted stage shows its count and rate the
way tqdm does; a stage without a total has an indeterminate bar. Jobs are
created and driven over REST (HTTP ingestion), as pipelines in any language
do, against a real server."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import dashboard_url
from tests.browser.support import card, create_job, get_job, post

pytestmark = [pytest.mark.server, pytest.mark.browser]

VIDEO = [{"name": "fetch", "weight": 1}, {"name": "encode", "weight": 3}]
RATE = r"[\d,.]+"


def create_group(server, user: str, name: str, children: list[str]) -> tuple[dict, list[str]]:
    r = server.http(
        "POST",
        "/api/jobs",
        user=user,
        json={"name": name, "children": [{"name": c, "stages": VIDEO} for c in children]},
    )
    assert r.status_code == 201, r.text
    parent = r.json()
    r = server.http("GET", f"/api/jobs/{parent['job_id']}/children", user=user)
    assert r.status_code == 200, r.text
    return parent, [k["job_id"] for k in r.json()]


def kid(group_card, job_id: str):
    return group_card.locator(f'li.kid[data-job-id="{job_id}"]')


def test_a_group_is_one_card_with_its_children_nested_and_collapsible(live_server, user, page):
    page.goto(dashboard_url(live_server, user))
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    parent, (a, b, c) = create_group(
        live_server, user, "import 3 clips", ["clip-1", "clip-2", "clip-3"]
    )
    group = card(page, parent["job_id"])
    # One card: the children are rows inside it, not cards of their own.
    expect(page.locator("article.job")).to_have_count(1)
    expect(group.locator(".badge")).to_have_text("Queued")
    expect(group.locator(".job-counts")).to_have_text("0/3 jobs done")
    expect(group.locator("li.kid")).to_have_count(3)
    expect(group.locator(".kid-name")).to_have_text(["clip-1", "clip-2", "clip-3"])
    expect(group.get_by_role("list", name="Stages")).to_have_count(0)  # its one stage says nothing
    # Three children: shown at first, and the button hides and shows them.
    toggle = group.get_by_role("button", name="3 jobs in this group")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    list_id = toggle.get_attribute("aria-controls")
    expect(group.get_by_role("list", name="Jobs in import 3 clips")).to_have_attribute(
        "id", list_id
    )
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(kid(group, a)).to_be_hidden()
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(kid(group, a)).to_be_visible()

    # The children run; each row follows its own job, the card its parent.
    for job_id in (a, b, c):
        post(live_server, user, job_id, type="job_started")
    expect(group.locator(".badge")).to_have_text("Running")
    expect(kid(group, a).locator(".kid-status")).to_have_text("Running")
    post(
        live_server, user, a, type="progress_update", stage="encode", n=0, total=600, unit="frames"
    )
    time.sleep(0.2)  # a rate needs two reports at different times
    post(live_server, user, a, type="progress_update", stage="encode", n=300)
    expect(kid(group, a).locator(".kid-detail")).to_have_text(
        re.compile(rf"^encode · 300/600 frames · {RATE} frames/s$")
    )
    expect(kid(group, a).locator(".kid-pct")).to_have_text("62%")  # fetch 25% + encode half of 75%
    row_bar = kid(group, a).get_by_role("progressbar", name="Progress of clip-1")
    expect(row_bar).to_have_attribute("aria-valuenow", "62.5")
    post(live_server, user, a, type="job_completed", result={"frames": 600})
    post(
        live_server,
        user,
        b,
        type="job_failed",
        error={"message": "bad codec", "type": "CodecError"},
    )
    expect(group.locator(".job-counts")).to_have_text("2/3 jobs done · 1 failed")
    expect(kid(group, b)).to_have_attribute("data-status", "failed")
    expect(kid(group, b).locator(".kid-detail")).to_have_text("CodecError: bad codec")
    expect(kid(group, a).locator(".kid-status")).to_have_text("Completed")
    expect(kid(group, a).locator(".kid-detail")).to_have_text("Result: frames 600")
    expect(group.locator(".badge")).to_have_text("Running")  # one child still runs
    post(live_server, user, c, type="job_completed")
    expect(group.locator(".badge")).to_have_text("Failed")
    expect(group.locator(".job-counts")).to_have_text("3/3 jobs done · 1 failed")
    expect(group.locator(".error-type")).to_have_text("children_failed")
    expect(group.locator(".error-message")).to_have_text("1 of 3 jobs failed: clip-2")
    expect(page.locator("article.job")).to_have_count(1)
    # The filters count the group once.
    expect(page.locator(".filters .count")).to_have_text(["1", "0", "0", "1", "0"])

    # A child's row links to its own page, which links back to its group.
    group.get_by_role("link", name="clip-2").click()
    expect(page).to_have_url(f"{live_server.url}/jobs/{b}")
    expect(page.get_by_role("heading", level=1, name="clip-2")).to_be_visible()
    back = page.locator(".crumbs").get_by_role("link", name="import 3 clips")
    expect(page.locator(".crumb-group")).to_contain_text("3/3 jobs done · 1 failed")
    back.click()
    expect(page).to_have_url(f"{live_server.url}/jobs/{parent['job_id']}")
    expect(page.get_by_role("heading", level=1, name="import 3 clips")).to_be_visible()


def test_a_group_of_many_starts_collapsed(live_server, user, page):
    names = [f"album-{i}" for i in range(1, 9)]
    parent, kids = create_group(live_server, user, "nightly thumbnails", names)
    page.goto(dashboard_url(live_server, user))
    group = card(page, parent["job_id"])
    toggle = group.get_by_role("button", name="8 jobs in this group")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(group.locator("li.kid")).to_have_count(8)
    expect(group.locator("li.kid").first).to_be_hidden()
    expect(page.locator("article.job")).to_have_count(1)
    post(live_server, user, kids[0], type="job_started")
    post(live_server, user, kids[0], type="job_completed")
    expect(group.locator(".job-counts")).to_have_text("1/8 jobs done")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(group.locator(".kid-name")).to_have_text(names)  # in creation order
    expect(kid(group, kids[0]).locator(".kid-status")).to_have_text("Completed")


def test_a_groups_page_lists_its_children_live(live_server, user, page):
    parent, (a, b) = create_group(live_server, user, "import 2 clips", ["clip-a", "clip-b"])
    post(live_server, user, a, type="job_started")
    page.goto(dashboard_url(live_server, user, f"/jobs/{parent['job_id']}"))
    expect(page.get_by_role("heading", level=1, name="import 2 clips")).to_be_visible()
    children = page.get_by_role("list", name="Jobs in import 2 clips")
    expect(children.get_by_role("listitem")).to_have_count(2)
    expect(page.get_by_role("button", name="2 jobs in this group")).to_have_attribute(
        "aria-expanded", "true"
    )
    expect(children.get_by_role("link", name="clip-a")).to_have_attribute("href", f"/jobs/{a}")
    expect(children.get_by_role("link", name="clip-b")).to_have_attribute("href", f"/jobs/{b}")
    expect(children.locator(f'li[data-job-id="{a}"] .kid-status')).to_have_text("Running")
    expect(children.locator(f'li[data-job-id="{b}"] .kid-status')).to_have_text("Queued")
    # Live: the parent's events say its children changed; the rows follow.
    post(live_server, user, a, type="progress_update", stage="fetch", n=40, total=160, unit="MB")
    expect(children.locator(f'li[data-job-id="{a}"] .kid-detail')).to_have_text(
        re.compile(r"^fetch · 40/160 MB( · [\d,.]+ MB/s)?$")
    )
    post(live_server, user, b, type="job_started")
    post(live_server, user, a, type="job_completed")
    post(live_server, user, b, type="job_completed")
    expect(children.locator(".kid-status")).to_have_text(["Completed", "Completed"])
    expect(page.locator("article.job .badge").first).to_have_text("Completed")
    expect(page.locator(".job-counts")).to_have_text("2/2 jobs done")
    expect(page.locator("#events tr .etype").first).to_have_text("job_completed")
    # The timeline says what a group's progress updates carry.
    expect(
        page.locator('#events tr[data-type="progress_update"] td.details').first
    ).to_contain_text("2/2 jobs done")


def test_counts_and_rate_on_a_card_like_tqdm(live_server, user, page):
    job = create_job(
        live_server,
        user,
        name="customer-import.csv",
        stages=[{"name": "download", "weight": 1}, {"name": "load", "weight": 3}],
        start=True,
    )
    job_id = job["job_id"]
    page.goto(dashboard_url(live_server, user))
    job_card = card(page, job_id)
    expect(job_card.locator(".badge")).to_have_text("Running")
    expect(job_card.locator(".job-counts")).to_be_hidden()  # nothing counted yet
    post(
        live_server,
        user,
        job_id,
        type="progress_update",
        stage="load",
        n=0,
        total=50000,
        unit="rows",
    )
    expect(job_card.locator(".job-counts")).to_have_text("0/50,000 rows")  # no rate yet
    time.sleep(0.2)
    post(live_server, user, job_id, type="progress_update", stage="load", n=12400)
    expect(job_card.locator(".job-counts")).to_have_text(
        re.compile(rf"^12,400/50,000 rows · {RATE} rows/s$")
    )
    snap = get_job(live_server, user, job_id)
    assert (snap["n"], snap["total"], snap["stage_progress"]) == (12400, 50000, 24.8)
    bar = job_card.get_by_role("progressbar", name="Progress of customer-import.csv")
    expect(bar).to_have_attribute("aria-valuenow", "43.6")  # 25 + 75 × 24.8%
    expect(bar).not_to_have_attribute("aria-busy", "true")
    expect(job_card.locator(".pct")).to_have_text("43%")
    expect(job_card.locator('.chip[data-stage="load"] .sr-only')).to_have_text(": current, 24%")

    # The job fails: the count stays (as it was), the rate goes (nothing runs).
    post(live_server, user, job_id, type="job_failed", error="disk full")
    expect(job_card.locator(".job-counts")).to_have_text("12,400/50,000 rows")


def test_a_stage_without_a_total_has_an_indeterminate_bar(live_server, user, page):
    job = create_job(
        live_server,
        user,
        name="crawl example.org",
        stages=[{"name": "crawl", "weight": 1}, {"name": "index", "weight": 1}],
        start=True,
    )
    job_id = job["job_id"]
    page.goto(dashboard_url(live_server, user))
    job_card = card(page, job_id)
    bar = job_card.get_by_role("progressbar", name="Progress of crawl example.org")
    expect(bar).to_have_attribute("aria-valuenow", "0")
    post(live_server, user, job_id, type="progress_update", stage="crawl", n=100, unit="pages")
    time.sleep(0.2)
    post(live_server, user, job_id, type="progress_update", stage="crawl", n=1240)
    expect(job_card.locator(".job-counts")).to_have_text(
        re.compile(rf"^1,240 pages · {RATE} pages/s$")
    )
    # No value to give: busy, no aria-valuenow, the count in words; no percent shown.
    expect(bar).to_have_attribute("aria-busy", "true")
    expect(bar).not_to_have_attribute("aria-valuenow", re.compile(".*"))
    expect(bar).to_have_attribute("data-indeterminate", "")
    expect(bar).to_have_attribute(
        "aria-valuetext", re.compile(rf"^1,240 pages · {RATE} pages/s, crawl, running$")
    )
    expect(job_card.locator(".pct")).to_have_text("")
    expect(job_card.locator('.chip[data-stage="crawl"]')).to_have_attribute(
        "data-indeterminate", ""
    )
    expect(job_card.locator(".eta")).to_have_text("estimating…")
    # The sweep moves (a CSS animation on the bar).
    animation = bar.evaluate("el => getComputedStyle(el, '::after').animationName")
    assert animation == "sweep"

    # The next stage has no count: a plain bar again, with its value.
    post(live_server, user, job_id, type="stage_completed")
    expect(job_card.locator(".job-counts")).to_be_hidden()
    expect(bar).not_to_have_attribute("aria-busy", "true")
    expect(bar).to_have_attribute("aria-valuenow", "50")
    expect(job_card.locator(".pct")).to_have_text("50%")
    post(live_server, user, job_id, type="job_completed")
    expect(job_card.locator(".badge")).to_have_text("Completed")
