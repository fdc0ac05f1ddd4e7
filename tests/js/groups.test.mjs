// Counts, units, rates and groups (docs/protocol.md, "Counts, units and
// rates" and "Groups", issue 13) on the JS client: applyEvent over events
// written by hand after the protocol, listChildren against a scripted
// socket, and the dashboard's wording of counts (ui.js). The golden fixtures
// (golden.test.mjs) hold the server's own examples of the same rules.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent, createClient } from "../../src/progresscast/flask/static/progresscast.js";
import {
  formatChildren,
  formatCount,
  formatCounts,
  formatRate,
  isGroup,
  isIndeterminate,
} from "../../src/progresscast/flask/static/ui.js";
import { FakeSocket } from "./fake_socket.mjs";
import {
  api,
  client,
  comparable,
  getJob,
  needsServer,
  post,
  token,
  uniqueUser,
  waitFor,
} from "./helpers.mjs";

const TS = "2026-11-22T14:35:33.600Z";
const fold = (events, snap = null) => events.reduce((s, ev) => applyEvent(s, ev) ?? s, snap);
const COUNTS = ["n", "total", "unit", "rate"];
const counts = (snap) => Object.fromEntries(COUNTS.map((k) => [k, snap[k]]));
const NONE = { n: null, total: null, unit: null, rate: null };

function update(seq, stage, fields, jobId = "j1") {
  return {
    job_id: jobId,
    seq,
    ts: TS,
    type: "progress_update",
    stage,
    stage_progress: 0,
    progress: 0,
    message: null,
    eta_seconds: null,
    elapsed_seconds: seq,
    ...NONE,
    ...fields,
  };
}

// An import: `download` counts 10 files, `load` counts rows with no total.
function counted() {
  const base = { job_id: "j1", ts: TS };
  return [
    {
      ...base,
      seq: 1,
      type: "job_started",
      name: "import.csv",
      owner: "u",
      metadata: {},
      stages: [
        { name: "download", weight: 0.5 },
        { name: "load", weight: 0.5 },
      ],
      parent_id: null,
      children: null,
    },
    update(2, "download", { stage_progress: 50, progress: 25, n: 5, total: 10, unit: "files" }),
    update(3, "download", {
      stage_progress: 100,
      progress: 50,
      n: 10,
      total: 10,
      unit: "files",
      rate: 2.5,
      eta_seconds: 4,
    }),
    {
      ...base,
      seq: 4,
      type: "stage_completed",
      stage: "download",
      next_stage: "load",
      progress: 50,
      elapsed_seconds: 4,
    },
    // indeterminate: a count and a rate, stage_progress as last reported (0), no ETA
    update(5, "load", { progress: 50, n: 12400, total: null, unit: "rows", rate: 850 }),
  ];
}

test("a counted stage: progress_update sets n, total, unit and rate", () => {
  const events = counted();
  assert.deepEqual(counts(fold(events.slice(0, 2))), {
    n: 5,
    total: 10,
    unit: "files",
    rate: null, // until two reports with different times exist
  });
  const full = fold(events.slice(0, 3));
  assert.deepEqual(counts(full), { n: 10, total: 10, unit: "files", rate: 2.5 });
  assert.equal(full.stage_progress, 100);
  assert.equal(isIndeterminate(full), false);
});

test("stage_completed resets the count; the next stage counts without a total", () => {
  const events = counted();
  const between = fold(events.slice(0, 4));
  assert.deepEqual(counts(between), NONE);
  assert.equal(between.stage, "load");
  const indeterminate = fold(events);
  assert.deepEqual(counts(indeterminate), { n: 12400, total: null, unit: "rows", rate: 850 });
  assert.equal(indeterminate.stage_progress, 0);
  assert.equal(indeterminate.eta_seconds, null);
  assert.equal(isIndeterminate(indeterminate), true);
  // A progress update that counts nothing clears what an earlier one counted.
  const plain = applyEvent(indeterminate, update(6, "load", { stage_progress: 10, progress: 55 }));
  assert.deepEqual(counts(plain), NONE);
});

