// Load generator: many socket.io-client connections in one Node process, or
// many Server-Sent Events streams ("transport": "sse": one HTTP GET of
// streamPath per client, read as text/event-stream, as an EventSource would).
//
// Driven by bench/run.py over stdin/stdout, one JSON object per line:
// every command line carries an "id", and the reply line echoes it.
//
//   node bench/loadgen.mjs '{"url": "http://127.0.0.1:8000", "jobs": 100, "tokens": "tokens.json"}'
//
// Commands:
//   connect {from, to, rate, inflight, timeoutMs, join, reconnect, resume}
//                                open clients [from, to); client i joins job i % jobs.
//                                reconnect: socket.io-client's own reconnection (default
//                                backoff) and a rejoin on every reconnect; resume: that rejoin
//                                sends since = the last seq applied, and seq order is checked
//                                (docs/protocol.md "Resume"; Node's peer keeps no seq)
//   record {since, until}        start keeping latencies of updates sent in [since, until)
//   report {latFile}             write those latencies (ms, float64) to latFile; counts
//   burstArm {burst}             time the first update of burst K per client
//   burstReport {}               per-client latencies of the armed burst (s)
//   ping {timeoutMs}             every joined client sends ping with an ack
//   stormArm {t0}                time every client's next reconnect from t0 (epoch s)
//   stormCount {}                how many have reconnected, rejoined, caught up
//   stormReport {}               per-client times since t0 (s) and the resume checks
//   stats {}                     counters, CPU and memory of this process
//   close {}                     disconnect everything and exit
//
// Latency = this process's wall clock on arrival minus the send time at the
// start of the update's `message` (seconds since the epoch, from the server's
// or the pipeline's clock: one machine, one clock).
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const opts = JSON.parse(process.argv[2] ?? "{}");
const URL_ = opts.url;
const NS = opts.namespace ?? "/progress";
const JOBS = opts.jobs ?? 100;
const tokens = opts.tokens ? JSON.parse(readFileSync(opts.tokens, "utf8")) : null;
// Like browsers, socket.io-client offers permessage-deflate by default; a
// server that accepts it (eventlet does, Node's socket.io does not by
// default) compresses every message for every client. deflate=false stops
// offering it.
const DEFLATE = opts.deflate !== false;
const SSE = opts.transport === "sse";
const STREAM_PATH = opts.streamPath ?? "/api/jobs/{job}/stream";

const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;
const jobId = (j) => `bench-${String(j).padStart(3, "0")}`;

const clients = []; // {i, job, socket, state}
let joined = 0;
let disconnects = 0;
const disconnectReasons = {};
let totalEvents = 0;
const RETRYABLE = new Set(["unavailable", "rate_limited", "internal"]);
const joinRetries = {}; // refusals retried, by code
let outside = 0; // updates sent outside the recording window
let payloadBytes = 0;
let payloadSamples = 0;
const extensions = {}; // websocket extensions negotiated, by name
let rec = null; // {since, until, lat: number[], received, watchers}
let burst = null; // {id, lat: number[]}

function onUpdate(c, ev) {
  const t = wallNow();
  totalEvents++;
  const m = ev && ev.message;
  if (typeof m !== "string") return;
  if (payloadSamples < 1000) {
    payloadBytes += JSON.stringify(ev).length;
    payloadSamples++;
  }
  if (m.charCodeAt(0) === 98 /* "b": a burst */) {
    const colon = m.indexOf(":");
    const id = Number(m.slice(1, colon));
    if (burst && burst.id === id && c.burstSeen !== id) {
      c.burstSeen = id;
      burst.lat.push(t - parseFloat(m.slice(colon + 1)));
    }
    return;
  }
  const ts = parseFloat(m);
  if (rec && ts >= rec.since && ts < rec.until) {
    rec.lat.push((t - ts) * 1000);
    rec.received++;
  } else outside++;
}

