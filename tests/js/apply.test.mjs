// The client's resume rules, driven step by step through a scripted socket,
// so that orderings a real server produces only by chance (a live event
// before the join ack, a truncated history, a gap) are tested every time.
// What crosses a real wire is in client.test.mjs.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent, createClient } from "../../src/progresscast/flask/static/progresscast.js";
import { FakeSocket } from "./fake_socket.mjs";

const STAGES = [
  { name: "a", weight: 0.5 },
  { name: "b", weight: 0.25 },
  { name: "c", weight: 0.25 },
];
const TS = "2026-11-22T14:35:33.600Z";

// The events of a job: started (1), progress in a (2), a→b (3), progress in b (4), completed (5, 6).
function history(jobId = "j1") {
  const base = { job_id: jobId, ts: TS };
  return [
    { ...base, seq: 1, type: "job_started", name: "doc", stages: STAGES, owner: "u", metadata: {} },
    {
      ...base,
      seq: 2,
      type: "progress_update",
      stage: "a",
      stage_progress: 50,
      progress: 25,
      message: "half",
      eta_seconds: 3,
      elapsed_seconds: 1,
    },
    {
      ...base,
      seq: 3,
      type: "stage_completed",
      stage: "a",
      next_stage: "b",
      progress: 50,
      elapsed_seconds: 1.5,
    },
    {
      ...base,
      seq: 4,
      type: "progress_update",
      stage: "b",
      stage_progress: 40,
      progress: 60,
      message: "b 40",
      eta_seconds: 2,
      elapsed_seconds: 2,
    },
    {
      ...base,
      seq: 5,
      type: "stage_completed",
      stage: "b",
      next_stage: null,
      progress: 100,
      elapsed_seconds: 3,
    },
    {
      ...base,
      seq: 6,
      type: "job_completed",
      progress: 100,
      result: { ok: 1 },
      elapsed_seconds: 3,
      message: null,
    },
  ];
}

const fold = (events, snap = null) => events.reduce((s, ev) => applyEvent(s, ev) ?? s, snap);

function fakeClient(t) {
  const socket = new FakeSocket();
  const pc = createClient({ io: () => socket, token: "t" });
  t.after(() => pc.close());
  return { pc, socket };
}

const snapshotAt = (seq, jobId = "j1") => ({
  ...fold(history(jobId).slice(0, seq)),
  elapsed_seconds: 9,
});

test("applyEvent mirrors the server's state machine", () => {
  const events = history();
  const running = fold(events.slice(0, 4));
  assert.equal(running.status, "running");
  assert.equal(running.stage, "b");
  assert.deepEqual(
    running.stages.map((s) => [s.status, s.progress]),
    [
      ["completed", 100],
      ["running", 40],
      ["pending", 0],
    ],
  );
  assert.equal(running.message, "b 40");
  const done = fold(events);
  assert.equal(done.status, "completed");
  assert.equal(done.stage, null);
  assert.equal(done.message, null);
  assert.deepEqual(
    done.stages.map((s) => s.status),
    ["completed", "completed", "skipped"],
  );
  assert.deepEqual(done.result, { ok: 1 });
  assert.equal(done.seq, 6);
});

test("applyEvent drops duplicates and stale events, and needs a base for mid-job events", () => {
  const events = history();
  const snap = fold(events.slice(0, 4));
  assert.equal(applyEvent(snap, events[3]), snap); // duplicate
  assert.equal(applyEvent(snap, events[1]), snap); // stale
  assert.equal(applyEvent(null, events[2]), null); // nothing to apply it to
  // Everything twice, and out of order: the same result as once, in order.
  const shuffled = [events[0], events[2], events[1], ...events, events[4], ...events];
  const sorted = [...shuffled].sort((a, b) => a.seq - b.seq);
  assert.deepEqual(fold(sorted), fold(events));
});

test("a failure marks its stage, keeps the error, and skips nothing else", () => {
  const [started, progress] = history();
  const failed = fold([
    started,
    progress,
    {
      job_id: "j1",
      seq: 3,
      ts: TS,
      type: "job_failed",
      stage: "a",
      error: { message: "bad table", type: "TableError" },
      progress: 30,
      // the pipeline's last numbers (extension)
      stage_progress: 60,
      message: "page 6",
      elapsed_seconds: 4.5,
    },
  ]);
  assert.equal(failed.status, "failed");
  assert.equal(failed.stage_progress, 60);
  assert.equal(failed.stages[0].progress, 60);
  assert.equal(failed.message, "page 6");
  assert.equal(failed.elapsed_seconds, 4.5);
  assert.deepEqual(failed.error, { message: "bad table", stage: "a", type: "TableError" });
  assert.deepEqual(
    failed.stages.map((s) => s.status),
    ["failed", "pending", "pending"],
  );
  assert.equal(failed.eta_seconds, null);
  assert.equal(failed.progress, 30);
});

