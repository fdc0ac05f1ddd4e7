"""examples/celery_app as its README runs it: a real Celery worker
(``celery -A tasks worker``) and the Flask app under gunicorn + eventlet, on a
real redis-server, driven in headless Chromium: start a task from the page,
watch it to the end, and cancel another from the page.

The page loads the Socket.IO client from a CDN; the browser here has no
internet, so the CDN is served from node_modules.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator

import pytest
import requests

from tests.harness import (
    ROOT,
    SECRET,
    AppProcess,
    CeleryWorker,
    RedisServer,
    free_port,
    gunicorn_cmd,
    log_tail,
    require_component,
)

pytestmark = [pytest.mark.server, pytest.mark.browser]

EXAMPLE = ROOT / "examples" / "celery_app"
SOCKETIO_ESM = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.esm.min.js"
#: the example's EXAMPLE_PACE here: 40 frames take about half a second
PACE = "0.2"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Iterator[AppProcess]:
    for module in ("celery", "gunicorn", "eventlet", "flask_socketio"):
        require_component(importlib.util.find_spec(module) is not None, module)
    workdir = tmp_path_factory.mktemp("celery_app")
    redis = RedisServer(workdir).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROGRESSCAST_")}
    env.pop("SOCKETIO_CLIENT_URL", None)  # the page's default: the CDN
    env.update(
        REDIS_URL=f"redis://127.0.0.1:{redis.port}",
        EXAMPLE_PACE=PACE,
        SECRET_KEY=SECRET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    worker = web = None
    try:
        worker = CeleryWorker(workdir, "tasks", "threads", "celery", env, cwd=EXAMPLE).start()
        port = free_port()
        web = AppProcess(
            gunicorn_cmd("eventlet", port, "app:app"),
            cwd=EXAMPLE,
            env=env,
            port=port,
            log_path=workdir / "web.log",
            health_path="/",
        ).start()
        yield web
    finally:
        if web is not None:
            web.stop()
        if worker is not None:
            worker.stop()
        redis.stop()
    assert "Traceback" not in log_tail(workdir / "web.log", 10**6)
    assert "Traceback" not in log_tail(worker.log_path, 10**6)


def offline_cdn(route) -> None:
    """jsDelivr's socket.io-client ESM build, served from node_modules."""
    if route.request.url.endswith("/socket.io-client@4.8.1/dist/socket.io.esm.min.js"):
        route.fulfill(
            path=SOCKETIO_ESM,
            headers={
                "Content-Type": "text/javascript; charset=utf-8",
                "Access-Control-Allow-Origin": "*",
            },
        )
    else:
        route.abort()


@pytest.fixture
def page(context, page_errors):
    context.route("https://cdn.jsdelivr.net/**", offline_cdn)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    return page


def sign_in_and_start(page, app: AppProcess, user: str, video: str, frames: int) -> str:
    from playwright.sync_api import expect

    page.goto(app.url + "/")
    page.get_by_label("Your name").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me")).to_have_text(user)
    page.get_by_label("Video").fill(video)
    page.get_by_label("Frames").fill(str(frames))
    page.get_by_role("button", name="Transcode a video").click()
    job = page.locator("#job")
    expect(job).to_be_visible()
    expect(job).to_have_attribute("data-job-id", re.compile(r"^[0-9a-f-]{36}$"))
    return job.get_attribute("data-job-id")


def history(app: AppProcess, page, job_id: str) -> list[dict]:
    """The job's stored events, over REST with the page's session cookie."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    r = requests.get(f"{app.url}/progress/api/jobs/{job_id}/events", cookies=cookies, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def test_a_task_sent_from_the_page_is_watched_to_its_end(example, page):
    from playwright.sync_api import expect

    job_id = sign_in_and_start(page, example, "alice", "cat.mp4", 40)
    job = page.locator("#job")
    expect(job).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
    expect(page.locator("#bar")).to_have_js_property("value", 100)
    expect(page.locator("#name")).to_have_text("Transcode cat.mp4")
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()

    events = history(example, page, job_id)
    assert events[0]["type"] == "job_queued" and events[0]["owner"] == "alice"
    assert [e["stage"] for e in events if e["type"] == "stage_completed"] == [
        "download",
        "transcode",
        "publish",
    ]
    assert events[-1]["result"] == {"video": "cat.mp4", "frames": 40}


def test_cancel_on_the_page_stops_the_task(example, page):
    from playwright.sync_api import expect

    job_id = sign_in_and_start(page, example, "bob", "long.mp4", 100_000)
    job = page.locator("#job")
    expect(job).to_have_attribute("data-status", "running", timeout=TIMEOUT_MS)
    expect(page.locator("#stage")).to_contain_text("transcode", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Cancel").click()
    expect(job).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
    expect(page.locator("#status")).to_have_text("cancelled")

    cancelled = history(example, page, job_id)[-1]
    assert cancelled["type"] == "job_cancelled"
    assert cancelled["reason"] == "cancelled from the page"


def test_a_group_of_tasks_is_one_bar_with_its_videos_listed(example, page):
    from playwright.sync_api import expect

    sign_in_and_start(page, example, "carol", "warmup.mp4", 8)
    page.get_by_role("button", name="Import 3 videos").click()
    job = page.locator("#job")
    expect(page.locator("#name")).to_have_text("Import 3 videos")
    group_id = job.get_attribute("data-job-id")
    # while it runs: its count in jobs, and its videos, each with its own status
    expect(page.locator("#children li")).to_have_count(3, timeout=TIMEOUT_MS)
    expect(job).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
    expect(page.locator("#bar")).to_have_js_property("value", 100)
    expect(page.locator("#children li[data-status=completed]")).to_have_count(3, timeout=TIMEOUT_MS)
    expect(page.locator("#children")).to_contain_text("clip-02.mp4: completed 100%")

    events = history(example, page, group_id)
    assert events[0]["children"]["total"] == 3 and events[-1]["type"] == "job_completed"
    counted = [e for e in events if e["type"] == "progress_update"]
    assert counted and counted[-1]["unit"] == "jobs" and counted[-1]["n"] == 3