// done(ok, why) for a client being opened: resolves its promise once (null,
// or why it failed), marks a failed client and drops its connection
// (`drop`), and gives up after timeoutMs (+1 s).
function settleOnce(c, resolve, timeoutMs, drop) {
  let settled = false;
  const done = (ok, why) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (!ok) {
      c.state = "failed";
      drop();
    }
    resolve(ok ? null : why);
  };
  const timer = setTimeout(() => done(false, "timeout"), timeoutMs + 1000);
  return done;
}

// An SSE client: joined when the stream's first message (the job's snapshot)
// has arrived; each `progress_update` message is handled like the socket's.
function openStream(i, timeoutMs) {
  return new Promise((resolve) => {
    const job = i % JOBS;
    const c = { i, job, socket: null, state: "connecting", burstSeen: -1 };
    clients.push(c);
    const done = settleOnce(c, resolve, timeoutMs, () => req.destroy());
    const headers = { Accept: "text/event-stream" };
    if (tokens) headers.Authorization = `Bearer ${tokens[i]}`;
    const req = http.get(URL_ + STREAM_PATH.replace("{job}", jobId(job)), { headers, agent: false });
    c.socket = { disconnect: () => req.destroy() };
    const lost = (why) => {
      if (c.state === "joined") {
        joined--;
        disconnects++;
        disconnectReasons[why] = (disconnectReasons[why] ?? 0) + 1;
      }
      if (c.state !== "failed") c.state = "closed";
      done(false, `disconnect: ${why}`);
    };
    req.on("error", (err) => lost(`error: ${err.code ?? err.message}`));
    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return done(false, `http ${res.statusCode}`);
      }
      extensions.sse = (extensions.sse ?? 0) + 1;
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (chunk) => {
        buf += chunk;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let type = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (type === "snapshot" && c.state === "connecting") {
            c.state = "joined";
            joined++;
            done(true);
          } else if (type === "progress_update") onUpdate(c, JSON.parse(data));
        }
      });
      res.on("end", () => lost("stream ended"));
      res.on("error", (err) => lost(`error: ${err.code ?? err.message}`));
    });
  });
}

function openClient(i, join, timeoutMs, reconnect = false, resume = false) {
  if (SSE) return openStream(i, timeoutMs);
  if (reconnect) return openResumingClient(i, timeoutMs, resume);
  return new Promise((resolve) => {
    const job = i % JOBS;
    const auth = tokens ? { token: tokens[i] } : {};
    const socket = io(URL_ + NS, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: timeoutMs,
      auth,
      ...(DEFLATE ? {} : { perMessageDeflate: false }),
    });
    const c = { i, job, socket, state: "connecting", burstSeen: -1 };
    clients.push(c);
    const done = settleOnce(c, resolve, timeoutMs, () => socket.disconnect());
    socket.on("progress_update", (ev) => onUpdate(c, ev));
    socket.on("connect_error", (err) => done(false, `connect_error: ${err?.data?.code ?? err?.message}`));
    socket.on("disconnect", (reason) => {
      if (c.state === "joined") {
        joined--;
        disconnects++;
        disconnectReasons[reason] = (disconnectReasons[reason] ?? 0) + 1;
      }
      if (c.state !== "failed") c.state = "closed";
      done(false, `disconnect: ${reason}`);
    });
    socket.on("connect", () => {
      const ext = socket.io?.engine?.transport?.ws?.extensions ?? "";
      const key = ext || "none";
      extensions[key] = (extensions[key] ?? 0) + 1;
      if (!join) {
        c.state = "joined";
        joined++;
        return done(true);
      }
      // Retry a refusal the protocol calls retryable, with backoff, as the
      // official clients do; each retry is counted and reported.
      const tryJoin = (attempt) =>
        socket.timeout(timeoutMs).emit("join_job", { job_id: jobId(job) }, (err, ack) => {
          if (err) return done(false, "join timeout");
          const code = ack?.error?.code;
          if (ack && !ack.ok && RETRYABLE.has(code) && attempt < 8) {
            joinRetries[code] = (joinRetries[code] ?? 0) + 1;
            return setTimeout(() => tryJoin(attempt + 1), 100 * 2 ** Math.min(attempt, 4) * (0.5 + Math.random()));
          }
          if (!ack || !ack.ok) return done(false, `join refused: ${code}: ${String(ack?.error?.message).slice(0, 120)}`);
          c.state = "joined";
          joined++;
          done(true);
        });
      tryJoin(0);
    });
  });
}

