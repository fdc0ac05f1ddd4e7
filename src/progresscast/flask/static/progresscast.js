// progresscast.js — a resume-aware client for the progresscast Socket.IO protocol.
//
// A plain ES module with no build step and no imports: the official Socket.IO
// client is handed in as `io` (in a browser it defaults to globalThis.io), so
// the same file runs in the dashboard and under Node.
//
//   import { io } from "socket.io-client";
//   import { createClient } from "./progresscast.js";
//   const pc = createClient({ url: "http://127.0.0.1:8000", getToken, io });
//   const stop = pc.watch(jobId, (job) => render(job));   // whole snapshots, never deltas
//
// The resume rules (docs/protocol.md "Resume"): the client keeps the last seq
// applied per job and drops every event with seq <= it; on every (re)connect
// it rejoins with `since = last seq` (join_job) or re-runs watch_jobs; live
// events that arrive before a join ack are buffered and applied after the
// ack's `events`; a `truncated` ack resets the job from the ack's snapshot.

export const NAMESPACE = "/progress";
export const EVENT_TYPES = Object.freeze([
  "job_queued",
  "job_started",
  "progress_update",
  "stage_completed",
  "job_completed",
  "job_failed",
  "job_cancelled",
]);
export const TERMINAL_STATUSES = Object.freeze(["completed", "failed", "cancelled"]);
/** The reason the server records for a cancel request that gives none. */
export const DEFAULT_CANCEL_REASON = "cancelled on request";

const TERMINAL = new Set(TERMINAL_STATUSES);
// Failed requests worth repeating on the same connection, after a pause.
const RETRYABLE = new Set(["rate_limited", "unavailable", "internal", "timeout"]);

/** True for a job status that is final. */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

// --------------------------------------------------------------------------
// Applying events to snapshots: the server's state machine (src/progresscast/
// state.py), replayed on the client from what the events carry. The server
// publishes every change as its own event (a progress update for a later
// stage, or the end of a job with a stage running, comes after the
// stage_completed that leaves the stage) with the numbers it changes, so
// applied in order they give the server's snapshot after each one; the golden
// fixtures in tests/fixtures/state_machine/ hold the server's own examples.

function stageAt(job, name) {
  return name == null ? -1 : job.stages.findIndex((s) => s.name === name);
}

function newSnapshot(ev) {
  return {
    job_id: ev.job_id,
    name: ev.name,
    owner: ev.owner,
    status: "queued",
    stages: ev.stages.map((s) => ({
      name: s.name,
      weight: s.weight,
      status: "pending",
      progress: 0,
    })),
    stage: null,
    progress: 0,
    stage_progress: 0,
    message: null,
    eta_seconds: null,
    eta_low: null, // the ETA's range, from past runs (extension, issue 14)
    eta_high: null,
    elapsed_seconds: null,
    created_at: ev.ts,
    started_at: null,
    finished_at: null,
    result: null,
    error: null,
    metadata: ev.metadata,
    seq: 0,
    cancel_requested: null,
    // Counts of the current stage, and groups (extension, issue 13).
    n: null,
    total: null,
    unit: null,
    rate: null,
    parent_id: ev.parent_id ?? null,
    children: null, // set from the event, below
    // The pipeline this job is a run of, and whether its stage weights were
    // learned from past runs (extension, issue 14); both from the event, below.
    kind: ev.name,
    weights: "declared",
  };
}

const ETA_KEYS = ["eta_seconds", "eta_low", "eta_high"];

// `kind` and `weights` ride on job_queued and job_started (extension, issue 14).
function setKind(job, ev) {
  if ("kind" in ev) job.kind = ev.kind;
  if ("weights" in ev) job.weights = ev.weights;
}

// job_started carries the stages with the weights in force (learned at start,
// maybe): each stage takes its weight from it and keeps its status and progress.
function setWeights(job, ev) {
  if (!Array.isArray(ev.stages)) return;
  const weights = new Map(ev.stages.map((s) => [s.name, s.weight]));
  job.stages = job.stages.map((stage) =>
    weights.has(stage.name) ? { ...stage, weight: weights.get(stage.name) } : stage,
  );
}

const COUNT_KEYS = ["n", "total", "unit", "rate"];

