// Shared pieces of the dashboard pages: sign-in, the connection banner, the
// job card and the formatting of numbers and times. No framework: cards are
// built once and updated in place, so focus and scroll stay where they are.
import { createClient } from "./progresscast.js";

const TOKEN_KEY = "progresscast.token";
const CHIP_STATE = {
  completed: "done",
  running: "current",
  pending: "pending",
  skipped: "skipped",
  failed: "failed",
  cancelled: "cancelled",
};
const STATUS_LABEL = {
  queued: "Queued",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

// ------------------------------------------------------------- formatting

const pad2 = (n) => String(n).padStart(2, "0");

/** 65 → "1m 05s", 4000 → "1h 06m", 7 → "7s", null → "—". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad2(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad2(Math.floor((s % 3600) / 60))}m`;
}

/** Whole percent, never rounded up to 100 before the job really is done. */
export function formatPercent(progress) {
  const p = Math.max(0, Math.min(100, progress ?? 0));
  return `${p >= 100 ? 100 : Math.floor(p)}%`;
}

const weightPercent = (w) => `${Math.round(w * 100)}%`;

export function formatClock(iso, { ms = false } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  const time = d.toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
  return ms ? `${time}.${String(d.getMilliseconds()).padStart(3, "0")}` : time;
}

export function formatDateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? formatClock(iso) : `${d.toLocaleDateString()} ${formatClock(iso)}`;
}

/** A result in a line: {pages: 120, issues: 3} → "Result: pages 120 · issues 3". */
export function summarize(result) {
  if (result == null) return "";
  if (typeof result === "object" && !Array.isArray(result)) {
    const parts = Object.entries(result).map(
      ([k, v]) => `${k.replace(/_/g, " ")} ${typeof v === "object" ? JSON.stringify(v) : v}`,
    );
    return parts.length ? `Result: ${parts.join(" · ")}` : "";
  }
  return `Result: ${JSON.stringify(result)}`;
}

const isActive = (job) => job.status === "running" || job.status === "queued";
export const isCancelling = (job) => isActive(job) && job.cancel_requested != null;

// ------------------------------------------------------------------ DOM

/** h("div", {class: "x", dataset: {a: 1}}, child, "text") */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.filter((c) => c != null));
  return el;
}

const setText = (el, text) => {
  if (el.textContent !== text) el.textContent = text;
};