test("a jump forward marks the stages in between skipped", () => {
  const [started] = history();
  const jumped = fold([
    started,
    {
      job_id: "j1",
      seq: 2,
      ts: TS,
      type: "stage_completed",
      stage: "a",
      next_stage: "c",
      progress: 75,
      elapsed_seconds: 1,
    },
  ]);
  assert.deepEqual(
    jumped.stages.map((s) => s.status),
    ["completed", "skipped", "running"],
  );
  assert.equal(jumped.stage, "c");
});

test("live events that beat the join ack are buffered, then applied after the ack's events", async (t) => {
  const { pc, socket } = fakeClient(t);
  const seen = [];
  const states = [];
  pc.watch("j1", (job) => states.push(job.seq), { onEvent: (ev) => seen.push(ev.seq) });
  socket.serverConnect();
  const first = socket.take("join_job");
  assert.deepEqual(first.payload, { job_id: "j1" }); // nothing known yet: no since
  await socket.reply(first, { ok: true, job: snapshotAt(2) });
  assert.equal(pc.job("j1").seq, 2);

  socket.serverDrop();
  assert.equal(pc.state, "reconnecting");
  socket.serverConnect();
  const join = socket.take("join_job");
  assert.deepEqual(join.payload, { job_id: "j1", since: 2 });
  const events = history();
  socket.fire("stage_completed", events[2]); // seq 3, live, before the ack
  socket.fire("progress_update", events[3]); // seq 4, live, before the ack
  assert.equal(pc.job("j1").seq, 2, "buffered until the ack");
  await socket.reply(join, { ok: true, job: snapshotAt(3), events: [events[2]] });
  assert.equal(pc.job("j1").seq, 4);
  assert.deepEqual(seen, [3, 4], "each event once, in order");
  socket.fire("progress_update", events[3]); // a duplicate after all
  assert.deepEqual(seen, [3, 4]);
  assert.deepEqual(states, [2, 4], "one snapshot per batch, never backwards");
});

test("the ack's snapshot is adopted when the client has caught up to it", async (t) => {
  const { pc, socket } = fakeClient(t);
  pc.watch("j1", () => {});
  socket.serverConnect();
  await socket.reply(socket.take("join_job"), { ok: true, job: snapshotAt(2) });
  socket.serverDrop();
  socket.serverConnect();
  const truth = { ...snapshotAt(4), cancel_requested: "user asked", elapsed_seconds: 42 };
  await socket.reply(socket.take("join_job"), {
    ok: true,
    job: truth,
    events: history().slice(2, 4),
  });
  assert.deepEqual(pc.job("j1"), truth);
});

test("a truncated ack resets the job from the ack's snapshot", async (t) => {
  const { pc, socket } = fakeClient(t);
  pc.watch("j1", () => {});
  socket.serverConnect();
  await socket.reply(socket.take("join_job"), { ok: true, job: snapshotAt(2) });
  socket.serverDrop();
  socket.serverConnect();
  const reset = { ...snapshotAt(5), message: "from the snapshot" };
  await socket.reply(socket.take("join_job"), {
    ok: true,
    job: reset,
    events: [],
    truncated: true,
  });
  assert.deepEqual(pc.job("j1"), reset);
});

test("a gap in live events makes the client catch up with since", async (t) => {
  const { pc, socket } = fakeClient(t);
  const seen = [];
  pc.watch("j1", () => {}, { onEvent: (ev) => seen.push(ev.seq) });
  socket.serverConnect();
  await socket.reply(socket.take("join_job"), { ok: true, job: snapshotAt(2) });
  const events = history();
  socket.fire("progress_update", events[3]); // seq 4: seq 3 went missing
  const catchUp = socket.take("join_job");
  assert.deepEqual(catchUp.payload, { job_id: "j1", since: 2 });
  await socket.reply(catchUp, { ok: true, job: snapshotAt(4), events: events.slice(2, 4) });
  assert.deepEqual(seen, [3, 4]);
});

