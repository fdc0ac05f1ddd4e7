// Clients of the chaos test (tests/integration/test_chaos.py): many
// socket.io-client connections in one Node process, each watching a few jobs
// and dropping its own connection at random about once a second.
//
// When: a random while (dropMinMs..dropMaxMs) after the client has rejoined
// all its jobs on the current connection, and, on some connections, a few
// milliseconds after connecting, while its joins are in flight. Dropping
// relative to the last rejoin (not on a fixed clock) keeps about one drop a
// second when the server is quick, and does not pile reconnects onto a
// server that is slow (a busy CI machine), where a fixed clock would drop
// clients before they ever finish rejoining.
//
// They apply ONLY the rules of docs/protocol.md ("Resume"), written out here,
// not the project's JS client (src/progresscast/flask/static/progresscast.js), which repairs
// gaps by itself and would hide a loss on the server side:
//   - keep the highest applied seq per job; drop events with seq <= it;
//   - on every (re)connect, rejoin each job with `since` = that seq;
//   - buffer a job's live events until its join ack; apply the ack's
//     `events`, then the buffered ones (dropping by seq);
//   - an ack {ok: false, error: {code: "unavailable"}} is retried shortly
//     (with backoff), as the protocol allows.
// Nothing is repaired: a live event with seq > last + 1 (a gap) is counted
// and applied as it is, and a `truncated` ack is counted as a failure.
//
// Usage: node chaos_clients.mjs config.json
//   config: {url, clients: [{user, token, jobs}], dropMinMs, dropMaxMs,
//            midJoinDropShare, midJoinDropMaxMs, joinRetryMs, joinRetryMaxMs,
//            joinTimeoutMs, resultsPath}
// stdin commands (one per line):
//   phase <name>  label what follows (a fault), and start counting which
//                 clients have fully rejoined since
//   chaos         start the random drops (after "ready")
//   end <ms>      wait (at most <ms>) until every client has applied the
//                 terminal event of each of its jobs, write resultsPath, exit
// stdout: JSON lines {"ready": ...}, {"stats": ...} every 250 ms, {"end": ...}.
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
// The protocol's event names, from the suite's spec (tests/protocol_spec.py).
const EVENT_TYPES = cfg.eventTypes;
const TERMINAL = new Set(cfg.terminal);
const t0 = Date.now();
const now = () => Date.now() - t0;
const jitter = (ms) => ms * (0.5 + Math.random());

let phase = "setup";
let phaseNumber = 0;
let dropping = false;
const totals = {
  forcedDisconnects: 0,
  dropsWhileJoining: 0, // forced disconnects with a join_job still unanswered
  serverDisconnects: 0, // "io server disconnect": the server closed our session
  disconnectReasons: {},
  connects: 0,
  connectErrors: 0,
  refusals: [], // connect_error with data from the server (a refused connect)
  joins: 0,
  joinUnavailable: 0,
  joinTimeouts: 0,
  joinErrors: [], // any other {ok: false}: a failure for this test
  truncated: [], // a failure for this test
  liveGaps: [], // live (or buffered) event with seq > last + 1
  liveGapsByPhase: {}, // how many, and how many seqs they skipped, per phase
  ackGaps: [], // a join ack's events not starting at since + 1, or with holes
  duplicatesDropped: 0, // events with seq <= last (expected around rejoins)
  unexpectedEvents: 0, // an event for a job this client does not watch
};

function record(list, entry) {
  if (list.length < 200) list.push(entry); // evidence, bounded
  list.count = (list.count || 0) + 1;
}

class Watcher {
  constructor(index, spec) {
    this.index = index;
    this.user = spec.user;
    this.gen = 0; // connection generation: acks of an older one are ignored
    this.genPhase = -1;
    this.resumedPhase = -1; // the last phase after which every job was rejoined
    this.forced = 0;
    this.jobs = new Map(
      spec.jobs.map((id) => [
        id,
        { last: 0, applied: [], joining: false, buffer: [], attempt: 0, retryDelay: 0, done: false },
      ]),
    );
    const socket = io(`${cfg.url}/progress`, {
      forceNew: true, // one engine.io connection per client, not one shared Manager
      transports: ["websocket"],
      auth: { token: spec.token },
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
      timeout: 3000, // a connect attempt that hangs (a server being killed) is retried
    });
    this.socket = socket;
    for (const type of EVENT_TYPES) socket.on(type, (event) => this.onEvent(event));
    socket.on("connect", () => this.onConnect());
    socket.on("disconnect", (reason) => this.onDisconnect(reason));
    socket.on("connect_error", (err) => {
      totals.connectErrors += 1;
      if (!socket.active) {
        // Refused by the server (not a transport failure): socket.io-client
        // does not retry that by itself.
        record(totals.refusals, { client: this.user, data: err.data, message: err.message, phase });
        setTimeout(() => socket.connect(), jitter(300));
      }
    });
  }

