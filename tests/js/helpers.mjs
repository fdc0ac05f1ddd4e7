// Shared helpers of the JS client tests: the real server's address and
// secret come from the environment (tests/js/test_node.py starts the server
// and runs `node --test tests/js/`); tokens are minted here, as a host app
// would, so each test can use its own user.
import { createHmac } from "node:crypto";
import { io } from "socket.io-client";

import { createClient } from "../../src/progresscast/flask/static/progresscast.js";

export const URL = process.env.PROGRESSCAST_TEST_URL;
const SECRET = process.env.PROGRESSCAST_TEST_SECRET;

/** Options for node:test: skip the real-server tests when no server was given. */
export const needsServer = URL && SECRET ? {} : { skip: "PROGRESSCAST_TEST_URL/SECRET not set" };

export const STAGES = [
  { name: "parsing", weight: 0.15 },
  { name: "analyzing", weight: 0.6 },
  { name: "integrating", weight: 0.2 },
  { name: "formatting", weight: 0.05 },
];

const b64url = (data) => Buffer.from(data).toString("base64url");

/** An HS256 token for `user`, like progresscast.tokens.issue_token. */
export function token(user, { ttl = 600, admin = false } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = { sub: user, iat: now, exp: now + ttl, ...(admin ? { admin: true } : {}) };
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

let counter = 0;
/** A user name no other test uses (connection limits and dashboards are per user). */
export function uniqueUser(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/** A REST call as `user`; returns the parsed JSON, throws on an unexpected status. */
export async function api(user, method, path, body, expect = [200, 201, 202], claims = {}) {
  const res = await fetch(URL + path, {
    method,
    headers: {
      Authorization: `Bearer ${token(user, claims)}`,
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!expect.includes(res.status)) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
  return JSON.parse(text);
}

export const createJob = (user, body) =>
  api(user, "POST", "/api/jobs", { name: "report.pdf", stages: STAGES, ...body });
export const post = (user, jobId, body) =>
  api(user, "POST", `/api/jobs/${jobId}/events`, body).then((r) => r.events);
export const getJob = (user, jobId) => api(user, "GET", `/api/jobs/${jobId}`);
export const storedEvents = (user, jobId, since = 0) =>
  api(user, "GET", `/api/jobs/${jobId}/events?since=${since}&limit=1000`).then((r) => r.events);

/** A client of the test server, closed by `t.after`. */
export function client(t, options) {
  const pc = createClient({
    url: URL,
    io,
    socketOptions: { transports: ["websocket"] },
    ...options,
  });
  t.after(() => pc.close());
  return pc;
}

/** Resolve once `predicate()` is truthy; fail after `timeout` ms. Polls every 20 ms. */
export async function waitFor(predicate, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Post a whole pipeline over REST (steps progress updates per stage), then complete it. */
export async function runPipeline(user, jobId, { steps = 3, from = 0 } = {}) {
  const posted = [];
  for (const stage of STAGES.slice(from)) {
    for (let i = 1; i <= steps; i++) {
      posted.push(
        ...(await post(user, jobId, {
          type: "progress_update",
          stage: stage.name,
          stage_progress: (100 * i) / steps,
          message: `${stage.name} step ${i} of ${steps}`,
        })),
      );
    }
  }
  posted.push(...(await post(user, jobId, { type: "job_completed", result: { pages: 12 } })));
  return posted;
}

/** A snapshot without the fields that depend on when it was read. */
export function comparable(snap) {
  const { elapsed_seconds: _elapsed, ...rest } = snap;
  return rest;
}
