// Peer: a plain Node.js socket.io 4 server doing the same room fan-out.
//
// Clients join_job a room on /progress; a timer per room emits
// progress_update with the same fields and size as progresscast's. Same
// /bench/* control API as bench/pipelines.py. No store, no auth.
//
//   node bench/peers/node_server.mjs --port 8001 [--jobs 100] [--run-rate R --run-seconds S]
import { createServer } from "node:http";
import { Server } from "socket.io";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
    return acc;
  }, []),
);
const PORT = Number(args.port);
const JOBS = Number(args.jobs ?? 100);
const TOTAL = 1_000_000;
const PAD = "checking cross-references, figures, tables and footnotes"; // as bench/pipelines.py
const started = Date.now() / 1000;

const wallNow = () => (performance.timeOrigin + performance.now()) / 1000; // seconds, sub-ms
const jobId = (j) => `bench-${String(j).padStart(3, "0")}`;
// Python's repr(float) prints the shortest round-trip digits, as JS does.
const updateMessage = (ts, i) => `${ts} page ${i} of ${TOTAL}: ${PAD}`;
const burstMessage = (k, t0) => `b${k}:${t0} ${PAD}`;

const seq = new Array(JOBS).fill(0);
const done = new Array(JOBS).fill(0);
const issued = Array.from({ length: JOBS }, () => []);
const returned = Array.from({ length: JOBS }, () => []); // seconds in the emit call
let runningUntil = 0;

function payload(j, message) {
  seq[j] += 1;
  done[j] += 1;
  const now = Date.now();
  const pct = Math.round((1e6 * done[j]) / TOTAL) / 1e4;
  return {
    job_id: jobId(j),
    seq: seq[j],
    type: "progress_update",
    ts: new Date(now).toISOString(),
    stage: "parsing",
    stage_progress: pct,
    progress: Math.round(pct * 0.15 * 1e4) / 1e4,
    message,
    eta_seconds: 1234.5,
    elapsed_seconds: Math.round(now - started * 1000) / 1000,
  };
}

// As bench/pipelines.py emit_return_ms: p50/p99 of "tick -> emit returned" (ms).
function emitReturnMs(since, until) {
  const values = [];
  issued.forEach((log, j) => log.forEach((ts, k) => ts >= since && ts < until && values.push(returned[j][k])));
  if (!values.length) return {};
  values.sort((a, b) => a - b);
  const pick = (p) => Math.round(1e6 * values[Math.min(values.length - 1, Math.floor(p * values.length))]) / 1e3;
  return { p50: pick(0.5), p99: pick(0.99) };
}

function startRun(duration, rate, seed) {
  const now = wallNow();
  if (now < runningUntil) return { ok: false, error: "already running" };
  runningUntil = now + duration;
  const period = 1000 / rate;
  let s = seed || 1;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647); // seeded phases
  for (let j = 0; j < JOBS; j++) {
    const room = `job:${jobId(j)}`;
    setTimeout(() => {
      const tick = () => {
        const ts = wallNow();
        if (ts >= runningUntil) return clearInterval(timer);
        nsp.to(room).emit("progress_update", payload(j, updateMessage(ts, done[j] + 1)));
        returned[j].push(wallNow() - ts);
        issued[j].push(ts);
      };
      const timer = setInterval(tick, period);
      tick();
    }, rand() * period);
  }
  return { ok: true, t0: now, until: runningUntil };
}

function burst(k) {
  if (wallNow() < runningUntil) return { ok: false, error: "a timed run is in progress" };
  const t0 = wallNow();
  const message = burstMessage(k, t0);
  for (let j = 0; j < JOBS; j++) nsp.to(`job:${jobId(j)}`).emit("progress_update", payload(j, message));
  return { ok: true, t0, issue_seconds: wallNow() - t0 };
}

const http = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const q = Object.fromEntries(url.searchParams);
  let body;
  if (url.pathname === "/bench/info") body = { jobs: JOBS, job_ids: issued.map((_, j) => jobId(j)), pid: process.pid };
  else if (url.pathname === "/healthz") body = { ok: true };
  else if (url.pathname === "/bench/start") body = startRun(Number(q.duration), Number(q.rate ?? 10), Number(q.seed ?? 0));
  else if (url.pathname === "/bench/burst") body = burst(Number(q.id ?? 0));
  else if (url.pathname === "/bench/issued") {
    const since = Number(q.since), until = Number(q.until);
    const perJob = issued.map((log) => log.filter((ts) => ts >= since && ts < until).length);
    body = {
      per_job: perJob,
      total: perJob.reduce((a, b) => a + b, 0),
      errors: 0,
      emit_return_ms: emitReturnMs(since, until),
    };
  } else if (url.pathname.startsWith("/socket.io/")) return; // engine.io handles it
  else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(body));
});

const io = new Server(http, { serveClient: false });
const nsp = io.of("/progress");
nsp.on("connection", (socket) => {
  socket.on("join_job", (data, ack) => {
    socket.join(`job:${data.job_id}`);
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("ping", (data, ack) => {
    if (typeof ack === "function") ack({ ok: true, server_time: Date.now() / 1000 });
  });
});

http.listen(PORT, "127.0.0.1", () => {
  console.log(`node peer on ${PORT}`);
  // --run-rate R --run-seconds S: updates start with the server (bench/storm.py restarts it)
  if (Number(args["run-rate"] ?? 0) > 0) startRun(Number(args["run-seconds"]), Number(args["run-rate"]), 2);
});
process.on("SIGTERM", () => process.exit(0));
