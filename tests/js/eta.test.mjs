// The ETA learned from past runs (docs/protocol.md "ETA, history and learned
// weights", issue 14) in the JS client: applyEvent over events written after
// the protocol (kind, weights, the weights in force at start, eta_low and
// eta_high), and the dashboard's words for an estimate (ui.js formatEta,
// etaTitle). The golden fixtures hold the server's own examples of the same
// rules (golden.test.mjs); these pin down each rule on its own.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent } from "../../src/progresscast/flask/static/progresscast.js";
import { etaTitle, formatEta } from "../../src/progresscast/flask/static/ui.js";

const TS = "2026-11-22T14:35:33.600Z";
const DECLARED = [
  { name: "fetch", weight: 1 },
  { name: "convert", weight: 3 },
];
const LEARNED = [
  { name: "fetch", weight: 0.2 },
  { name: "convert", weight: 0.8 },
];
const COUNTS = { n: null, total: null, unit: null, rate: null };

const fold = (events, snap = null) => events.reduce(applyEvent, snap);
const eta = (job) => [job.eta_seconds, job.eta_low, job.eta_high];

const event = (seq, type, fields = {}) => ({ job_id: "j1", seq, ts: TS, type, ...fields });

const created = (seq, type, fields = {}) =>
  event(seq, type, {
    name: "import 2026-11-22",
    stages: DECLARED,
    owner: "u",
    metadata: {},
    parent_id: null,
    kind: "nightly import",
    weights: "declared",
    ...fields,
  });

const update = (seq, stage, eta_seconds, eta_low = null, eta_high = null) =>
  event(seq, "progress_update", {
    stage,
    stage_progress: 50,
    progress: 10 * seq,
    message: null,
    eta_seconds,
    eta_low,
    eta_high,
    elapsed_seconds: seq,
    ...COUNTS,
  });

const stageDone = (seq, stage, next_stage) =>
  event(seq, "stage_completed", { stage, next_stage, progress: 20, elapsed_seconds: seq });

function ended(seq, type) {
  if (type === "job_completed")
    return event(seq, type, { progress: 100, result: null, elapsed_seconds: 9, message: null });
  const fields = {
    stage: "convert",
    progress: 60,
    stage_progress: 50,
    message: null,
    elapsed_seconds: 9,
    ...COUNTS,
  };
  if (type === "job_failed") fields.error = { message: "disk full", type: "OSError" };
  else fields.reason = "user asked";
  return event(seq, type, fields);
}

// ------------------------------------------------------------ applyEvent

test("a fresh job has its kind, declared weights and no estimate yet", () => {
  for (const type of ["job_queued", "job_started"]) {
    const job = applyEvent(null, created(1, type));
    assert.equal(job.kind, "nightly import");
    assert.equal(job.weights, "declared");
    assert.deepEqual(eta(job), [null, null, null]);
  }
});

test("job_started replaces the stages' weights and says where they came from", () => {
  const queued = applyEvent(null, created(1, "job_queued"));
  assert.deepEqual(
    queued.stages.map((s) => s.weight),
    [1, 3],
  );
  const started = applyEvent(
    queued,
    created(2, "job_started", { stages: LEARNED, weights: "learned" }),
  );
  assert.equal(started.weights, "learned");
  assert.equal(started.kind, "nightly import");
  assert.deepEqual(started.stages, [
    { name: "fetch", weight: 0.2, status: "running", progress: 0 },
    { name: "convert", weight: 0.8, status: "pending", progress: 0 },
  ]);
  assert.deepEqual(
    queued.stages.map((s) => s.weight),
    [1, 3],
    "pure: the input is left as it was",
  );
  // A job created running: its one event sets everything.
  const learned = created(1, "job_started", { stages: LEARNED, weights: "learned" });
  const fresh = applyEvent(null, learned);
  assert.deepEqual(fresh.stages, started.stages);
  assert.equal(fresh.weights, "learned");
});