test("job_failed and job_cancelled carry the count as it was; job_completed ends at null", () => {
  const events = counted();
  const ending = { job_id: "j1", seq: 6, ts: TS, stage: "load", progress: 50, stage_progress: 0 };
  const last = { message: null, elapsed_seconds: 6, n: 12400, total: null, unit: "rows", rate: 850 };
  const failed = fold([
    ...events,
    { ...ending, ...last, type: "job_failed", error: { message: "bad row", type: "RowError" } },
  ]);
  assert.equal(failed.status, "failed");
  assert.deepEqual(counts(failed), { n: 12400, total: null, unit: "rows", rate: 850 });
  const cancelled = fold([...events, { ...ending, ...last, type: "job_cancelled", reason: "no" }]);
  assert.equal(cancelled.status, "cancelled");
  assert.deepEqual(counts(cancelled), { n: 12400, total: null, unit: "rows", rate: 850 });

  const base = { job_id: "j1", ts: TS, elapsed_seconds: 7 };
  const completed = fold([
    ...events,
    { ...base, seq: 6, type: "stage_completed", stage: "load", next_stage: null, progress: 100 },
    { ...base, seq: 7, type: "job_completed", progress: 100, result: null, message: null, ...NONE },
  ]);
  assert.equal(completed.status, "completed");
  assert.deepEqual(counts(completed), NONE);
});

test("a snapshot built from job_queued or job_started has every new key, null when unused", () => {
  for (const type of ["job_queued", "job_started"]) {
    const snap = applyEvent(null, {
      job_id: "solo",
      seq: 1,
      ts: TS,
      type,
      name: "doc",
      owner: "u",
      metadata: {},
      stages: [{ name: "a", weight: 1 }],
      parent_id: null,
      children: null,
    });
    for (const key of [...COUNTS, "parent_id", "children"]) {
      assert.ok(key in snap, `${type}: ${key}`);
      assert.equal(snap[key], null, `${type}: ${key}`);
    }
    assert.equal(isGroup(snap), false);
  }
  // From an older server's events (no such fields): the keys are there all the same.
  const old = applyEvent(null, {
    job_id: "old",
    seq: 1,
    ts: TS,
    type: "job_queued",
    name: "doc",
    owner: "u",
    metadata: {},
    stages: [{ name: "a", weight: 1 }],
  });
  assert.deepEqual(
    [...COUNTS, "parent_id", "children"].map((k) => old[k]),
    [null, null, null, null, null, null],
  );
});

// A group of two: the parent P (one stage, "jobs") and its children c1, c2.
const kids = (over) => ({
  total: 2,
  completed: 0,
  failed: 0,
  cancelled: 0,
  running: 0,
  queued: 2,
  ...over,
});

function group() {
  const job = (jobId, seq, type, fields) => ({
    job_id: jobId,
    seq,
    ts: TS,
    type,
    owner: "u",
    metadata: {},
    ...fields,
  });
  const jobs = [{ name: "jobs", weight: 1 }];
  const video = [{ name: "transcode", weight: 1 }];
  return {
    parent: [
      job("P", 1, "job_queued", {
        name: "import 2 videos",
        stages: jobs,
        parent_id: null,
        children: kids(),
      }),
      job("P", 2, "job_started", {
        name: "import 2 videos",
        stages: jobs,
        parent_id: null,
        children: kids({ running: 1, queued: 1 }),
      }),
      update(
        3,
        "jobs",
        {
          stage_progress: 50,
          progress: 50,
          n: 1,
          total: 2,
          unit: "jobs",
          rate: 0.5,
          children: kids({ completed: 1, running: 1, queued: 0 }),
        },
        "P",
      ),
      update(
        4,
        "jobs",
        {
          stage_progress: 100,
          progress: 100,
          n: 2,
          total: 2,
          unit: "jobs",
          rate: 0.5,
          children: kids({ completed: 1, failed: 1, queued: 0 }),
        },
        "P",
      ),
      job("P", 5, "stage_completed", {
        stage: "jobs",
        next_stage: null,
        progress: 100,
        elapsed_seconds: 5,
      }),
      job("P", 6, "job_failed", {
        stage: null,
        error: { message: "1 of 2 jobs failed: clip-2", type: "children_failed" },
        progress: 100,
        stage_progress: 0,
        message: null,
        elapsed_seconds: 5,
        ...NONE,
      }),
    ],
    child: [
      job("c1", 1, "job_queued", {
        name: "clip-1",
        stages: video,
        parent_id: "P",
        children: null,
      }),
      job("c1", 2, "job_started", {
        name: "clip-1",
        stages: video,
        parent_id: "P",
        children: null,
      }),
    ],
  };
}

