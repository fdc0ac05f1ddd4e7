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

// An ETA is an estimate: a whole number of seconds under a minute, whole
// minutes under an hour, then hours (tenths under 10 h). Half up, as
// src/progresscast/cli.py rounds. 40 → ["40", "s"], 150 → ["3", "min"],
// 5400 → ["1.5", "h"].
function etaParts(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return [String(s), "s"];
  const minutes = Math.round(s / 60);
  if (minutes < 60) return [String(minutes), "min"];
  const hours = s / 3600;
  return [String(hours < 10 ? Math.round(hours * 10) / 10 : Math.round(hours)), "h"];
}

const known = (x) => x != null && Number.isFinite(x);

/**
 * A job's (or a progress update's) ETA in words, as honest as the estimate:
 * with a range (`eta_low`, `eta_high`) "2–4 min" or "40 s–2 min" ("about 3
 * min" when both ends read the same), with only `eta_seconds` "about 3 min"
 * or "about 40 s"; null when there is no estimate (yet).
 */
export function formatEta(job) {
  const { eta_seconds: eta, eta_low: low, eta_high: high } = job ?? {};
  if (known(low) && known(high)) {
    const [a, unitA] = etaParts(low);
    const [b, unitB] = etaParts(high);
    if (unitA === unitB) return a === b ? `about ${a} ${unitA}` : `${a}–${b} ${unitB}`;
    return `${a} ${unitA}–${b} ${unitB}`;
  }
  if (!known(eta)) return null;
  const [value, unit] = etaParts(eta);
  return `about ${value} ${unit}`;
}

/** The numbers behind formatEta, for a title: "142 s left (likely 95–210 s)"; "" without any. */
export function etaTitle(job) {
  const { eta_seconds: eta, eta_low: low, eta_high: high } = job ?? {};
  const secs = (x) => `${formatCount(Math.round(x))} s`;
  const range =
    known(low) && known(high) ? `${formatCount(Math.round(low))}–${secs(high)}` : null;
  if (known(eta)) return range ? `${secs(eta)} left (likely ${range})` : `${secs(eta)} left`;
  return range ? `likely ${range} left` : "";
}

/** Whole percent, never rounded up to 100 before the job really is done. */
export function formatPercent(progress) {
  const p = Math.max(0, Math.min(100, progress ?? 0));
  return `${p >= 100 ? 100 : Math.floor(p)}%`;
}

const weightPercent = (w) => `${Math.round(w * 100)}%`;

// Counts the way tqdm writes them, with the same digits on every page (and
// in the terminal watcher, src/progresscast/cli.py).
const COUNT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const RATE_WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const RATE_SMALL = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 2 });

/** 12400 → "12,400", 1234.56 → "1,234.6". */
export function formatCount(n) {
  return COUNT.format(n ?? 0);
}

/** Per second: 850 → "850", 1.23 → "1.2", 0.25 → "0.25" (2 significant digits under 10). */
export function formatRate(rate) {
  if (!(rate > 0)) return "0";
  return (rate >= 9.95 ? RATE_WHOLE : RATE_SMALL).format(rate);
}

/** The running stage counts without a total: a count and a rate, no percentage. */
export const isIndeterminate = (job) => job.n != null && job.total == null;
/** A group's parent job: its snapshot counts its children. */
export const isGroup = (job) => job.children != null;

/**
 * A stage's count: "12,400/50,000 rows · 850 rows/s", without a total
 * "12,400 rows · 850 rows/s"; the rate only while the job runs; "" when the
 * stage counts nothing.
 */
export function formatCounts(job) {
  if (job.n == null) return "";
  let count = formatCount(job.n);
  if (job.total != null) count += `/${formatCount(job.total)}`;
  const unit = job.unit ? ` ${job.unit}` : "";
  const parts = [`${count}${unit}`];
  if (job.rate != null && job.status === "running") parts.push(`${formatRate(job.rate)}${unit}/s`);
  return parts.join(" · ");
}

/** A group's children: "3/10 jobs done · 1 failed · 1 cancelled" (ended of all). */
export function formatChildren(children) {
  if (!children) return "";
  const ended = (children.completed ?? 0) + (children.failed ?? 0) + (children.cancelled ?? 0);
  const parts = [`${formatCount(ended)}/${formatCount(children.total ?? 0)} jobs done`];
  for (const key of ["failed", "cancelled"])
    if (children[key]) parts.push(`${formatCount(children[key])} ${key}`);
  return parts.join(" · ");
}

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

/** The job page of a job. */
export const jobHref = (jobId) => `${BASE}/jobs/${encodeURIComponent(jobId)}`;

