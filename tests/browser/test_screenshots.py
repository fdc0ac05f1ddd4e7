"""The dashboard as people see it: a realistic set of jobs, in light and dark,
wide and narrow. `make screenshots` (SCREENSHOTS=1) writes docs/dashboard.png;
otherwise the pictures go to the test's tmp folder."""

from __future__ import annotations

import os
import time

import pytest
from playwright.sync_api import expect

from progresscast import ProgressTracker, open_store
from tests.browser.conftest import dashboard_url
from tests.harness import ROOT, ServerProcess

pytestmark = [pytest.mark.server, pytest.mark.browser]

DOCUMENT = {"parsing": 0.15, "analyzing": 0.60, "integrating": 0.20, "formatting": 0.05}
IMPORT = {"download": 1, "validate": 1, "load": 4}


def seed_showcase(store_url: str, owner: str) -> None:
    """Jobs of the last half hour, written through the tracker with a clock set
    in the past, so times, ETAs and elapsed times look as they would."""
    now = time.time()
    clock = [now]
    store = open_store(store_url)
    tracker = ProgressTracker(store, clock=lambda: clock[0])

    def job(name, stages, ago, steps, metadata=None, start=True):
        clock[0] = now - ago
        job_id = tracker.create_job(
            name, stages, owner=owner, metadata=metadata, start=start
        ).job_id
        for after, kind, fields in steps:
            clock[0] = now - ago + after
            tracker.record(job_id, kind, **fields)

    def progress(stage, pct, pages=None, total=None):
        message = f"{stage} page {pages} of {total}" if pages else None
        return {"stage": stage, "stage_progress": pct, "message": message}

    try:
        job(
            "annual-report-2025.pdf",
            DOCUMENT,
            1680,
            [
                *[(t, "progress_update", progress("parsing", p)) for t, p in ((20, 50), (41, 100))],
                *[
                    (41 + t, "progress_update", progress("analyzing", p, p * 2, 212))
                    for t, p in ((60, 30), (120, 62), (180, 100))
                ],
                (250, "progress_update", progress("integrating", 100)),
                (266, "progress_update", progress("formatting", 100)),
                (271, "job_completed", {"result": {"pages": 212, "issues_found": 4}}),
            ],
            metadata={"pages": 212},
        )
        job(
            "invoice-batch-07.pdf",
            DOCUMENT,
            1020,
            [
                (12, "progress_update", progress("parsing", 100)),
                (30, "progress_update", progress("analyzing", 35, 23, 65)),
                (
                    44,
                    "job_failed",
                    {
                        "stage_progress": 63,
                        "message": "analyzing page 41 of 65",
                        "error": {
                            "type": "TableStructureError",
                            "message": "table on page 41 has no header row",
                        },
                    },
                ),
            ],
        )
        job(
            "customer-import.csv",
            IMPORT,
            720,
            [
                (30, "progress_update", {"stage": "download", "stage_progress": 100}),
                (52, "progress_update", {"stage": "validate", "stage_progress": 100}),
                (
                    80,
                    "progress_update",
                    {"stage": "load", "stage_progress": 22, "message": "rows 44,000 of 200,000"},
                ),
                (95, "job_cancelled", {"reason": "cancelled on request"}),
            ],
        )
        job(
            "quarterly-report.pdf",
            DOCUMENT,
            192,
            [
                (18, "progress_update", progress("parsing", 100)),
                *[
                    (18 + t, "progress_update", progress("analyzing", p, round(p * 1.64), 164))
                    for t, p in ((30, 14), (60, 27), (90, 39), (120, 47), (150, 51), (172, 54))
                ],
            ],
        )
        job(
            "contract-2291.pdf",
            DOCUMENT,
            38,
            [
                (t, "progress_update", progress("parsing", p, round(p * 0.84), 84))
                for t, p in ((10, 22), (20, 41), (30, 58), (37, 70))
            ],
        )
        job("minutes-0412.pdf", DOCUMENT, 4, [], start=False)
    finally:
        store.close()


@pytest.fixture
def showcase(tmp_path):
    server = ServerProcess(tmp_path)
    seed_showcase(server.env["PROGRESSCAST_STORE_URL"], "maria")
    server.start()
    yield server
    server.stop()


def test_dashboard_screenshots(showcase, browser, tmp_path):
    out = ROOT / "docs" if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    shots = [
        ("dashboard.png", "light", 1280, 900),
        ("dashboard-dark.png", "dark", 1280, 900),
        ("dashboard-narrow.png", "light", 390, 844),
        ("dashboard-narrow-dark.png", "dark", 390, 844),
    ]
    for name, scheme, width, height in shots:
        ctx = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=scheme,
            reduced_motion="reduce",
        )
        try:
            page = ctx.new_page()
            page.goto(dashboard_url(showcase, "maria"))
            expect(page.locator("article.job")).to_have_count(6)
            expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
            counts = page.locator(".filters .count")
            expect(counts).to_have_text(["6", "3", "1", "1", "1"])
            # Nothing sticks out sideways, however narrow the screen.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.evaluate("document.fonts.ready")
            # docs/ keeps the light, wide one; the rest are for looking at locally.
            target = out if name == "dashboard.png" else tmp_path
            page.screenshot(path=str(target / name), full_page=width > 600, animations="disabled")
        finally:
            ctx.close()
    assert (out / "dashboard.png").stat().st_size > 10_000