test("progress updates carry the estimate and its range", () => {
  let job = fold([created(1, "job_started"), update(2, "fetch", 150, 100, 250)]);
  assert.deepEqual(eta(job), [150, 100, 250]);
  job = applyEvent(job, update(3, "fetch", 120)); // fewer than 3 past runs: no range
  assert.deepEqual(eta(job), [120, null, null]);
  job = applyEvent(job, update(4, "fetch", null)); // no signal: nothing invented
  assert.deepEqual(eta(job), [null, null, null]);
});

test("a stage transition keeps the estimate", () => {
  const job = fold([created(1, "job_started"), update(2, "fetch", 150, 100, 250)]);
  const after = applyEvent(job, stageDone(3, "fetch", "convert"));
  assert.equal(after.stage, "convert");
  assert.deepEqual(eta(after), [150, 100, 250]);
});

for (const [type, left] of [
  ["job_completed", 0],
  ["job_failed", null],
  ["job_cancelled", null],
]) {
  test(`${type} clears the range`, () => {
    const events = [created(1, "job_started"), update(2, "fetch", 150, 100, 250)];
    if (type === "job_completed")
      events.push(stageDone(3, "fetch", "convert"), stageDone(4, "convert", null));
    const job = fold([...events, ended(events.length + 1, type)]);
    assert.deepEqual(eta(job), [left, null, null]);
  });
}

test("events from before the extension still apply", () => {
  const { kind, weights, ...old } = created(1, "job_started");
  const { eta_low, eta_high, ...progress } = update(2, "fetch", 30);
  const job = fold([old, progress]);
  assert.equal(job.kind, "import 2026-11-22"); // a job's kind is its name otherwise
  assert.equal(job.weights, "declared");
  assert.deepEqual(eta(job), [30, null, null]);
});

// ------------------------------------------------------------ the wording

const est = (eta_seconds, eta_low = null, eta_high = null) => ({ eta_seconds, eta_low, eta_high });

test("a range reads as one: both ends in one unit when they share it", () => {
  assert.equal(formatEta(est(180, 100, 250)), "2–4 min");
  assert.equal(formatEta(est(70, 40, 120)), "40 s–2 min");
  assert.equal(formatEta(est(5400, 3600, 7200)), "1–2 h");
  assert.equal(formatEta(est(30, 20, 42.4)), "20–42 s");
  assert.equal(formatEta(est(2400, 1500, 5400)), "25 min–1.5 h");
  assert.equal(formatEta(est(null, 100, 250)), "2–4 min");
});

test("a range whose ends read the same is 'about'", () => {
  assert.equal(formatEta(est(180, 170, 190)), "about 3 min");
  assert.equal(formatEta(est(40, 39.6, 40.4)), "about 40 s");
  assert.equal(formatEta(est(6800, 6700, 6900)), "about 1.9 h");
});

test("an estimate alone is 'about'", () => {
  assert.equal(formatEta(est(40)), "about 40 s");
  assert.equal(formatEta(est(185)), "about 3 min");
  assert.equal(formatEta(est(89)), "about 1 min");
  assert.equal(formatEta(est(90)), "about 2 min"); // half up, as cli.py rounds
  assert.equal(formatEta(est(3599)), "about 1 h");
  assert.equal(formatEta(est(5400)), "about 1.5 h");
  assert.equal(formatEta(est(50000)), "about 14 h");
  assert.equal(formatEta(est(0)), "about 0 s");
  assert.equal(formatEta(est(180, 100, null)), "about 3 min", "half a range is no range");
  assert.equal(formatEta({ eta_seconds: 40 }), "about 40 s", "a snapshot from before issue 14");
});

test("no estimate: nothing to show (the card says 'estimating…')", () => {
  assert.equal(formatEta(est(null)), null);
  assert.equal(formatEta({}), null);
  assert.equal(formatEta(null), null);
  assert.equal(formatEta(est(Number.NaN)), null);
  assert.equal(etaTitle(est(null)), "");
});

test("the title gives the seconds behind the words", () => {
  assert.equal(etaTitle(est(142.4, 95, 3210)), "142 s left (likely 95–3,210 s)");
  assert.equal(etaTitle(est(40)), "40 s left");
  assert.equal(etaTitle(est(null, 95, 210)), "likely 95–210 s left");
});
