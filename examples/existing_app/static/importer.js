// The importer's page: team notices on the app's own Socket.IO connection,
// and the signed-in user's imports with live progress bars (progresscast).
import { io } from "socket.io-client";
import { createClient } from "progresscast";

// ------------------------------------------------------------ team notices

const socket = io(); // the app's own default namespace; the session cookie signs it in
const notices = document.getElementById("notices");
socket.on("connect", () => (notices.dataset.state = "connected"));
socket.on("disconnect", () => (notices.dataset.state = "connecting"));
socket.on("notice", ({ user, text, at }) => {
  const li = el("li", { class: "notice" }, el("strong", {}, user), ": ", text);
  li.title = new Date(at).toLocaleString();
  notices.prepend(li);
});
document.getElementById("notice-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("notice-text");
  if (!input.value.trim()) return;
  socket.emit("notice", { text: input.value });
  input.value = "";
});

// -------------------------------------------------- imports (progresscast)

const SHOWN = 5; // the newest imports shown
const LABELS = {
  queued: "Queued",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};
const list = document.getElementById("imports");
const none = document.getElementById("no-imports");
const live = document.getElementById("live");
const rows = new Map(); // job_id → <li>

const progress = createClient({ io }); // no token: the session cookie says who we are
progress.onConnectionState((state) => {
  live.dataset.state = state;
  live.textContent = state === "connected" ? "live" : `${state}…`;
});
progress.watchAll((jobs) => render(jobs), { keep: 20 });

function render(jobs) {
  for (const id of rows.keys()) if (!jobs.has(id)) rows.delete(id); // let go by `keep`
  const newest = [...jobs.values()]
    .sort((a, b) => (b.created_at ?? "").localeCompare(a.created_at ?? ""))
    .slice(0, SHOWN);
  list.replaceChildren(...newest.map((job) => update(rows.get(job.job_id) ?? row(job), job)));
  list.dataset.loaded = "true";
  none.hidden = newest.length > 0;
}

function row(job) {
  const li = el(
    "li",
    { class: "import", "data-job-id": job.job_id },
    el("span", { class: "name" }, job.name),
    el("progress", { max: "100", "aria-label": `Progress of ${job.name}` }),
    el("span", { class: "pct" }),
    el("span", { class: "status" }),
    el("span", { class: "stage" }),
    el("span", { class: "eta" }),
    el("span", { class: "message" }),
  );
  rows.set(job.job_id, li);
  return li;
}

function update(li, job) {
  const done = job.status === "completed";
  const pct = done ? 100 : Math.floor(job.progress); // never "100%" before the end
  li.dataset.status = job.status;
  li.querySelector("progress").value = pct;
  setText(li, ".pct", `${pct}%`);
  setText(li, ".status", LABELS[job.status] ?? job.status);
  const running = job.status === "running";
  const step = job.stages.findIndex((s) => s.name === job.stage);
  const of = `step ${step + 1} of ${job.stages.length}`;
  setText(li, ".stage", running && step >= 0 ? `${job.stage} (${of})` : "");
  setText(li, ".eta", running && job.eta_seconds != null ? `ETA ${eta(job.eta_seconds)}` : "");
  const message = job.status === "failed" ? job.error?.message : running ? job.message : null;
  setText(li, ".message", message ?? "");
  return li;
}

function eta(seconds) {
  const s = Math.max(1, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// ------------------------------------------------------------------ DOM

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children); // text as text nodes: names and notices are never HTML
  return node;
}

function setText(root, selector, text) {
  const node = root.querySelector(selector);
  if (node.textContent !== text) node.textContent = text;
}
