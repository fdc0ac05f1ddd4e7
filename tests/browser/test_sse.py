"""A browser's ``EventSource`` follows a job over SSE (issue 15), with a
stream token minted by the page: EventSource cannot send headers."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import dashboard_url
from tests.harness import token_for

pytestmark = [pytest.mark.server, pytest.mark.browser]

#: minted by the page with its bearer token, then handed to EventSource
OPEN_STREAM = """async ([jobId, token]) => {
  const r = await fetch("/api/stream-tokens", {
    method: "POST",
    headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
    body: JSON.stringify({job_id: jobId}),
  });
  const {token: streamToken} = await r.json();
  const log = document.createElement("pre");
  log.id = "sse-log";
  document.body.append(log);
  window.sseSeqs = [];
  const es = new EventSource(`/api/jobs/${jobId}/stream?stream_token=${streamToken}`);
  const show = (m) => {
    const data = JSON.parse(m.data);
    window.sseSeqs.push(data.seq);
    log.textContent += `${m.type} ${data.seq} ${data.progress}\\n`;
  };
  for (const type of ["snapshot", "job_started", "progress_update", "stage_completed"]) {
    es.addEventListener(type, show);
  }
  es.addEventListener("job_completed", (m) => { show(m); es.close(); });
  await new Promise((resolve, reject) => {
    es.addEventListener("snapshot", resolve, {once: true});
    es.onerror = () => reject(new Error("EventSource failed"));
  });
}"""


def test_an_eventsource_shows_a_job(live_server, page, user):
    job = live_server.http(
        "POST", "/api/jobs", user, json={"name": "sse", "stages": [{"name": "only"}]}
    ).json()["job_id"]
    page.goto(dashboard_url(live_server, user))
    page.evaluate(OPEN_STREAM, [job, token_for(user)])
    log = page.locator("#sse-log")
    expect(log).to_contain_text("snapshot 1 0")
    for event in (
        {"type": "job_started"},
        {"type": "progress_update", "stage": "only", "stage_progress": 40},
        {"type": "job_completed"},
    ):
        assert live_server.http("POST", f"/api/jobs/{job}/events", user, json=event).ok
    expect(log).to_contain_text("job_completed 5 100")
    assert "progress_update 3 40" in log.text_content()
    assert page.evaluate("window.sseSeqs") == [1, 2, 3, 4, 5]
