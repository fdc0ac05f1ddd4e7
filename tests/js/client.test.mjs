// The JS client against a real progresscast server (gunicorn + eventlet),
// started by tests/js/test_node.py, which passes its URL and token secret.
// Jobs are driven over REST, as a pipeline in another language would.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent } from "../../src/progresscast/flask/static/progresscast.js";
import {
  STAGES,
  api,
  client,
  comparable,
  createJob,
  getJob,
  needsServer,
  post,
  runPipeline,
  storedEvents,
  token,
  uniqueUser,
  waitFor,
} from "./helpers.mjs";

/** Watch a job, recording every event (its stored history first) and every snapshot. */
function record(pc, jobId) {
  const seen = { events: [], states: [] };
  seen.stop = pc.watch(jobId, (job) => seen.states.push(job), {
    onEvent: (ev) => seen.events.push(ev),
    history: true,
  });
  seen.last = () => seen.states.at(-1);
  return seen;
}

function assertExactlyOnceInOrder(events, upTo) {
  const seqs = events.map((ev) => ev.seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: upTo }, (_, i) => i + 1),
    `seqs: ${seqs}`,
  );
}

function assertNeverBackwards(states) {
  for (let i = 1; i < states.length; i++) {
    assert.ok(
      states[i].seq >= states[i - 1].seq,
      `snapshot went back: ${states[i - 1].seq} → ${states[i].seq}`,
    );
  }
}

test(
  "a live job ends on the server's snapshot; folding its history gives the same",
  needsServer,
  async (t) => {
    const user = uniqueUser("live");
    const pc = client(t, { token: token(user) });
    const job = await createJob(user, {});
    const seen = record(pc, job.job_id);
    await waitFor(() => seen.last()?.seq === 1, "the join ack");
    await post(user, job.job_id, { type: "job_started" });
    const posted = await runPipeline(user, job.job_id);
    const finalSeq = posted.at(-1).seq;
    await waitFor(
      () => seen.last()?.status === "completed" && seen.events.length === finalSeq,
      "completion",
    );

    const server = await getJob(user, job.job_id);
    assert.deepEqual(seen.last(), server);
    assertExactlyOnceInOrder(seen.events, finalSeq);
    assertNeverBackwards(seen.states);
    // The module's apply path alone rebuilds the server's snapshot from the stored events.
    const folded = (await storedEvents(user, job.job_id)).reduce(applyEvent, null);
    assert.deepEqual(folded, server);
    // Stage chips moved in order: each stage ran, then completed, never back.
    const stageSeen = seen.states.map((s) => s.stage).filter((s, i, a) => s && s !== a[i - 1]);
    assert.deepEqual(
      stageSeen,
      STAGES.map((s) => s.name),
    );
  },
);

test(
  "resume after disconnect/connect: events posted meanwhile arrive once, in order",
  needsServer,
  async (t) => {
    const user = uniqueUser("resume");
    const pc = client(t, { token: token(user) });
    const job = await createJob(user, { start: true });
    const seen = record(pc, job.job_id);
    await waitFor(() => seen.last()?.seq === 1, "the join ack");
    await post(user, job.job_id, { type: "progress_update", stage: "parsing", stage_progress: 40 });
    await waitFor(() => seen.last()?.seq === 2, "a live event");

    pc.socket.disconnect();
    assert.equal(pc.state, "offline");
    await post(user, job.job_id, { type: "progress_update", stage: "parsing", stage_progress: 80 });
    // Two stages ahead: stage_completed ×2 (one skipped), then the update.
    await post(user, job.job_id, {
      type: "progress_update",
      stage: "integrating",
      stage_progress: 10,
    });
    const { seq: offlineSeq } = await getJob(user, job.job_id);
    assert.equal(seen.last().seq, 2, "nothing arrives while disconnected");

    pc.socket.connect();
    await waitFor(() => seen.last()?.seq === offlineSeq, "the catch-up after reconnecting");
    const posted = await runPipeline(user, job.job_id, { steps: 2, from: 2 });
    const finalSeq = posted.at(-1).seq;
    await waitFor(() => seen.last()?.status === "completed", "completion");

    assertExactlyOnceInOrder(seen.events, finalSeq);
    assertNeverBackwards(seen.states);
    const server = await getJob(user, job.job_id);
    assert.deepEqual(seen.last(), server);
    assert.deepEqual(
      server.stages.map((s) => s.status),
      ["completed", "skipped", "completed", "completed"],
    );
  },
);