test("a child carries its parent's id; a parent its children's counts", () => {
  const { parent, child } = group();
  const c1 = fold(child);
  assert.equal(c1.parent_id, "P");
  assert.equal(c1.children, null);
  assert.equal(isGroup(c1), false);
  // job_started of a job created running: the snapshot starts from it
  assert.equal(applyEvent(null, child[1]).parent_id, "P");

  const queued = fold(parent.slice(0, 1));
  assert.equal(queued.parent_id, null);
  assert.deepEqual(queued.children, kids());
  assert.equal(isGroup(queued), true);
  assert.deepEqual(fold(parent.slice(0, 2)).children, kids({ running: 1, queued: 1 }));

  const half = fold(parent.slice(0, 3));
  assert.deepEqual(counts(half), { n: 1, total: 2, unit: "jobs", rate: 0.5 });
  assert.deepEqual(half.children, kids({ completed: 1, running: 1, queued: 0 }));
  assert.equal(formatChildren(half.children), "1/2 jobs done");

  // The parent's stage completes (its count resets; its children's counts stay),
  // then it fails for the child that failed.
  const ended = fold(parent);
  assert.equal(ended.status, "failed");
  assert.deepEqual(counts(ended), NONE);
  assert.deepEqual(ended.children, kids({ completed: 1, failed: 1, queued: 0 }));
  assert.equal(ended.error.type, "children_failed");
  assert.equal(formatChildren(ended.children), "2/2 jobs done · 1 failed");
});

test("applyEvent copies what it keeps of an event: a later change to it does not leak", () => {
  const { parent } = group();
  const snap = fold(parent.slice(0, 3));
  parent[2].children.completed = 99;
  assert.equal(snap.children.completed, 1);
});

// ----------------------------------------------------------------- requests

function fakeClient(t) {
  const socket = new FakeSocket();
  const pc = createClient({ io: () => socket, token: "t" });
  t.after(() => pc.close());
  return { pc, socket };
}

test("listChildren asks list_children and resolves with the children's snapshots", async (t) => {
  const { pc, socket } = fakeClient(t);
  socket.serverConnect();
  const { child } = group();
  const c1 = fold(child);
  const c2 = { ...c1, job_id: "c2", name: "clip-2" };
  const listed = pc.listChildren("P");
  const request = socket.take("list_children");
  assert.deepEqual(request.payload, { job_id: "P" });
  await socket.reply(request, { ok: true, jobs: [c1, c2] });
  assert.deepEqual(await listed, [c1, c2]);
  // A reading, not a follow: the client keeps no state for them.
  assert.equal(pc.job("c1"), undefined);
});

test("listChildren rejects with the server's code and reports it to onError", async (t) => {
  const { pc, socket } = fakeClient(t);
  const errors = [];
  pc.onError((err) => errors.push(err));
  socket.serverConnect();
  // (assert.rejects first: the promise must have a handler before it settles)
  const refused = assert.rejects(
    pc.listChildren("nope"),
    (err) => err.code === "not_found" && /not found/.test(err.message),
  );
  const error = { code: "not_found", message: "job 'nope' not found" };
  await socket.reply(socket.take("list_children"), { ok: false, error });
  await refused;
  assert.deepEqual(errors, [error]);

  // No answer in time: `timeout`, as for every request.
  const late = assert.rejects(pc.listChildren("P"), { code: "timeout" });
  socket.take("list_children").ack(new Error("operation has timed out"));
  await late;
  assert.equal(errors.at(-1).code, "timeout");

  // Dropped before the answer: `disconnected`, not reported (the page reconnects).
  const dropped = assert.rejects(pc.listChildren("P"), { code: "disconnected" });
  const request = socket.take("list_children");
  socket.serverDrop();
  request.ack(new Error("socket has been disconnected"));
  await dropped;
  assert.equal(errors.length, 2);
});

// ------------------------------------------------------------- the wording