// ------------------------------------------------------------ reconnect storms
//
// A client that reconnects by itself (socket.io-client's reconnection, its
// default backoff: 1 s doubling to 5 s, +-50 % jitter) and rejoins its job on
// every connect, as static/progresscast.js does: with `resume`, it sends
// since = the last seq it applied, buffers live events until the ack, applies
// the ack's events, then the live ones above the ack's seq. Every seq it
// applies must be the one after the last (a gap breaks DESIGN §4's promise).
let storm = null; // {t0, connected, acked, caught: number[] (s since t0), ...}

function stormRecord(c, what, t) {
  if (!storm || c.stormSeen[what]) return;
  c.stormSeen[what] = true;
  storm[what].push(t - storm.t0);
}

function applySeq(c, ev) {
  if (!c.resume || typeof ev?.seq !== "number") return true;
  if (ev.seq <= c.lastSeq) {
    c.dups++;
    return false;
  }
  if (ev.seq !== c.lastSeq + 1) c.gaps++;
  c.lastSeq = ev.seq;
  return true;
}

function liveEvent(c, ev) {
  const t = wallNow();
  if (c.pending) return c.pending.push([t, ev]); // joining: held until the ack
  if (!applySeq(c, ev)) return;
  if (c.acked) stormRecord(c, "caught", t);
  onUpdate(c, ev);
}

function joinJob(c, timeoutMs, attempt = 0) {
  const payload = { job_id: jobId(c.job) };
  if (c.resume && c.lastSeq > 0) payload.since = c.lastSeq;
  c.pending = c.pending ?? [];
  c.acked = false;
  const generation = c.generation;
  return new Promise((resolve) => {
    c.socket.timeout(timeoutMs).emit("join_job", payload, (err, ack) => {
      if (generation !== c.generation) return resolve("superseded"); // reconnected meanwhile
      if (err) return resolve("join timeout");
      const code = ack?.error?.code;
      if (ack && !ack.ok && RETRYABLE.has(code) && attempt < 8) {
        joinRetries[code] = (joinRetries[code] ?? 0) + 1;
        const delay = 100 * 2 ** Math.min(attempt, 4) * (0.5 + Math.random());
        return setTimeout(() => joinJob(c, timeoutMs, attempt + 1).then(resolve), delay);
      }
      if (!ack || !ack.ok) return resolve(`join refused: ${code}: ${String(ack?.error?.message).slice(0, 120)}`);
      const t = wallNow();
      if (c.resume) {
        if (ack.truncated) c.truncated++;
        if (payload.since === undefined) c.lastSeq = ack.job.seq; // a first join: start here
        for (const ev of ack.events ?? []) {
          if (applySeq(c, ev)) c.resumed++;
        }
        if (ack.job.seq > c.lastSeq) {
          c.gaps++; // the snapshot is ahead of the events the ack gave
          c.lastSeq = ack.job.seq;
        }
      }
      c.acked = true;
      stormRecord(c, "acked", t);
      const held = c.pending;
      c.pending = null;
      for (const [when, ev] of held) {
        if (!applySeq(c, ev)) continue;
        stormRecord(c, "caught", Math.max(when, t)); // applied once the ack is in
        onUpdate(c, ev);
      }
      resolve(null);
    });
  });
}