  /** Drop this connection (generation `gen`) in `delay` ms, if it still is the current one. */
  scheduleDrop(gen, delay) {
    if (!dropping) return;
    clearTimeout(this.dropTimer);
    this.dropTimer = setTimeout(() => {
      if (dropping && gen === this.gen && this.socket.connected) {
        totals.forcedDisconnects += 1;
        this.forced += 1;
        if ([...this.jobs.values()].some((st) => st.joining)) totals.dropsWhileJoining += 1;
        this.socket.io.engine.close(); // the manager reconnects by itself
      }
    }, delay);
  }

  /** The next drop: a random while after the last complete rejoin. */
  dropLater(gen) {
    this.scheduleDrop(gen, cfg.dropMinMs + Math.random() * (cfg.dropMaxMs - cfg.dropMinMs));
  }

  onConnect() {
    totals.connects += 1;
    this.gen += 1;
    this.genPhase = phaseNumber;
    for (const [jobId, st] of this.jobs) {
      st.joining = true;
      st.buffer = [];
      this.join(jobId, this.gen);
    }
    if (Math.random() < cfg.midJoinDropShare) {
      this.scheduleDrop(this.gen, Math.random() * cfg.midJoinDropMaxMs); // joins in flight
    }
  }

  onDisconnect(reason) {
    totals.disconnectReasons[reason] = (totals.disconnectReasons[reason] || 0) + 1;
    if (reason === "io server disconnect") {
      // The server ended the session; socket.io-client leaves reconnecting to us.
      totals.serverDisconnects += 1;
      setTimeout(() => this.socket.connect(), jitter(100));
    }
  }

  join(jobId, gen) {
    if (gen !== this.gen || !this.socket.connected) return;
    const st = this.jobs.get(jobId);
    const attempt = ++st.attempt;
    const since = st.last;
    totals.joins += 1;
    this.socket.timeout(cfg.joinTimeoutMs).emit("join_job", { job_id: jobId, since }, (err, ack) => {
      if (gen !== this.gen || attempt !== st.attempt) return; // a stale answer
      if (err) {
        // socket.io-client also answers pending acks with an error when the
        // connection drops; the next connect rejoins. Only a live one timed out.
        if (!this.socket.connected) return;
        totals.joinTimeouts += 1;
        return this.retryLater(st, jobId, gen);
      }
      if (!ack || !ack.ok) {
        const code = ack && ack.error && ack.error.code;
        if (code === "unavailable") totals.joinUnavailable += 1;
        else record(totals.joinErrors, { client: this.user, job: jobId, since, ack, phase, t: now() });
        return this.retryLater(st, jobId, gen);
      }
      st.retryDelay = 0;
      if (ack.truncated) {
        // The protocol says: start over from ack.job. For this test it is a loss.
        record(totals.truncated, { client: this.user, job: jobId, since, seq: ack.job.seq, phase, t: now() });
      }
      const events = ack.events || [];
      let expected = since + 1;
      for (const event of events) {
        if (event.seq !== expected) {
          record(totals.ackGaps, { client: this.user, job: jobId, since, expected, seq: event.seq, phase, t: now() });
        }
        expected = event.seq + 1;
        this.apply(st, event, "ack");
      }
      const buffered = st.buffer;
      st.buffer = [];
      st.joining = false;
      for (const event of buffered) this.apply(st, event, "buffered");
      this.checkResumed(gen);
    });
  }

  retryLater(st, jobId, gen) {
    // Exponential backoff with jitter: hundreds of clients retrying at a
    // fixed pace would keep a recovering server overloaded.
    st.retryDelay = Math.min((st.retryDelay || cfg.joinRetryMs / 2) * 2, cfg.joinRetryMaxMs);
    setTimeout(() => this.join(jobId, gen), jitter(st.retryDelay));
  }