const setAttr = (el, name, value) => {
  if (value == null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
};

/** Say something to screen readers (a polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => (region.textContent = text), 50);
}

// --------------------------------------------------------------- job card

/**
 * One job as a card. `update(job)` with each new snapshot; `tick()` once a
 * second moves a running job's elapsed time on between events.
 * Options: `heading` ("h2" | "h1"), `link` (name links to the job page),
 * `onCancel(job)` → Promise of the cancel ack.
 */
export class JobCard {
  constructor(job, { heading = "h2", link = true, onCancel = null } = {}) {
    this.onCancel = onCancel;
    this.job = null;
    this.elapsed = { value: null, at: 0 };
    const id = `job-${job.job_id}`;
    this.name = link ? h("a", { href: `${BASE}/jobs/${encodeURIComponent(job.job_id)}` }) : h("span");
    this.sub = h("span", { class: "job-sub" });
    this.badge = h("span", { class: "badge" });
    this.fill = h("div", { class: "bar-fill" });
    this.bar = h(
      "div",
      { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 },
      this.fill,
    );
    this.pct = h("span", { class: "pct", "aria-hidden": "true" });
    this.stages = h("ol", { class: "stages", "aria-label": "Stages" });
    this.message = h("p", { class: "job-message" });
    this.errorType = h("span", { class: "error-type" });
    this.errorStage = h("span", { class: "error-stage" });
    this.errorMessage = h("p", { class: "error-message" });
    this.error = h(
      "div",
      { class: "job-error", hidden: true },
      h("p", { class: "error-title" }, "Failed: ", this.errorType, " in ", this.errorStage),
      this.errorMessage,
    );
    this.note = h("p", { class: "job-note", role: "alert", hidden: true });
    this.elapsedText = h("dd", { class: "elapsed" });
    this.etaLabel = h("dt", {}, "ETA");
    this.etaText = h("dd", { class: "eta" });
    this.cancel = h(
      "button",
      { type: "button", class: "btn cancel", hidden: true, onclick: () => this._cancel() },
      "Cancel",
    );
    this.el = h(
      "article",
      { class: "job", "aria-labelledby": `${id}-name`, dataset: { jobId: job.job_id } },
      h(
        "div",
        { class: "job-head" },
        h(
          "div",
          { class: "job-title" },
          h(heading, { class: "job-name", id: `${id}-name` }, this.name),
          this.sub,
        ),
        this.badge,
      ),
      h("div", { class: "job-progress" }, this.bar, this.pct),
      this.stages,
      this.message,
      this.error,
      this.note,
      h(
        "div",
        { class: "job-foot" },
        (this.times = h(
          "dl",
          { class: "job-times" },
          h("div", {}, h("dt", {}, "Elapsed"), this.elapsedText),
          h("div", {}, this.etaLabel, this.etaText),
        )),
        this.cancel,
      ),
    );
    this.update(job);
  }

  update(job) {
    const prev = this.job;
    this.job = job;
    const cancelling = isCancelling(job);
    this.el.dataset.status = job.status;
    setText(this.name, job.name);
    setText(
      this.sub,
      job.started_at
        ? `Started ${formatDateTime(job.started_at)}`
        : `Queued ${formatDateTime(job.created_at)}`,
    );
    setText(this.badge, cancelling ? "Cancelling…" : (STATUS_LABEL[job.status] ?? job.status));
    this.badge.dataset.status = job.status;
    if (cancelling) this.badge.dataset.cancelling = "";
    else delete this.badge.dataset.cancelling;

    const pct = Math.max(0, Math.min(100, job.progress ?? 0));
    this.fill.style.width = `${pct}%`;
    setText(this.pct, formatPercent(pct));
    setAttr(this.bar, "aria-valuenow", Math.round(pct * 10) / 10);
    setAttr(
      this.bar,
      "aria-valuetext",
      `${formatPercent(pct)}${job.stage ? `, ${job.stage}` : ""}, ${job.status}`,
    );
    setAttr(this.bar, "aria-label", `Progress of ${job.name}`);

    this._stages(job);
    const line =
      job.message ?? (job.status === "queued" ? "Waiting to start" : summarize(job.result));
    setText(this.message, line);
    this.message.title = line;

    const failed = job.status === "failed" && job.error;
    this.error.hidden = !failed;
    if (failed) {
      setText(this.errorType, job.error.type || "Error");
      setText(this.errorStage, job.error.stage || "no stage");
      setText(this.errorMessage, job.error.message || "");
    }

    if (job.elapsed_seconds !== prev?.elapsed_seconds || job.status !== prev?.status) {
      this.elapsed = { value: job.elapsed_seconds, at: performance.now() };
    }
    this._times();

    const active = isActive(job);
    if (!active && this.cancel.contains(document.activeElement)) this.name.focus?.();
    this.cancel.hidden = !active;
    setText(this.cancel, cancelling ? "Cancelling…" : "Cancel");
    setAttr(this.cancel, "aria-disabled", cancelling || this.cancelling ? "true" : null);
    setAttr(
      this.cancel,
      "aria-label",
      cancelling ? `Cancelling ${job.name}` : `Cancel ${job.name}`,
    );
    if (!active) this.note.hidden = true;
  }

  /** Move a running job's elapsed time on between events. */
  tick() {
    if (this.job?.status === "running") this._times();
  }

  _times() {
    const job = this.job;
    let elapsed = this.elapsed.value;
    if (job.status === "running" && elapsed != null)
      elapsed += (performance.now() - this.elapsed.at) / 1000;
    this.times.hidden = job.status === "queued"; // nothing to time yet
    setText(this.elapsedText, formatDuration(elapsed));
    if (job.status === "running") {
      setText(this.etaLabel, "ETA");
      setText(
        this.etaText,
        job.eta_seconds == null ? "estimating…" : formatDuration(job.eta_seconds),
      );
    } else {
      setText(this.etaLabel, "Finished");
      setText(this.etaText, formatDateTime(job.finished_at));
    }
  }

  _stages(job) {
    const chips = this.stages.children;
    job.stages.forEach((stage, i) => {
      let chip = chips[i];
      if (!chip) {
        chip = h(
          "li",
          { class: "chip" },
          h("span", { class: "chip-icon", "aria-hidden": "true" }),
          h("span", { class: "chip-name" }, stage.name),
          h(
            "span",
            { class: "chip-weight", title: "share of the whole job" },
            weightPercent(stage.weight),
          ),
          h("span", { class: "sr-only chip-state" }),
        );
        this.stages.append(chip);
      }
      const state = CHIP_STATE[stage.status] ?? stage.status;
      chip.dataset.state = state;
      chip.dataset.stage = stage.name;
      const detail = state === "current" ? `current, ${formatPercent(stage.progress)}` : state;
      setText(chip.lastElementChild, `: ${detail}`);
      chip.title = `${stage.name} (${weightPercent(stage.weight)} of the job): ${detail}`;
      if (state === "current") chip.style.setProperty("--p", Math.round(stage.progress ?? 0));
      else chip.style.removeProperty("--p");
    });
  }

  async _cancel() {
    const job = this.job;
    if (!this.onCancel || !isActive(job) || isCancelling(job) || this.cancelling) return;
    this.cancelling = true;
    this.note.hidden = true;
    setText(this.cancel, "Cancelling…");
    setAttr(this.cancel, "aria-disabled", "true");
    try {
      const ack = await this.onCancel(job);
      if (!ack.ok && ack.error?.code !== "conflict") {
        this.note.textContent = `Could not cancel: ${ack.error?.message ?? "no answer"}`;
        this.note.hidden = false;
      }
    } finally {
      this.cancelling = false;
      this.update(this.job);
    }
  }
}

// ------------------------------------------------------- sign-in, banner

function tokenUser(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return { user: payload.sub, admin: !!payload.admin };
  } catch {
    return null;
  }
}