// The current stage's count (n of total, unit, rate): a progress update sets
// it, a stage transition clears it, an ending event carries it as it was.
function setCounts(job, ev, { always = false } = {}) {
  for (const key of COUNT_KEYS) {
    if (key in ev) job[key] = ev[key] ?? null;
    else if (always) job[key] = null;
  }
}

function clearCounts(job) {
  for (const key of COUNT_KEYS) job[key] = null;
}

// Complete the stage at `current` and make `target` (an index, or null for
// "no stage left") current; stages passed over become `skipped`.
function enterStage(job, current, target) {
  job.stages[current] = { ...job.stages[current], status: "completed", progress: 100 };
  const end = target == null ? job.stages.length : target;
  for (let i = current + 1; i < end; i++) job.stages[i] = { ...job.stages[i], status: "skipped" };
  if (target != null)
    job.stages[target] = { ...job.stages[target], status: "running", progress: 0 };
  job.stage = target == null ? null : job.stages[target].name;
  job.stage_progress = 0;
  job.message = null; // a status line belongs to the stage that set it
  clearCounts(job); // so does a count
}

/**
 * Apply one job event to a snapshot and return the new snapshot (a copy).
 *
 * Returns `snapshot` itself, unchanged, for a duplicate or stale event
 * (`seq <=` the snapshot's), and `null` when there is nothing to apply it to
 * (no snapshot, and the event does not create the job).
 *
 * ETA from history (extension, issue 14): progress updates carry the
 * estimate and its range (`eta_seconds`, `eta_low`, `eta_high`), the ending
 * events clear the range, and job_started replaces the stages' weights with
 * the ones in force (learned from past runs when `weights` is "learned").
 */
export function applyEvent(snapshot, ev) {
  if (snapshot && ev.seq <= snapshot.seq) return snapshot;
  let job;
  if (snapshot) {
    job = { ...snapshot, stages: snapshot.stages.slice() };
  } else if (ev.type === "job_queued" || ev.type === "job_started") {
    job = newSnapshot(ev);
  } else {
    return null;
  }
  switch (ev.type) {
    case "job_queued":
      setKind(job, ev);
      break;
    case "job_started":
      if ("parent_id" in ev) job.parent_id = ev.parent_id ?? null;
      setKind(job, ev);
      setWeights(job, ev);
      job.status = "running";
      job.started_at = ev.ts;
      if (job.stages.length) {
        job.stages[0] = { ...job.stages[0], status: "running" };
        job.stage = job.stages[0].name;
      }
      job.progress = 0;
      job.elapsed_seconds = 0;
      break;
    case "progress_update": {
      const index = stageAt(job, ev.stage);
      job.stage = ev.stage;
      job.stage_progress = ev.stage_progress;
      job.stages[index] = { ...job.stages[index], progress: ev.stage_progress };
      job.progress = ev.progress;
      job.message = ev.message;
      for (const key of ETA_KEYS) job[key] = ev[key] ?? null; // the estimate and its range
      job.elapsed_seconds = ev.elapsed_seconds;
      setCounts(job, ev, { always: true });
      break;
    }
    case "stage_completed": {
      const done = stageAt(job, ev.stage);
      const next = ev.next_stage == null ? null : stageAt(job, ev.next_stage);
      enterStage(job, done, next);
      job.progress = ev.progress;
      job.elapsed_seconds = ev.elapsed_seconds;
      break;
    }
    case "job_completed":
      job.status = "completed";
      job.finished_at = ev.ts;
      job.progress = 100;
      job.eta_seconds = 0;
      job.eta_low = job.eta_high = null;
      job.elapsed_seconds = ev.elapsed_seconds;
      job.result = ev.result;
      job.message = ev.message;
      setCounts(job, ev); // null: the last stage_completed cleared them
      break;
    case "job_failed":
    case "job_cancelled": {
      // The running stage's last numbers ride on the ending event (extension).
      const failed = ev.type === "job_failed";
      job.status = failed ? "failed" : "cancelled";
      job.finished_at = ev.ts;
      job.progress = ev.progress;
      job.stage_progress = ev.stage_progress;
      job.message = ev.message;
      job.eta_seconds = job.eta_low = job.eta_high = null;
      job.elapsed_seconds = ev.elapsed_seconds;
      setCounts(job, ev);
      const index = stageAt(job, ev.stage);
      if (index >= 0) {
        const status = failed ? "failed" : "cancelled";
        job.stages[index] = { ...job.stages[index], status, progress: ev.stage_progress };
      }
      if (failed) job.error = { message: ev.error.message, stage: ev.stage, type: ev.error.type };
      break;
    }
    default:
      return snapshot; // an event type this client does not know: skip it
  }
  // A parent's counts of its children ride on its events (progress updates,
  // and the ones that start or end it).
  if ("children" in ev) job.children = ev.children == null ? null : { ...ev.children };
  job.seq = ev.seq;
  return job;
}