test("history: true replays the stored events through onEvent first", async (t) => {
  const { pc, socket } = fakeClient(t);
  const seen = [];
  pc.watch("j1", () => {}, { history: true, onEvent: (ev) => seen.push(ev.seq) });
  socket.serverConnect();
  const join = socket.take("join_job");
  assert.deepEqual(join.payload, { job_id: "j1", since: 0 });
  await socket.reply(join, { ok: true, job: snapshotAt(3), events: history().slice(0, 3) });
  socket.fire("progress_update", history()[3]);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  socket.serverDrop();
  socket.serverConnect();
  assert.deepEqual(socket.take("join_job").payload, { job_id: "j1", since: 4 });
});

test("watchAll: snapshots from the ack, then live events; new jobs appear", async (t) => {
  const { pc, socket } = fakeClient(t);
  const calls = [];
  pc.watchAll((jobs, job) => calls.push([jobs.size, job?.job_id ?? null]));
  socket.serverConnect();
  const watch = socket.take("watch_jobs");
  const [started] = history("j2");
  socket.fire("job_started", started); // a new job, before the ack: buffered
  await socket.reply(watch, { ok: true, jobs: [snapshotAt(4, "j1")] });
  assert.deepEqual(calls, [
    [1, null],
    [2, "j2"],
  ]);
  socket.fire("progress_update", history("j1")[4 - 1]); // duplicate of seq 4
  assert.equal(calls.length, 2);
  // A job we have never seen, mid-way: fetched with a join, then left again.
  socket.fire("progress_update", { ...history("j3")[1], seq: 7 });
  const join = socket.take("join_job");
  assert.deepEqual(join.payload, { job_id: "j3" });
  await socket.reply(join, { ok: true, job: { ...snapshotAt(2, "j3"), seq: 7 } });
  assert.equal(pc.job("j3").seq, 7);
  assert.ok(socket.requests.some((r) => r.event === "leave_job" && r.payload.job_id === "j3"));
});

test("a job that ends is read once more, so its snapshot is the server's", async (t) => {
  const { pc, socket } = fakeClient(t);
  pc.watch("j1", () => {});
  socket.serverConnect();
  await socket.reply(socket.take("join_job"), { ok: true, job: snapshotAt(5) });
  socket.fire("job_completed", history()[5]);
  const reread = socket.take("join_job");
  assert.deepEqual(reread.payload, { job_id: "j1", since: 6 });
  const truth = { ...snapshotAt(6), message: "last words", cancel_requested: "late" };
  await socket.reply(reread, { ok: true, job: truth, events: [] });
  assert.deepEqual(pc.job("j1"), truth);
  assert.equal(socket.requests.filter((r) => r.event === "join_job").length, 0, "only once");
});

test("connection states and the token refetch on refusal", async (t) => {
  const socket = new FakeSocket();
  let fetched = 0;
  const pc = createClient({
    io: () => socket,
    getToken: async () => `tok${++fetched}`,
    reconnectionDelay: 1,
    reconnectionDelayMax: 2,
  });
  t.after(() => pc.close());
  const states = [];
  pc.onConnectionState((s) => states.push(s));
  const auth = await new Promise((resolve) => pc._auth(resolve));
  assert.deepEqual(auth, { token: "tok1" });
  socket.active = false; // a refusal: Socket.IO does not retry by itself
  let reconnects = 0;
  socket.connect = () => reconnects++;
  socket.fire("connect_error", Object.assign(new Error("no"), { data: { code: "unauthorized" } }));
  assert.deepEqual(await new Promise((resolve) => pc._auth(resolve)), { token: "tok2" });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(reconnects, 1, "retried after a backoff");
  socket.serverConnect();
  socket.serverDrop();
  pc.close();
  assert.deepEqual(states, ["reconnecting", "connected", "reconnecting", "offline"]);
});

test("watchAll keeps at most `keep` jobs, letting the oldest finished ones go", async (t) => {
  const { pc, socket } = fakeClient(t);
  pc.watchAll(() => {}, { keep: 2 });
  socket.serverConnect();
  const done = (id, minute) => ({
    ...snapshotAt(6, id),
    created_at: `2026-11-22T14:0${minute}:00.000Z`,
  });
  const running = { ...snapshotAt(2, "run"), created_at: "2026-11-22T14:00:00.000Z" };
  await socket.reply(socket.take("watch_jobs"), {
    ok: true,
    jobs: [done("old", 1), running, done("new", 3)],
  });
  assert.deepEqual(
    [...pc.jobs.keys()].sort(),
    ["new", "run"],
    "the running one stays, however old",
  );
  socket.fire("job_started", history("newest")[0]);
  assert.deepEqual([...pc.jobs.keys()].sort(), ["newest", "run"]);
});