/** Fill a progress bar (`.bar` with a `.bar-fill`) and its accessible value. */
function setBar(bar, job, label) {
  const pct = Math.max(0, Math.min(100, job.progress ?? 0));
  const busy = job.status === "running" && isIndeterminate(job);
  bar.firstElementChild.style.width = `${pct}%`;
  // A stage without a total: the bar shows the stages before it and moves
  // on its own; there is no value to announce, only the count.
  if (busy) bar.dataset.indeterminate = "";
  else delete bar.dataset.indeterminate;
  setAttr(bar, "aria-busy", busy ? "true" : null);
  setAttr(bar, "aria-valuenow", busy ? null : Math.round(pct * 10) / 10);
  const what = busy ? formatCounts(job) : formatPercent(pct);
  setAttr(bar, "aria-valuetext", `${what}${job.stage ? `, ${job.stage}` : ""}, ${job.status}`);
  setAttr(bar, "aria-label", label);
  return busy ? "" : formatPercent(pct);
}

function progressBar(className = "bar") {
  return h(
    "div",
    { class: className, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { class: "bar-fill" }),
  );
}

/** Groups of more children than this start collapsed on the dashboard. */
export const COLLAPSE_OVER = 5;

/**
 * One job as a card. `update(job)` with each new snapshot; `tick()` once a
 * second moves a running job's elapsed time on between events.
 * Options: `heading` ("h2" | "h1"), `link` (name links to the job page),
 * `onCancel(job)` → Promise of the cancel ack, `expanded` (a group's
 * children shown at first; default: when there are COLLAPSE_OVER or fewer).
 * A group's parent shows its children, given with `setChildren(snapshots)`.
 */