// --------------------------------------------------------------------------
// The client

/**
 * Create a client. Options:
 *   url          server origin ("" = this page's), e.g. "http://127.0.0.1:8000"
 *   token        an access token (JWT), or
 *   getToken     async () => token: called to connect, and again when the server
 *                refuses the token (connect_error unauthorized) or says
 *                `session_expired`
 *   io           the Socket.IO client function (default globalThis.io)
 *   socketOptions  extra options for io() (transports, ...)
 *   ackTimeout   ms to wait for an ack (default 10000)
 *   reconnectionDelay / reconnectionDelayMax / randomizationFactor
 *                backoff with jitter (defaults 500 ms, 5000 ms, 0.5)
 * - batch: watchAll receives job_events frames (default true; see
 *                docs/protocol.md "watch_jobs {batch: true}")
 */
export function createClient(options = {}) {
  return new ProgressClient(options);
}

export class ProgressClient {
  constructor({
    url = "",
    token = null,
    getToken = null,
    io = globalThis.io,
    socketOptions = {},
    ackTimeout = 10000,
    reconnectionDelay = 500,
    reconnectionDelayMax = 5000,
    randomizationFactor = 0.5,
    batch = true,
  } = {}) {
    if (typeof io !== "function") {
      throw new TypeError(
        "createClient needs the Socket.IO client: pass { io } (socket.io-client)",
      );
    }
    this._token = token;
    this._getToken = getToken;
    // watchAll asks for job_events batches (one frame per BATCH_INTERVAL
    // instead of one per event); each event inside is handled as if alone.
    this._batch = batch;
    this._ackTimeout = ackTimeout;
    this._backoff = {
      min: reconnectionDelay,
      max: reconnectionDelayMax,
      jitter: randomizationFactor,
    };
    this._attempts = 0; // failed connects in a row, for our own retries
    this._timers = new Set();
    this._closed = false;
    /** jobs[job_id] = the latest snapshot of every job this client follows */
    this.jobs = new Map();
    // entries[job_id] = {snap, exact, watchers: Set, eventListeners: Set,
    //   errorListeners: Set, history, reported, pending: null | [buffered events],
    //   joinId, reconciling, changed}
    this._entries = new Map();
    this._all = null; // watchAll: {listeners: Set, errorListeners: Set, pending, reqId}
    /** "connected" | "reconnecting" | "offline" */
    this.state = "reconnecting";
    this._stateListeners = new Set();
    this._errorListeners = new Set();
    this._noticeListeners = new Set();

    this.socket = io(String(url).replace(/\/+$/, "") + NAMESPACE, {
      auth: (cb) => this._auth(cb),
      reconnectionDelay,
      reconnectionDelayMax,
      randomizationFactor,
      ...socketOptions,
    });
    for (const type of EVENT_TYPES) this.socket.on(type, (ev) => this._onEvent(ev));
    this.socket.on("job_events", (frame) => {
      for (const ev of frame?.events ?? []) this._onEvent(ev);
    });
    this.socket.on("connect", () => this._onConnect());
    this.socket.on("disconnect", (reason) => this._onDisconnect(reason));
    this.socket.on("connect_error", (err) => this._onConnectError(err));
    this.socket.on("session_expired", (data) => this._onSessionExpired(data));
    this.socket.on("notice", (notice) => {
      for (const cb of this._noticeListeners) cb(notice);
    });
    this.socket.io.on("reconnect_attempt", () => this._setState(this._offlineOr("reconnecting")));
    this.socket.io.on("reconnect_failed", () => this._setState("offline"));
    if (typeof globalThis.addEventListener === "function") {
      this._online = () => {
        if (this._closed || this.socket.connected) return;
        this._setState("reconnecting");
        if (!this.socket.active) this.socket.connect();
      };
      this._offline = () => {
        if (!this.socket.connected) this._setState("offline");
      };
      globalThis.addEventListener("online", this._online);
      globalThis.addEventListener("offline", this._offline);
    }
  }