function openResumingClient(i, timeoutMs, resume) {
  return new Promise((resolve) => {
    const job = i % JOBS;
    const socket = io(URL_ + NS, {
      transports: ["websocket"],
      forceNew: true,
      timeout: timeoutMs,
      auth: tokens ? { token: tokens[i] } : {},
      ...(DEFLATE ? {} : { perMessageDeflate: false }),
    });
    const c = {
      i, job, socket, state: "connecting", burstSeen: -1, resume, lastSeq: 0, generation: 0,
      pending: null, acked: false, gaps: 0, dups: 0, resumed: 0, truncated: 0, connectErrors: 0,
      stormSeen: {},
    };
    clients.push(c);
    let settled = false;
    const timer = setTimeout(() => settle("timeout"), timeoutMs + 1000);
    function settle(why) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (why) {
        c.state = "failed";
        socket.disconnect();
      }
      resolve(why);
    }
    socket.on("progress_update", (ev) => liveEvent(c, ev));
    socket.on("connect_error", (err) => {
      c.connectErrors++;
      const kind = String(err?.data?.code ?? err?.description?.message ?? err?.message).slice(0, 60);
      connectErrorKinds[kind] = (connectErrorKinds[kind] ?? 0) + 1;
      if (!settled) settle(`connect_error: ${err?.data?.code ?? err?.message}`);
    });
    socket.on("disconnect", (reason) => {
      c.generation++;
      c.pending = null;
      c.acked = false;
      if (c.state === "joined") {
        joined--;
        disconnects++;
        disconnectReasons[reason] = (disconnectReasons[reason] ?? 0) + 1;
        c.state = "reconnecting"; // socket.io-client retries by itself
      }
      if (!settled) settle(`disconnect: ${reason}`);
    });
    socket.on("connect", () => {
      if (c.state === "failed") return;
      stormRecord(c, "connected", wallNow());
      joinJob(c, timeoutMs).then((why) => {
        if (why === "superseded") return;
        if (why) {
          if (!settled) return settle(why);
          c.state = "failed";
          errorsAfter[why] = (errorsAfter[why] ?? 0) + 1;
          return;
        }
        c.state = "joined";
        joined++;
        settle(null);
      });
    });
  });
}
const errorsAfter = {}; // rejoin failures after the first connect, by reason
const connectErrorKinds = {}; // failed (re)connects, by what the client was told

function quantiles(values) {
  const v = [...values].sort((a, b) => a - b);
  return { n: v.length, p50: percentile(v, 0.5), p99: percentile(v, 0.99), max: v.at(-1) ?? null };
}

function stormCounts() {
  return {
    connected: storm ? storm.connected.length : 0,
    acked: storm ? storm.acked.length : 0,
    caught: storm ? storm.caught.length : 0,
    joined,
  };
}

function stormReport() {
  const mine = clients.filter((c) => c.stormSeen);
  const sum = (k) => mine.reduce((a, c) => a + (c[k] ?? 0), 0);
  return {
    clients: mine.length,
    ...stormCounts(),
    // seconds since t0, per client, for the orchestrator's quantiles over all generators
    connectedAt: storm?.connected ?? [],
    ackedAt: storm?.acked ?? [],
    caughtAt: storm?.caught ?? [],
    gaps: sum("gaps"),
    duplicates: sum("dups"),
    resumedEvents: sum("resumed"),
    truncated: sum("truncated"),
    connectErrors: sum("connectErrors"),
    connectErrorKinds,
    rejoinErrors: errorsAfter,
    disconnectReasons,
  };
}