test("resume after the transport drops while a pipeline keeps posting", needsServer, async (t) => {
  const user = uniqueUser("drop");
  const pc = client(t, { token: token(user), reconnectionDelay: 100, reconnectionDelayMax: 300 });
  const states = [];
  pc.onConnectionState((s) => states.push(s));
  const job = await createJob(user, { start: true });
  const seen = record(pc, job.job_id);
  await waitFor(() => seen.last()?.seq === 1, "the join ack");

  // A pipeline posting steadily, with two transport drops along the way.
  const drops = new Set([8, 20]);
  let posted = 1;
  for (const stage of STAGES) {
    for (let i = 1; i <= 8; i++) {
      const events = await post(user, job.job_id, {
        type: "progress_update",
        stage: stage.name,
        stage_progress: 12.5 * i,
        message: `step ${i}`,
      });
      posted = events.at(-1).seq;
      if (drops.has(posted) || drops.has(posted - 1)) {
        drops.delete(posted);
        drops.delete(posted - 1);
        // Drop an established connection, as a dropped network would. Under
        // load the client may still be reconnecting from the last drop, and
        // `engine.close()` on an engine that is still opening is no network
        // drop: it emits no "error", the only thing Socket.IO's Manager listens
        // for while opening, so the Manager would sit in "opening" for its
        // whole connect timeout (20 s) before trying again.
        await waitFor(() => pc.state === "connected", "the connection to drop");
        pc.socket.io.engine.close();
      }
    }
  }
  const last = await post(user, job.job_id, { type: "job_completed", result: { rows: 3 } });
  const finalSeq = last.at(-1).seq;
  await waitFor(() => seen.last()?.seq === finalSeq, "the final event", 15_000);

  assert.equal(drops.size, 0, "both drops happened");
  // Two drops of a live connection (the first "reconnecting" is the state before connecting).
  const lost = states.filter((s, i) => s === "reconnecting" && states[i - 1] === "connected");
  assert.ok(lost.length >= 2, `states: ${states}`);
  assert.equal(pc.state, "connected");
  assertExactlyOnceInOrder(seen.events, finalSeq);
  assertNeverBackwards(seen.states);
  assert.deepEqual(seen.last(), await getJob(user, job.job_id));
});

test(
  "duplicates and stale events are dropped: replayed history, an older since",
  needsServer,
  async (t) => {
    const user = uniqueUser("dupes");
    const pc = client(t, { token: token(user) });
    const job = await createJob(user, { start: true });
    const seen = record(pc, job.job_id);
    await waitFor(() => seen.last()?.seq === 1, "the join ack");
    await post(user, job.job_id, { type: "progress_update", stage: "parsing", stage_progress: 30 });
    await post(user, job.job_id, {
      type: "progress_update",
      stage: "analyzing",
      stage_progress: 20,
    });
    const { seq } = await getJob(user, job.job_id);
    await waitFor(() => seen.last()?.seq === seq, "the live events");
    const before = {
      events: seen.events.length,
      states: seen.states.length,
      job: pc.job(job.job_id),
    };

    // The whole stored history again, in order and reversed, through the client's apply path.
    const history = await storedEvents(user, job.job_id);
    for (const ev of [...history, ...history.reverse()]) assert.equal(pc.receive(ev), false);
    // The server's answer to a join with an older since: the same events once more.
    const ack = await pc.socket
      .timeout(5000)
      .emitWithAck("join_job", { job_id: job.job_id, since: 0 });
    assert.equal(ack.events.length, seq);
    for (const ev of ack.events) assert.equal(pc.receive(ev), false);

    assert.equal(seen.events.length, before.events);
    assert.equal(seen.states.length, before.states);
    assert.equal(pc.job(job.job_id), before.job, "the snapshot is untouched");
    // And the next new event still applies.
    await post(user, job.job_id, {
      type: "progress_update",
      stage: "analyzing",
      stage_progress: 60,
    });
    await waitFor(() => seen.last()?.seq === seq + 1, "the next live event");
    assertExactlyOnceInOrder(seen.events, seq + 1);
  },
);