  // ------------------------------------------------------------ public API

  /**
   * Follow one job. `onState(job)` gets its whole snapshot after every change
   * (and at once if it is already known). Options: `onEvent(event)` for each
   * event as it is applied (a timeline), `history: true` to first replay the
   * stored events through onEvent, `onError({code, message})`.
   * Returns a function that stops following.
   */
  watch(jobId, onState, { onEvent = null, onError = null, history = false } = {}) {
    if (typeof jobId !== "string" || !jobId) throw new TypeError("watch(jobId, onState): jobId");
    const entry = this._entry(jobId);
    const first = entry.watchers.size === 0;
    entry.watchers.add(onState);
    if (onEvent) entry.eventListeners.add(onEvent);
    if (onError) entry.errorListeners.add(onError);
    const wantsHistory = history && !entry.history;
    if (history) entry.history = true;
    if (entry.snap) {
      const snap = entry.snap;
      queueMicrotask(() => entry.watchers.has(onState) && onState(snap));
    }
    if (first || wantsHistory) this._join(entry);
    return () => {
      entry.watchers.delete(onState);
      if (onEvent) entry.eventListeners.delete(onEvent);
      if (onError) entry.errorListeners.delete(onError);
      if (entry.watchers.size || this._entries.get(jobId) !== entry) return;
      entry.joinId++; // an ack still on its way is no longer wanted
      entry.pending = null;
      entry.history = false;
      if (this.socket.connected) this.socket.emit("leave_job", { job_id: jobId });
      if (!this._all) this._forget(jobId);
    };
  }

  /**
   * Follow all the caller's jobs (the dashboard): new jobs appear as they are
   * created. `onState(jobs, job)` gets the Map of snapshots by job id and the
   * snapshot that changed (null after a full refresh). `keep`: at most this
   * many jobs are kept; beyond it the oldest finished ones are let go (a
   * dashboard left open for days). Returns a function that stops following.
   */
  watchAll(onState, { onError = null, keep = Infinity } = {}) {
    const first = !this._all;
    if (first) {
      this._all = {
        listeners: new Set(),
        errorListeners: new Set(),
        pending: null,
        reqId: 0,
        keep,
      };
    }
    const all = this._all;
    all.keep = Math.min(all.keep, keep);
    all.listeners.add(onState);
    if (onError) all.errorListeners.add(onError);
    if (this.jobs.size)
      queueMicrotask(() => all.listeners.has(onState) && onState(this.jobs, null));
    if (first) this._watchAll();
    return () => {
      all.listeners.delete(onState);
      if (onError) all.errorListeners.delete(onError);
      if (all.listeners.size || this._all !== all) return;
      this._all = null;
      if (this.socket.connected) this.socket.emit("unwatch_jobs", {});
      for (const [jobId, entry] of this._entries) if (!entry.watchers.size) this._forget(jobId);
    };
  }

  /**
   * Ask for a job to be cancelled. Resolves with the ack: `{ok: true, status}`
   * or `{ok: false, error: {code, message}}` (never rejects). Until the
   * pipeline stops, the job's snapshot shows `cancel_requested`.
   */
  async cancel(jobId, reason) {
    const payload = { job_id: jobId };
    if (reason != null) payload.reason = reason;
    const ack = await this._request("cancel_job", payload);
    const entry = this._entries.get(jobId);
    if (
      ack.ok &&
      entry?.snap &&
      !isTerminal(entry.snap.status) &&
      entry.snap.cancel_requested == null
    ) {
      // The request takes no seq and no event says it happened: show it here.
      this._set(
        entry,
        { ...entry.snap, cancel_requested: reason || DEFAULT_CANCEL_REASON },
        entry.exact,
      );
      this._notify(entry);
    }
    return ack;
  }