test("counts and rates read like tqdm's", () => {
  assert.equal(formatCount(12400), "12,400");
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(2.5), "2.5");
  assert.deepEqual(
    [850, 850.4, 1234.5, 12.4, 9.96, 1.23, 1.2, 0.25, 0.0996, 3, 0].map(formatRate),
    ["850", "850", "1,235", "12", "10", "1.2", "1.2", "0.25", "0.1", "3", "0"],
  );
  const running = { status: "running", n: 12400, total: 50000, unit: "rows", rate: 850.3 };
  assert.equal(formatCounts(running), "12,400/50,000 rows · 850 rows/s");
  assert.equal(formatCounts({ ...running, total: null }), "12,400 rows · 850 rows/s");
  assert.equal(formatCounts({ ...running, rate: null }), "12,400/50,000 rows");
  assert.equal(formatCounts({ ...running, unit: null, rate: 1.2 }), "12,400/50,000 · 1.2/s");
  assert.equal(formatCounts({ ...running, rate: 0.25 }), "12,400/50,000 rows · 0.25 rows/s");
  // An ended job keeps its count; a rate is only news while it runs.
  assert.equal(formatCounts({ ...running, status: "failed" }), "12,400/50,000 rows");
  assert.equal(formatCounts({ ...running, ...NONE }), "");
  assert.equal(
    formatChildren({ total: 10, completed: 2, failed: 1, cancelled: 0, running: 3, queued: 4 }),
    "3/10 jobs done · 1 failed",
  );
  assert.equal(
    formatChildren({ total: 10, completed: 7, failed: 1, cancelled: 2, running: 0, queued: 0 }),
    "10/10 jobs done · 1 failed · 2 cancelled",
  );
  assert.equal(formatChildren(null), "");
});

// --------------------------------------------------------- a real server

test(
  "a real group: listChildren, its parent followed live, children counted with a rate",
  needsServer,
  async (t) => {
    const user = uniqueUser("group");
    const pc = client(t, { token: token(user) });
    const children = ["clip-1", "clip-2", "clip-3"].map((name) => ({
      name,
      stages: [
        { name: "fetch", weight: 1 },
        { name: "encode", weight: 3 },
      ],
    }));
    const parent = await api(user, "POST", "/api/jobs", { name: "import 3 clips", children });
    assert.deepEqual(parent.children, kids({ total: 3, queued: 3 }));
    const states = [];
    pc.watch(parent.job_id, (job) => states.push(job));
    const everything = new Map();
    pc.watchAll((jobs) => {
      for (const [id, job] of jobs) everything.set(id, job);
    });

    const listed = await pc.listChildren(parent.job_id);
    assert.deepEqual(
      listed.map((c) => [c.name, c.parent_id, c.status, c.n, c.children]),
      children.map((c) => [c.name, parent.job_id, "queued", null, null]),
    );
    assert.deepEqual(await pc.listChildren(listed[0].job_id), []); // not a group
    await assert.rejects(pc.listChildren("no-such-job"), { code: "not_found" });

    const [a, b, c] = listed.map((k) => k.job_id);
    for (const id of [a, b, c]) await post(user, id, { type: "job_started" });
    await post(user, a, { type: "progress_update", stage: "encode", n: 0, total: 600, unit: "frames" });
    await new Promise((r) => setTimeout(r, 50));
    await post(user, a, { type: "progress_update", stage: "encode", n: 150 });
    await waitFor(() => everything.get(a)?.n === 150, "the child's count, through watchAll");
    const counted = everything.get(a);
    assert.equal(counted.total, 600);
    assert.equal(counted.unit, "frames");
    assert.ok(counted.rate > 0, `rate ${counted.rate}`);
    assert.equal(counted.stage_progress, 25);
    // indeterminate: a count with no total
    await post(user, b, { type: "progress_update", stage: "fetch", n: 12, unit: "MB" });
    await waitFor(() => everything.get(b)?.n === 12, "the indeterminate count");
    assert.equal(isIndeterminate(everything.get(b)), true);

    await post(user, a, { type: "job_completed" });
    await post(user, b, { type: "job_failed", error: { message: "bad codec", type: "CodecError" } });
    await post(user, c, { type: "job_completed" });
    await waitFor(() => states.at(-1)?.status === "failed", "the parent to fail");
    const server = await getJob(user, parent.job_id);
    assert.deepEqual(comparable(states.at(-1)), comparable(server));
    assert.deepEqual(server.children, kids({ total: 3, completed: 2, failed: 1, queued: 0 }));
    assert.equal(formatChildren(server.children), "3/3 jobs done · 1 failed");
    // every snapshot the client built from events had every key of the server's
    for (const job of everything.values())
      assert.deepEqual(Object.keys(job).sort(), Object.keys(server).sort());
    const final = await pc.listChildren(parent.job_id);
    assert.deepEqual(
      final.map((k) => k.status),
      ["completed", "failed", "completed"],
    );
    assert.deepEqual(
      final.map((k) => [k.n, k.total, k.unit]),
      [
        [null, null, null], // completed: its last stage_completed cleared the count
        [12, null, "MB"], // failed: the count as it was
        [null, null, null],
      ],
    );
  },
);