/** Where the pages are mounted (the extension's URL prefix; "" at the root). */
const BASE = globalThis.document?.body?.dataset.base ?? "";

/**
 * How this page connects: with the token the page carries (from the app's
 * token_loader, renewable at <base>/page-token); else as the user the app
 * signed in (its session cookie; no token); else `#token=...` from the
 * address (moved into sessionStorage and out of the address bar), else
 * sessionStorage. A fragment never reaches the server.
 */
function findToken() {
  const { token: given, sessionUser } = document.body.dataset;
  if (given) return { token: given, renewable: true };
  if (sessionUser) {
    const admin = "sessionAdmin" in document.body.dataset;
    return { token: null, session: true, who: { user: sessionUser, admin } };
  }
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = fromHash || sessionStorage.getItem(TOKEN_KEY);
  return token ? { token } : null;
}

function showSignIn(reason) {
  const main = document.getElementById("main");
  const input = h("input", {
    id: "token-input",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const form = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        location.reload();
      },
    },
    h("label", { for: "token-input" }, "Access token"),
    input,
    h("button", { type: "submit", class: "btn primary" }, "Sign in"),
  );
  main.replaceChildren(
    h(
      "section",
      { class: "signin", id: "signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign-in needed"),
      reason ? h("p", { class: "refused", role: "alert" }, reason) : null,
      h(
        "p",
        {},
        "This dashboard shows your jobs live and needs an access token. Your app links here as ",
        h("code", {}, "/#token=…"),
        "; or paste a token below. Operators mint one with ",
        h("code", {}, "python -m progresscast token USER"),
        ".",
      ),
      form,
      h(
        "p",
        { class: "hint" },
        "The token stays in this browser tab (sessionStorage) and is never sent in a URL.",
      ),
    ),
  );
  setConnection("offline", { quiet: true });
  input.focus();
}

function setConnection(state, { quiet = false, everConnected = false } = {}) {
  const pill = document.getElementById("conn");
  const banner = document.getElementById("banner");
  const label = {
    connected: "Live",
    reconnecting: everConnected ? "Reconnecting…" : "Connecting…",
    offline: "Offline",
  }[state];
  pill.dataset.state = state === "reconnecting" && !everConnected ? "connecting" : state;
  setText(pill.querySelector(".conn-text"), label);
  const show = !quiet && state !== "connected" && (everConnected || state === "offline");
  banner.hidden = !show;
  banner.dataset.state = state;
  if (show) {
    setText(
      banner,
      state === "offline"
        ? "Offline — updates resume when the connection is back."
        : "Reconnecting… the page catches up as soon as the server answers.",
    );
  }
}

/**
 * Start a page: find the token (or show the sign-in panel and return null),
 * create the client, and keep the connection pill and banner current.
 */
export function startPage({ io }) {
  window.__progresscastBooted = true;
  const found = findToken();
  if (!found) {
    showSignIn(null);
    return null;
  }
  const who = found.who ?? tokenUser(found.token);
  if (who?.user) {
    const el = document.getElementById("who");
    el.replaceChildren("Signed in as ", h("strong", {}, who.user), who.admin ? " (admin)" : "");
    el.hidden = false;
  }
  if (!found.renewable && !found.session) {
    const out = document.getElementById("signout");
    out.hidden = false;
    out.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.assign(`${BASE}/`);
    });
  }
  const pc = createClient({
    io,
    token: found.token,
    // A page token can be renewed; a pasted one comes from the app that linked here.
    getToken: found.renewable
      ? () =>
          fetch(`${BASE}/page-token`)
            .then((r) => r.json())
            .then((j) => j.token)
      : null,
  });
  let everConnected = false;
  let refused = false;
  pc.onConnectionState((state) => {
    everConnected ||= state === "connected";
    if (!refused) setConnection(state, { everConnected });
  });
  pc.onError((err) => {
    if (found.renewable || found.session || (err.code !== "unauthorized" && err.code !== "session_expired")) return;
    if (pc.state === "connected" && err.code === "unauthorized") return; // a request refused, not us
    refused = true;
    pc.close();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(`The server refused the token: ${err.message}. Sign in again.`);
  });
  window.progresscast = pc; // for the console
  return pc;
}