VIDEO = {"fetch": 1, "encode": 3}


def seed_groups(store_url: str, owner: str) -> dict[str, str]:
    """A group of videos half-way (one failed, two encoding with counts and a
    rate), a counted import and a crawl counting pages with no total; written
    through the tracker with a clock in the past. Returns names → job ids."""
    now = time.time()
    clock = [now - 600]
    store = open_store(store_url)
    tracker = ProgressTracker(store, clock=lambda: clock[0])

    def at(seconds):
        clock[0] = now - 600 + seconds

    try:
        parent, kids = tracker.group(
            "import 6 videos",
            [{"name": f"lecture-{i:02d}.mp4", "stages": VIDEO} for i in range(1, 7)],
            owner=owner,
        )
        ids = {"group": parent.job_id}
        for i, kid in enumerate(kids[:5]):
            at(20 + 30 * i)
            tracker.record(kid.job_id, "job_started")
            for t, mb in ((5, 60), (15, 180), (25, 240)):
                at(20 + 30 * i + t)
                tracker.record(
                    kid.job_id, "progress_update", stage="fetch", n=mb, total=240, unit="MB"
                )
            if i < 2:
                at(20 + 30 * i + 28)
                tracker.record(kid.job_id, "job_completed", result={"frames": 54000})
            elif i == 2:
                at(20 + 30 * i + 28)
                tracker.record(
                    kid.job_id,
                    "job_failed",
                    error={"type": "CodecError", "message": "unsupported codec: prores 4444"},
                )
        for i, frames in ((3, 31200), (4, 8400)):
            for t, n in ((200, frames // 3), (260, frames)):
                at(t + 10 * i)
                tracker.record(
                    kids[i].job_id,
                    "progress_update",
                    stage="encode",
                    n=n,
                    total=54000,
                    unit="frames",
                )
        at(300)
        job = tracker.create_job(
            "customer-import.csv",
            {"download": 1, "validate": 1, "load": 4},
            owner=owner,
            start=True,
        )
        ids["import"] = job.job_id
        for t, stage in ((320, "download"), (340, "validate")):
            at(t)
            tracker.record(job.job_id, "progress_update", stage=stage, stage_progress=100)
        for t, n in ((360, 0), (400, 5200), (430, 12400)):
            at(t)
            tracker.record(
                job.job_id, "progress_update", stage="load", n=n, total=50000, unit="rows"
            )
        at(500)
        crawl = tracker.create_job(
            "crawl docs.example.org", {"crawl": 3, "index": 1}, owner=owner, start=True
        )
        ids["crawl"] = crawl.job_id
        for t, n in ((510, 80), (540, 610), (580, 1240)):
            at(t)
            tracker.record(crawl.job_id, "progress_update", stage="crawl", n=n, unit="pages")
        return ids
    finally:
        store.close()


def test_dashboard_group_screenshot(browser, tmp_path):
    """docs/dashboard-group.png: a group with its children nested, a counted
    job with its rate, and a stage without a total (SCREENSHOTS=1)."""
    out = ROOT / "docs" if os.environ.get("SCREENSHOTS") == "1" else tmp_path
    server = ServerProcess(tmp_path)
    ids = seed_groups(server.env["PROGRESSCAST_STORE_URL"], "maria")
    server.start()
    ctx = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme="light", reduced_motion="reduce"
    )
    try:
        page = ctx.new_page()
        page.goto(dashboard_url(server, "maria"))
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        expect(page.locator("article.job")).to_have_count(3)  # the children are in their group
        group = page.locator(f'article.job[data-job-id="{ids["group"]}"]')
        expect(group.locator(".job-counts")).to_have_text("3/6 jobs done · 1 failed")
        expect(group.locator("li.kid")).to_have_count(6)
        expect(group.get_by_role("button", name="6 jobs in this group")).to_have_attribute(
            "aria-expanded", "false"
        )
        group.get_by_role("button", name="6 jobs in this group").click()
        imports = page.locator(f'article.job[data-job-id="{ids["import"]}"] .job-counts')
        expect(imports).to_contain_text("12,400/50,000 rows · ")
        crawl = page.locator(f'article.job[data-job-id="{ids["crawl"]}"]')
        expect(crawl.get_by_role("progressbar")).to_have_attribute("aria-busy", "true")
        page.evaluate("document.fonts.ready")
        page.screenshot(
            path=str(out / "dashboard-group.png"), full_page=True, animations="disabled"
        )
    finally:
        ctx.close()
        server.stop()
    assert (out / "dashboard-group.png").stat().st_size > 10_000
