// The golden state machine fixtures (tests/fixtures/state_machine/, written by
// tests/fixtures/generate.py from the server's own transitions): applyEvent
// must reproduce every snapshot in them from the events alone, as the Python
// client's apply_event does in tests/unit/test_golden_fixtures.py.
//
// The one thing a client takes from elsewhere than events: a cancel_job
// request for a running job publishes no event, only the snapshot's
// cancel_requested changes, and the client learns it from its request's ack
// (ProgressClient.cancel). replay() sets it from the request; everything else
// is compared whole.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { applyEvent } from "../../src/progresscast/flask/static/progresscast.js";

const DIR = new URL("../fixtures/state_machine/", import.meta.url);
const FILES = readdirSync(DIR)
  .filter((name) => name.endsWith(".json"))
  .sort();

const load = (name) => JSON.parse(readFileSync(new URL(name, DIR), "utf8"));

function replay(fixture, start) {
  let snap = start;
  fixture.steps.forEach((step, n) => {
    const { request } = step;
    if (step.events.length === 0) {
      assert.equal(request.type, "cancel_job", "the only request without events");
      snap = { ...snap, cancel_requested: request.reason };
    }
    for (const { event, snapshot } of step.events) {
      const prev = snap;
      const before = structuredClone(prev);
      snap = applyEvent(prev, event);
      assert.deepEqual(prev, before, "pure: the input is left as it was");
      assert.deepEqual(snap, snapshot, `step ${n} ${JSON.stringify(request)}: after ${event.type}`);
    }
    assert.deepEqual(snap, step.snapshot, `step ${n} ${JSON.stringify(request)}`);
  });
  return snap;
}

test("the fixtures are there, and cover every event type", () => {
  assert.ok(FILES.length > 0, `no fixtures in ${DIR.pathname}`);
  const seen = new Set(
    FILES.flatMap((name) =>
      load(name).steps.flatMap((step) => step.events.map(({ event }) => event.type)),
    ),
  );
  assert.deepEqual(
    [...seen].sort(),
    [
      "job_cancelled",
      "job_completed",
      "job_failed",
      "job_queued",
      "job_started",
      "progress_update",
      "stage_completed",
    ],
  );
});

for (const name of FILES) {
  const label = name.replace(/\.json$/, "");
  test(`applyEvent reproduces the server from nothing: ${label}`, () => {
    const final = replay(load(name), null);
    assert.ok(["completed", "failed", "cancelled"].includes(final.status), final.status);
  });
  test(`applyEvent reproduces the server from the initial snapshot: ${label}`, () => {
    const fixture = load(name);
    assert.equal(fixture.initial.seq, 0);
    replay(fixture, fixture.initial);
  });
}