test(
  "watchAll lists the caller's jobs and sees new ones appear and finish",
  needsServer,
  async (t) => {
    const user = uniqueUser("dash");
    const earlier = await createJob(user, { name: "earlier.pdf" });
    const pc = client(t, { token: token(user) });
    let jobs = new Map();
    const changed = [];
    pc.watchAll((all, job) => {
      jobs = new Map(all);
      changed.push(job?.job_id ?? null);
    });
    await waitFor(() => jobs.has(earlier.job_id), "the existing job");

    const fresh = await createJob(user, { name: "fresh.pdf", start: true });
    await waitFor(() => jobs.get(fresh.job_id)?.status === "running", "the new job");
    await runPipeline(user, fresh.job_id, { steps: 1 });
    await waitFor(() => jobs.get(fresh.job_id)?.status === "completed", "the new job's end");
    assert.deepEqual(jobs.get(fresh.job_id), await getJob(user, fresh.job_id));
    assert.equal(jobs.get(earlier.job_id).status, "queued");

    // Another user's jobs never show up.
    const other = uniqueUser("other");
    const theirs = await createJob(other, { start: true });
    await post(other, theirs.job_id, {
      type: "progress_update",
      stage: "parsing",
      stage_progress: 5,
    });
    await runPipeline(user, (await createJob(user, { start: true })).job_id, { steps: 1 });
    await waitFor(() => jobs.size === 3, "the third job of ours");
    assert.equal(jobs.has(theirs.job_id), false);

    // After a reconnect watch_jobs runs again and the map stays whole.
    const states = [];
    pc.onConnectionState((state) => states.push(state));
    pc.socket.io.engine.close();
    await waitFor(
      () => states.includes("reconnecting") && pc.state === "connected",
      "the reconnect",
    );
    const late = await createJob(user, { name: "late.pdf" });
    await waitFor(() => jobs.has(late.job_id), "a job created after the reconnect");
  },
);

test(
  "cancel: a running job shows cancel_requested, then cancelled; a queued one at once",
  needsServer,
  async (t) => {
    const user = uniqueUser("cancel");
    const pc = client(t, { token: token(user) });
    const running = await createJob(user, { start: true });
    const seen = record(pc, running.job_id);
    await waitFor(() => seen.last()?.status === "running", "the join ack");

    const ack = await pc.cancel(running.job_id, "not needed any more");
    assert.deepEqual(ack, { ok: true, status: "running" });
    assert.equal(seen.last().cancel_requested, "not needed any more");
    // The HTTP pipeline sees the request in its next answer and stops.
    const answer = await post(user, running.job_id, {
      type: "progress_update",
      stage: "parsing",
      stage_progress: 50,
    });
    assert.ok(answer.length);
    const { cancel_requested } = await getJob(user, running.job_id);
    assert.equal(cancel_requested, "not needed any more");
    await post(user, running.job_id, { type: "job_cancelled", reason: cancel_requested });
    await waitFor(() => seen.last()?.status === "cancelled", "job_cancelled");
    assert.deepEqual(seen.last(), await getJob(user, running.job_id));
    assert.equal(seen.last().stages[0].status, "cancelled");

    const queued = await createJob(user, {});
    const other = record(pc, queued.job_id);
    await waitFor(() => other.last()?.status === "queued", "the queued job");
    assert.deepEqual(await pc.cancel(queued.job_id), { ok: true, status: "cancelled" });
    await waitFor(() => other.last()?.status === "cancelled", "the queued job cancelled");

    const again = await pc.cancel(queued.job_id);
    assert.equal(again.ok, false);
    assert.equal(again.error.code, "conflict");
    const missing = await pc.cancel("no-such-job");
    assert.equal(missing.error.code, "not_found");
  },
);