  /**
   * The children of a group's parent job (`list_children`), in creation
   * order: resolves with their snapshots. Rejects with an Error that carries
   * the protocol's `code` (and `message`, `details`): `not_found` for a job
   * the caller may not read, `timeout` or `disconnected` when no answer came;
   * like a refused join, the error also goes to the `onError` listeners
   * (except `disconnected`). The snapshots are a reading, not followed: a
   * parent's events (its `children` counts) tell when to read them again.
   */
  async listChildren(jobId) {
    const ack = await this._request("list_children", { job_id: jobId });
    if (ack?.ok && Array.isArray(ack.jobs)) return ack.jobs;
    const error = ack?.error ?? { code: "internal", message: "list_children: no list in the ack" };
    if (error.code !== "disconnected") this._reportError(error);
    throw Object.assign(new Error(`list_children: ${error.code}: ${error.message}`), {
      code: error.code,
      details: error.details,
    });
  }

  /**
   * Feed an event obtained elsewhere (e.g. GET /api/jobs/<id>/events); the
   * same rules apply as to live ones (duplicates and stale events dropped).
   * Returns true if it changed the job.
   */
  receive(ev) {
    const entry = this._entries.get(ev.job_id);
    if (!entry) return false;
    const applied = this._applyOne(entry, ev);
    if (applied) this._settle(entry);
    return applied;
  }

  /** The last snapshot of a followed job, or undefined. */
  job(jobId) {
    return this.jobs.get(jobId);
  }

  /** `cb(state)` now and on every change of the connection state; returns an unsubscribe. */
  onConnectionState(cb) {
    this._stateListeners.add(cb);
    cb(this.state);
    return () => this._stateListeners.delete(cb);
  }

  /** `cb({code, message})` for connection refusals and failed requests; returns an unsubscribe. */
  onError(cb) {
    this._errorListeners.add(cb);
    return () => this._errorListeners.delete(cb);
  }

  /**
   * `cb({id, message, level, ts})` for every operator's notice (`notice`
   * events: maintenance announcements and the like); returns an unsubscribe.
   */
  onNotice(cb) {
    this._noticeListeners.add(cb);
    return () => this._noticeListeners.delete(cb);
  }

  /** Disconnect for good. */
  close() {
    this._closed = true;
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    if (this._online) {
      globalThis.removeEventListener("online", this._online);
      globalThis.removeEventListener("offline", this._offline);
    }
    this.socket.disconnect();
    this._setState("offline");
  }

  // ---------------------------------------------------------- connection

  _auth(cb) {
    if (this._token == null && this._getToken) {
      Promise.resolve()
        .then(() => this._getToken())
        .then(
          (token) => {
            this._token = token ?? null;
            cb(this._token == null ? {} : { token: this._token });
          },
          (err) => {
            this._reportError({ code: "unauthorized", message: `getToken failed: ${err}` });
            cb({}); // refused unless the server is in demo mode: we retry with backoff
          },
        );
      return;
    }
    cb(this._token == null ? {} : { token: this._token });
  }

  _onConnect() {
    this._attempts = 0;
    this._setState("connected");
    for (const entry of this._entries.values()) if (entry.watchers.size) this._join(entry);
    if (this._all) this._watchAll();
  }

  _onDisconnect(reason) {
    // Whatever was in flight is void: the next connect rejoins with `since`.
    for (const entry of this._entries.values()) {
      entry.pending = null;
      entry.reconciling = false;
    }
    if (this._all) this._all.pending = null;
    if (this._closed || reason === "io client disconnect") {
      this._setState("offline");
    } else if (reason === "io server disconnect") {
      // The server closed us (token expired, flood): Socket.IO will not retry.
      this._retryLater();
    } else {
      this._setState(this._offlineOr("reconnecting")); // Socket.IO reconnects by itself
    }
  }

  _onConnectError(err) {
    const data = err?.data && typeof err.data === "object" ? err.data : null;
    if (data?.code) this._reportError({ code: data.code, message: data.message || err.message });
    if (this._closed) return;
    if (data?.code === "unauthorized") {
      if (!this._getToken) {
        this._setState("offline"); // a fixed token that is refused will not get better
        return;
      }
      this._token = null; // fetch a fresh one for the next attempt
    }
    // Refused by the server (not a network error): Socket.IO does not retry.
    if (!this.socket.active) this._retryLater();
    else this._setState(this._offlineOr("reconnecting"));
  }

  _onSessionExpired(data) {
    this._reportError({ code: "session_expired", message: data?.message || "token expired" });
    // A fixed token that expired is refused on reconnect, which reports it.
    if (this._getToken) this._token = null;
  }