export class JobCard {
  constructor(job, { heading = "h2", link = true, onCancel = null, expanded = null } = {}) {
    this.onCancel = onCancel;
    this.job = null;
    this.elapsed = { value: null, at: 0 };
    const id = `job-${job.job_id}`;
    this.name = link ? h("a", { href: jobHref(job.job_id) }) : h("span");
    this.sub = h("span", { class: "job-sub" });
    this.weightsNote = h(
      "span",
      { class: "job-weights", hidden: true },
      "weights learned from past runs",
    );
    this.badge = h("span", { class: "badge" });
    this.bar = progressBar();
    this.pct = h("span", { class: "pct", "aria-hidden": "true" });
    this.counts = h("p", { class: "job-counts", hidden: true });
    this.stages = h("ol", { class: "stages", "aria-label": "Stages" });
    this.kids = isGroup(job) ? new ChildList(job, id, expanded) : null;
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
          this.weightsNote,
        ),
        this.badge,
      ),
      h("div", { class: "job-progress" }, this.bar, this.pct),
      this.counts,
      this.stages,
      this.message,
      this.error,
      this.note,
      this.kids?.el,
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
    // The stages' shares came from past runs of the same pipeline (issue 14).
    const learned = job.weights === "learned";
    this.weightsNote.hidden = !learned;
    setAttr(
      this.weightsNote,
      "title",
      learned ? `Stage weights learned from past runs of ${job.kind ?? job.name}` : null,
    );

    setText(this.pct, setBar(this.bar, job, `Progress of ${job.name}`));
    const counts = isGroup(job) ? formatChildren(job.children) : formatCounts(job);
    setText(this.counts, counts);
    this.counts.hidden = !counts;

    // A group's one stage ("jobs") says nothing its counts do not.
    this.stages.hidden = isGroup(job);
    this._stages(job);
    this.kids?.update(job);
    const line =
      job.message ?? (job.status === "queued" ? "Waiting to start" : summarize(job.result));
    setText(this.message, line);
    this.message.title = line;
    this.message.hidden = isGroup(job) && !line; // a group's children say what it does

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

  /** A group's children (snapshots, any order): rows in the card. */
  setChildren(children) {
    this.kids?.set(children);
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
      setText(this.etaText, formatEta(job) ?? "estimating…");
      setAttr(this.etaText, "title", etaTitle(job) || "no estimate yet");
    } else {
      setText(this.etaLabel, "Finished");
      setText(this.etaText, formatDateTime(job.finished_at));
      setAttr(this.etaText, "title", null);
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
      // A job's weights may change when it starts (learned from past runs).
      setText(chip.children[2], weightPercent(stage.weight));
      const share = "share of the whole job";
      setAttr(
        chip.children[2],
        "title",
        job.weights === "learned" ? `${share}, learned from past runs` : share,
      );
      const state = CHIP_STATE[stage.status] ?? stage.status;
      chip.dataset.state = state;
      chip.dataset.stage = stage.name;
      const counting = state === "current" && job.status === "running" && isIndeterminate(job);
      if (counting) chip.dataset.indeterminate = "";
      else delete chip.dataset.indeterminate;
      const detail =
        state !== "current"
          ? state
          : `current, ${counting ? formatCounts(job) : formatPercent(stage.progress)}`;
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

// ------------------------------------------------------- group children

const byCreation = (a, b) =>
  (a.created_at ?? "").localeCompare(b.created_at ?? "") ||
  (a.name ?? "").localeCompare(b.name ?? "", undefined, { numeric: true }) ||
  a.job_id.localeCompare(b.job_id);

/**
 * A group's children inside its card: a button that shows or hides them
 * (aria-expanded), and a compact row per child with its own bar and status,
 * linking to its job page.
 */
class ChildList {
  constructor(job, id, expanded) {
    this.rows = new Map(); // job_id → ChildRow
    this.total = job.children?.total ?? 0;
    this.expanded = expanded ?? this.total <= COLLAPSE_OVER;
    const listId = `${id}-children`;
    this.label = h("span", { class: "kids-label" });
    this.toggle = h(
      "button",
      {
        type: "button",
        class: "kids-toggle",
        "aria-controls": listId,
        "aria-expanded": String(this.expanded),
        onclick: () => this.setExpanded(!this.expanded),
      },
      h("span", { class: "kids-chevron", "aria-hidden": "true" }),
      this.label,
    );
    this.list = h("ol", { class: "kids", id: listId, "aria-label": `Jobs in ${job.name}` });
    this.more = h("p", { class: "kids-more", hidden: true });
    this.body = h("div", { class: "kids-body", hidden: !this.expanded }, this.list, this.more);
    this.el = h("div", { class: "job-kids" }, this.toggle, this.body);
    this.href = jobHref(job.job_id);
  }

  setExpanded(expanded) {
    this.expanded = expanded;
    this.toggle.setAttribute("aria-expanded", String(expanded));
    this.body.hidden = !expanded;
  }

  update(job) {
    this.total = job.children?.total ?? this.total;
    const jobs = `${formatCount(this.total)} job${this.total === 1 ? "" : "s"}`;
    setText(this.label, `${jobs} in this group`);
    this._more();
  }

  set(children) {
    const ordered = [...children].sort(byCreation);
    const seen = new Set();
    let ref = this.list.firstElementChild;
    for (const child of ordered) {
      seen.add(child.job_id);
      let row = this.rows.get(child.job_id);
      if (!row) this.rows.set(child.job_id, (row = new ChildRow(child)));
      else row.update(child);
      if (row.el === ref) ref = ref.nextElementSibling;
      else this.list.insertBefore(row.el, ref);
    }
    for (const [jobId, row] of this.rows) {
      if (seen.has(jobId)) continue;
      row.el.remove();
      this.rows.delete(jobId);
    }
    this._more();
  }

  // Children this page has not got (a dashboard keeps the newest jobs only).
  _more() {
    const missing = this.total - this.rows.size;
    this.more.hidden = missing <= 0;
    if (missing > 0) {
      const text = `${formatCount(missing)} more on the group's page`;
      if (this.more.textContent !== text)
        this.more.replaceChildren(h("a", { href: this.href }, text));
    }
  }
}

/** One child of a group: name (a link), a small bar, percent, status and a detail. */
class ChildRow {
  constructor(job) {
    this.name = h("a", { class: "kid-name", href: jobHref(job.job_id) });
    this.bar = progressBar("bar kid-bar");
    this.pct = h("span", { class: "kid-pct", "aria-hidden": "true" });
    this.status = h("span", { class: "kid-status" });
    this.detail = h("span", { class: "kid-detail" });
    this.el = h(
      "li",
      { class: "kid", dataset: { jobId: job.job_id } },
      this.name,
      this.bar,
      this.pct,
      this.status,
      this.detail,
    );
    this.update(job);
  }

  update(job) {
    this.job = job;
    this.el.dataset.status = job.status;
    setText(this.name, job.name);
    setText(this.pct, setBar(this.bar, job, `Progress of ${job.name}`));
    const cancelling = isCancelling(job);
    setText(this.status, cancelling ? "Cancelling…" : (STATUS_LABEL[job.status] ?? job.status));
    // What it is doing (stage · count and rate, or its message), how it ended.
    let detail;
    if (job.status === "failed" && job.error)
      detail = `${job.error.type || "Error"}: ${job.error.message || ""}`;
    else if (job.status === "completed") detail = job.message ?? summarize(job.result);
    else {
      const what = formatCounts(job) || job.message;
      detail = [job.status === "running" ? job.stage : null, what].filter(Boolean).join(" · ");
    }
    setText(this.detail, detail);
    this.detail.title = detail;
    this.detail.hidden = !detail;
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
  pc.onNotice(showNotice);
  window.progresscast = pc; // for the console
  return pc;
}

/** An operator's notice (POST /api/admin/notice) as a banner until dismissed. */
function showNotice(notice) {
  const el = document.getElementById("notice");
  if (!el || typeof notice?.message !== "string") return;
  el.dataset.level = ["info", "warning", "critical"].includes(notice.level) ? notice.level : "info";
  el.replaceChildren(
    h("span", { class: "notice-text" }, notice.message),
    h("button", { type: "button", class: "linklike", onclick: () => (el.hidden = true) }, "Dismiss"),
  );
  el.hidden = false;
}