test(
  "a failed job ends on the server's snapshot, with the pipeline's last numbers",
  needsServer,
  async (t) => {
    const user = uniqueUser("fail");
    const pc = client(t, { token: token(user) });
    const job = await createJob(user, { start: true });
    const seen = record(pc, job.job_id);
    await waitFor(() => seen.last()?.seq === 1, "the join ack");
    await post(user, job.job_id, {
      type: "progress_update",
      stage: "analyzing",
      stage_progress: 20,
      message: "page 3",
    });
    // The pipeline's last numbers ride on the failure (no event of their own).
    await post(user, job.job_id, {
      type: "job_failed",
      stage_progress: 63,
      message: "page 41",
      error: { type: "TableStructureError", message: "table on page 41 has no header row" },
    });
    const server = await getJob(user, job.job_id);
    await waitFor(
      () => seen.last()?.status === "failed" && seen.last().message === "page 41",
      "the failure",
    );
    assert.deepEqual(seen.last(), server);
    // The ending event carries those numbers: folding the events gives the snapshot too.
    const folded = (await storedEvents(user, job.job_id)).reduce(applyEvent, null);
    assert.deepEqual(folded, server);
    assert.equal(server.stages[1].progress, 63);
    assert.deepEqual(server.error, {
      type: "TableStructureError",
      message: "table on page 41 has no header row",
      stage: "analyzing",
    });
    assert.deepEqual(
      server.stages.map((s) => s.status),
      ["completed", "failed", "pending", "pending"],
    );
  },
);

test(
  "getToken is asked again after a refusal and after session_expired",
  needsServer,
  async (t) => {
    const user = uniqueUser("tok");
    const handed = [];
    // Minted when asked for: a refused one, one that expires soon, a good one.
    const tokens = [() => "not-a-token", () => token(user, { ttl: 3 }), () => token(user)];
    const errors = [];
    const pc = client(t, {
      getToken: async () => {
        const next = tokens[Math.min(handed.length, tokens.length - 1)]();
        handed.push(next);
        return next;
      },
      reconnectionDelay: 50,
      reconnectionDelayMax: 200,
    });
    pc.onError((err) => errors.push(err.code));
    const job = await createJob(user, { start: true });
    const seen = record(pc, job.job_id);
    await waitFor(() => seen.last()?.seq === 1, "a connection with the second token");
    assert.equal(handed.length, 2);
    assert.deepEqual(errors, ["unauthorized"]);

    // The short token expires; the server says so (sweep every 1 s) and closes us.
    await waitFor(() => errors.includes("session_expired"), "session_expired", 8000);
    await post(user, job.job_id, { type: "progress_update", stage: "parsing", stage_progress: 99 });
    await waitFor(
      () => seen.last()?.seq === 2 && pc.state === "connected",
      "the reconnect with a fresh token",
    );
    assert.equal(handed.length, 3);
    assertExactlyOnceInOrder(seen.events, 2);
  },
);

test("onNotice gets an operator's notice to the user", needsServer, async (t) => {
  const user = uniqueUser("notice");
  const pc = client(t, { token: token(user) });
  const notices = [];
  pc.onNotice((notice) => notices.push(notice));
  await waitFor(() => pc.state === "connected", "a connection");
  const sent = await api(
    "ops",
    "POST",
    "/api/admin/notice",
    { message: "maintenance at 18:00", level: "warning", user },
    [200],
    { admin: true },
  );
  assert.equal(sent.delivered, 1);
  await waitFor(() => notices.length === 1, "the notice");
  assert.deepEqual(notices[0], sent.notice);
  assert.equal(notices[0].level, "warning");
});