  _retryLater() {
    if (this._closed) return;
    this._setState(this._offlineOr("reconnecting"));
    this._later(this._delay(this._attempts++), () => {
      if (!this._closed && !this.socket.connected && !this.socket.active) this.socket.connect();
    });
  }

  // Exponential backoff with jitter, like Socket.IO's own reconnection.
  _delay(attempt) {
    const { min, max, jitter } = this._backoff;
    const base = Math.min(max, min * 2 ** Math.min(attempt, 16));
    return Math.max(0, Math.round(base * (1 + jitter * (2 * Math.random() - 1))));
  }

  _later(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
  }

  _offlineOr(state) {
    return globalThis.navigator?.onLine === false ? "offline" : state;
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const cb of this._stateListeners) cb(state);
  }

  _reportError(error) {
    for (const cb of this._errorListeners) cb(error);
  }

  _request(event, payload) {
    return new Promise((resolve) => {
      this.socket.timeout(this._ackTimeout).emit(event, payload, (err, ack) => {
        if (err) {
          const code = this.socket.connected ? "timeout" : "disconnected";
          resolve({ ok: false, error: { code, message: `${event}: ${err.message}` } });
        } else {
          resolve(ack);
        }
      });
    });
  }

  // ---------------------------------------------------------------- jobs

  _entry(jobId) {
    let entry = this._entries.get(jobId);
    if (!entry) {
      entry = {
        jobId,
        snap: null,
        exact: false, // snap is a server snapshot, not rebuilt from events
        watchers: new Set(),
        eventListeners: new Set(),
        errorListeners: new Set(),
        history: false,
        reported: 0, // highest seq handed to eventListeners
        pending: null, // live events buffered until a join ack
        joinId: 0,
        reconciling: false,
        changed: false,
      };
      this._entries.set(jobId, entry);
    }
    return entry;
  }

  _forget(jobId) {
    this._entries.delete(jobId);
    this.jobs.delete(jobId);
  }

  _set(entry, snap, exact) {
    entry.snap = snap;
    entry.exact = exact;
    entry.changed = true;
    this.jobs.set(entry.jobId, snap);
  }

  _notify(entry) {
    if (!entry.changed) return;
    entry.changed = false;
    const snap = entry.snap;
    for (const cb of entry.watchers) cb(snap);
    if (this._all) for (const cb of this._all.listeners) cb(this.jobs, snap);
  }

  // join_job, with `since` when we know the job, buffering live events until
  // the ack. `temporary`: only to catch up; leave the room again afterwards.
  _join(entry) {
    if (!this.socket.connected) return; // the next connect joins
    const payload = { job_id: entry.jobId };
    let since = entry.snap ? entry.snap.seq : undefined;
    if (entry.history && entry.reported < (since ?? Infinity)) since = entry.reported;
    if (since !== undefined) payload.since = since;
    entry.pending = entry.pending ?? [];
    const id = ++entry.joinId;
    this._request("join_job", payload).then((ack) => {
      if (id !== entry.joinId) return; // a newer join (or a reconnect) took over
      const buffered = entry.pending ?? [];
      entry.pending = null;
      if (!ack.ok) {
        entry.reconciling = false;
        this._failed(entry.errorListeners, ack.error, () => {
          if (this._entries.get(entry.jobId) === entry && !entry.pending) this._join(entry);
        });
        return;
      }
      this._absorb(entry, ack, buffered);
      if (!entry.watchers.size && this._entries.get(entry.jobId) === entry) {
        this.socket.emit("leave_job", { job_id: entry.jobId }); // joined only to catch up
      }
    });
  }

  _absorb(entry, ack, buffered) {
    const events = ack.events ?? [];
    if (!entry.snap || ack.truncated) {
      // Start from the snapshot; the events are history for timelines.
      for (const ev of events) if (ev.seq <= ack.job.seq) this._report(entry, ev);
      this._set(entry, ack.job, true);
    } else {
      for (const ev of events) {
        if (ev.seq <= entry.snap.seq)
          this._report(entry, ev); // older history a timeline asked for
        else this._applyOne(entry, ev);
      }
      // Same seq: the ack's snapshot is the server's truth, including what
      // events do not carry (cancel_requested, a running job's elapsed time).
      if (ack.job.seq === entry.snap.seq) this._set(entry, ack.job, true);
    }
    if (entry.history) entry.reported = Math.max(entry.reported, entry.snap.seq);
    entry.reconciling = false;
    for (const ev of buffered) this._applyOne(entry, ev);
    this._settle(entry);
  }

  _watchAll() {
    const all = this._all;
    if (!all || !this.socket.connected) return;
    all.pending = all.pending ?? [];
    const id = ++all.reqId;
    this._request("watch_jobs", this._batch ? { batch: true } : {}).then((ack) => {
      if (this._all !== all || id !== all.reqId) return;
      const buffered = all.pending ?? [];
      all.pending = null;
      if (!ack.ok) {
        this._failed(all.errorListeners, ack.error, () => this._all === all && this._watchAll());
        return;
      }
      for (const snap of ack.jobs) {
        const entry = this._entry(snap.job_id);
        // A job joined on its own is kept current by its join (and timeline).
        if (entry.watchers.size && entry.snap) continue;
        if (!entry.snap || snap.seq >= entry.snap.seq) this._set(entry, snap, true);
      }
      this._trim();
      for (const entry of this._entries.values()) {
        if (!entry.changed) continue;
        entry.changed = false;
        for (const cb of entry.watchers) cb(entry.snap);
      }
      for (const cb of all.listeners) cb(this.jobs, null);
      for (const ev of buffered) this._onEvent(ev);
    });
  }

  // Let go of the oldest finished jobs beyond watchAll's `keep`.
  _trim() {
    const keep = this._all?.keep ?? Infinity;
    if (this._entries.size <= keep) return;
    const old = [...this._entries.values()]
      .filter((e) => e.snap && isTerminal(e.snap.status) && !e.watchers.size && !e.pending)
      .sort((a, b) => (a.snap.created_at ?? "").localeCompare(b.snap.created_at ?? ""));
    for (const entry of old.slice(0, this._entries.size - keep)) this._forget(entry.jobId);
  }

  _failed(listeners, error, retry) {
    const err = error ?? { code: "internal", message: "request failed" };
    if (err.code === "disconnected") return; // the next connect asks again
    for (const cb of listeners) cb(err);
    this._reportError(err);
    if (RETRYABLE.has(err.code) && this.socket.connected) {
      this._later(this._delay(1), () => this.socket.connected && retry());
    }
  }

  _onEvent(ev) {
    let entry = this._entries.get(ev.job_id);
    if (!entry) {
      if (!this._all) return; // not ours (any more)
      if (this._all.pending) {
        this._all.pending.push(ev);
        return;
      }
      entry = this._entry(ev.job_id);
      this._trim();
    }
    if (entry.pending) {
      entry.pending.push(ev); // a join is on its way: after its ack
      return;
    }
    if (this._all?.pending && !entry.watchers.size) {
      this._all.pending.push(ev); // after the watch_jobs snapshots
      return;
    }
    if (this._applyOne(entry, ev)) this._settle(entry);
  }

  // Apply one event if it is the next one; catch up first if we missed some.
  _applyOne(entry, ev) {
    const snap = entry.snap;
    if (snap && ev.seq <= snap.seq) return false; // duplicate or stale
    const next = snap ? applyEvent(snap, ev) : ev.seq === 1 ? applyEvent(null, ev) : null;
    if (next === null || (snap && ev.seq !== snap.seq + 1)) {
      // A gap (or a job we have never seen mid-way): fetch what is missing.
      if (!entry.pending) this._join(entry);
      entry.pending?.push(ev);
      return false;
    }
    if (next === snap) return false; // an event type we do not know
    this._set(entry, next, false);
    this._report(entry, ev);
    return true;
  }

  _report(entry, ev) {
    if (ev.seq <= entry.reported) return;
    entry.reported = ev.seq;
    for (const cb of entry.eventListeners) cb(ev);
  }

  // After a batch: notify, and make a job that just ended exact. Ending
  // events carry the last numbers, but not everything: `cancel_requested` is
  // no event. One join with since = seq reads the server's final snapshot.
  _settle(entry) {
    if (
      entry.snap &&
      isTerminal(entry.snap.status) &&
      !entry.exact &&
      !entry.reconciling &&
      !entry.pending &&
      this.socket.connected
    ) {
      entry.reconciling = true;
      this._join(entry);
    }
    this._notify(entry);
  }
}