  checkResumed(gen) {
    if (gen !== this.gen) return;
    for (const st of this.jobs.values()) if (st.joining) return;
    this.resumedPhase = this.genPhase;
    if (this.resumedGen !== gen) {
      this.resumedGen = gen;
      this.dropLater(gen);
    }
  }

  onEvent(event) {
    const st = this.jobs.get(event.job_id);
    if (!st) {
      totals.unexpectedEvents += 1;
      return;
    }
    if (st.joining) st.buffer.push(event);
    else this.apply(st, event, "live");
  }

  apply(st, event, source) {
    if (event.seq <= st.last) {
      totals.duplicatesDropped += 1;
      return;
    }
    if (event.seq > st.last + 1 && source !== "ack") {
      const byPhase = (totals.liveGapsByPhase[phase] ||= { gaps: 0, skipped: 0 });
      byPhase.gaps += 1;
      byPhase.skipped += event.seq - st.last - 1;
      record(totals.liveGaps, {
        client: this.user,
        job: event.job_id,
        last: st.last,
        seq: event.seq,
        type: event.type,
        source,
        phase,
        t: now(),
      });
    }
    st.applied.push(event);
    st.last = event.seq;
    if (TERMINAL.has(event.type)) st.done = true;
  }

  get done() {
    for (const st of this.jobs.values()) if (!st.done || st.joining) return false;
    return true;
  }
}

const watchers = cfg.clients.map((spec, i) => new Watcher(i, spec));

function stats() {
  let applied = 0;
  let connected = 0;
  let resumed = 0;
  let done = 0;
  for (const w of watchers) {
    for (const st of w.jobs.values()) applied += st.applied.length;
    if (w.socket.connected) connected += 1;
    if (w.resumedPhase >= phaseNumber) resumed += 1;
    if (w.done) done += 1;
  }
  return {
    t: now(),
    phase,
    clients: watchers.length,
    connected,
    resumed, // clients that rejoined every job on a connection made after the last phase mark
    done,
    applied,
    forced: totals.forcedDisconnects,
    serverDisconnects: totals.serverDisconnects,
    joins: totals.joins,
    unavailable: totals.joinUnavailable,
    joinTimeouts: totals.joinTimeouts,
    liveGaps: totals.liveGaps.count || 0,
    truncated: totals.truncated.count || 0,
    joinErrors: totals.joinErrors.count || 0,
  };
}

const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const statsTimer = setInterval(() => emit({ stats: stats() }), 250);

// "ready" once every client has joined each of its jobs the first time.
const readyTimer = setInterval(() => {
  if (watchers.every((w) => w.resumedPhase >= 0)) {
    clearInterval(readyTimer);
    emit({ ready: stats() });
  }
}, 20);

let ending = false;
async function end(timeoutMs) {
  if (ending) return;
  ending = true;
  dropping = false;
  for (const w of watchers) clearTimeout(w.dropTimer);
  const deadline = Date.now() + timeoutMs;
  while (!watchers.every((w) => w.done) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const summary = stats();
  const results = {
    totals: {
      ...totals,
      refusals: { count: totals.refusals.count || 0, sample: totals.refusals },
      joinErrors: { count: totals.joinErrors.count || 0, sample: totals.joinErrors },
      truncated: { count: totals.truncated.count || 0, sample: totals.truncated },
      liveGaps: { count: totals.liveGaps.count || 0, sample: totals.liveGaps },
      ackGaps: { count: totals.ackGaps.count || 0, sample: totals.ackGaps },
    },
    summary,
    clients: watchers.map((w) => ({
      user: w.user,
      forced: w.forced,
      jobs: Object.fromEntries(
        [...w.jobs].map(([id, st]) => [id, { done: st.done, joining: st.joining, events: st.applied }]),
      ),
    })),
  };
  writeFileSync(cfg.resultsPath, JSON.stringify(results));
  clearInterval(statsTimer);
  for (const w of watchers) w.socket.disconnect();
  emit({ end: summary });
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/, 2);
  if (command === "phase") {
    phase = arg;
    phaseNumber += 1;
  } else if (command === "chaos") {
    dropping = true;
    for (const w of watchers) if (w.resumedGen === w.gen) w.dropLater(w.gen);
  } else if (command === "end") {
    end(Number(arg) || 20000);
  }
});
lines.on("close", () => end(0)); // the test went away: report and leave