async function connect({ from, to, rate = 1000, inflight = 200, timeoutMs = 15000, join = true, stopOnFailure = false, reconnect = false, resume = false }) {
  const t0 = wallNow();
  const errors = {};
  let failed = 0;
  let active = 0;
  let skipped = 0;
  let next = from;
  const interval = 1000 / rate;
  await new Promise((resolve) => {
    let finished = 0;
    let total = to - from;
    let stopped = false;
    if (total <= 0) return resolve();
    const start = performance.now();
    const pump = () => {
      // open at most `rate` per second and `inflight` handshakes at a time
      const allowed = Math.floor((performance.now() - start) / interval) + 1 - (next - from);
      let n = Math.min(allowed, inflight - active, to - next);
      for (; n > 0; n--) {
        const i = next++;
        active++;
        openClient(i, join, timeoutMs, reconnect, resume).then((why) => {
          active--;
          finished++;
          if (why) {
            failed++;
            errors[why] = (errors[why] ?? 0) + 1;
            if (stopOnFailure && !stopped) {
              // open no more: wait only for the handshakes under way
              stopped = true;
              total = next - from;
              skipped = to - next;
            }
          }
          if (finished === total) resolve();
        });
      }
      if (next < to && !stopped) setTimeout(pump, 5);
    };
    pump();
  });
  return { joined, failed, skipped, errors, joinRetries, seconds: wallNow() - t0 };
}

function watchersPerJob() {
  const w = new Array(JOBS).fill(0);
  for (const c of clients) if (c.state === "joined") w[c.job]++;
  return w;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function ping({ timeoutMs = 30000, spreadMs = 1000 }) {
  const live = clients.filter((c) => c.state === "joined");
  const rtts = [];
  let failed = 0;
  const t0 = wallNow();
  await Promise.all(
    live.map(
      (c, k) =>
        new Promise((resolve) => {
          // spread the pings over spreadMs, as real clients' timers would be
          setTimeout(() => {
            const sent = performance.now();
            c.socket.timeout(timeoutMs).emit("ping", {}, (err, ack) => {
              if (err || !ack || !ack.ok) failed++;
              else rtts.push(performance.now() - sent);
              resolve();
            });
          }, (k / live.length) * spreadMs);
        }),
    ),
  );
  rtts.sort((a, b) => a - b);
  return {
    sent: live.length,
    answered: rtts.length,
    failed,
    seconds: wallNow() - t0,
    rtt_ms: { p50: percentile(rtts, 0.5), p99: percentile(rtts, 0.99), max: rtts.at(-1) ?? null },
  };
}

function stats() {
  const cpu = process.cpuUsage();
  return {
    joined,
    clients: clients.length,
    disconnects,
    disconnectReasons,
    totalEvents,
    outside,
    payloadBytes: payloadSamples ? payloadBytes / payloadSamples : null,
    extensions,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    rss: process.memoryUsage().rss,
  };
}

const commands = {
  connect,
  ping,
  stats: async () => stats(),
  stormArm: async ({ t0 }) => {
    storm = { t0, connected: [], acked: [], caught: [] };
    for (const c of clients) if (c.stormSeen) c.stormSeen = {};
    return { armed: clients.length };
  },
  stormCount: async () => stormCounts(),
  stormReport: async () => stormReport(),
  record: async ({ since, until }) => {
    rec = { since, until, lat: [], received: 0, watchers: watchersPerJob() };
    return { watchers: rec.watchers.reduce((a, b) => a + b, 0) };
  },
  report: async ({ latFile }) => {
    const r = rec;
    rec = null;
    if (!r) return { error: "not recording" };
    writeFileSync(latFile, Buffer.from(new Float64Array(r.lat).buffer));
    return { received: r.received, watchers: r.watchers, stillJoined: watchersPerJob(), ...stats() };
  },
  burstArm: async ({ burst: id }) => {
    burst = { id, lat: [] };
    return { armed: id };
  },
  burstCount: async () => ({ received: burst ? burst.lat.length : 0 }),
  burstReport: async () => {
    const b = burst;
    burst = null;
    return { received: b ? b.lat.length : 0, lat: b ? b.lat : [] };
  },
  close: async () => {
    for (const c of clients) c.socket.disconnect();
    setTimeout(() => process.exit(0), 200);
    return { closed: clients.length };
  },
};

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  let reply;
  try {
    reply = await commands[msg.cmd](msg);
  } catch (err) {
    reply = { error: String(err?.stack ?? err) };
  }
  process.stdout.write(JSON.stringify({ id: msg.id, ...reply }) + "\n");
});
rl.on("close", () => process.exit(0)); // the orchestrator went away
