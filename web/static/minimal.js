// Minimal live view of the caller's jobs: watch_jobs, then apply events by seq.
// The full dashboard and the resume-aware client module replace this page later.
/* global io */
// The token: the demo token the page carries in demo mode, else `#token=...`
// in the address (a fragment never reaches server logs).
const main = document.getElementById("jobs");
const token = main.dataset.token || new URLSearchParams(location.hash.slice(1)).get("token");
const socket = io("/progress", { auth: token ? { token } : {} });
const jobs = new Map(); // job_id -> snapshot, kept current by events
const conn = document.getElementById("conn");

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function apply(ev) {
  const job = jobs.get(ev.job_id);
  if (!job) {
    if (ev.type === "job_started" || ev.type === "job_queued") {
      jobs.set(ev.job_id, { job_id: ev.job_id, name: ev.name, status: ev.type === "job_started" ? "running" : "queued",
        progress: 0, stage: ev.stages[0].name, seq: ev.seq, message: null, eta_seconds: null });
    }
    return;
  }
  if (ev.seq <= job.seq) return; // already applied (stale or duplicate)
  job.seq = ev.seq;
  if ("progress" in ev) job.progress = ev.progress;
  switch (ev.type) {
    case "progress_update":
      Object.assign(job, { stage: ev.stage, message: ev.message, eta_seconds: ev.eta_seconds }); break;
    case "stage_completed": job.stage = ev.next_stage; job.message = null; break;
    case "job_completed": job.status = "completed"; job.eta_seconds = 0; break;
    case "job_failed": job.status = "failed"; job.error = ev.error; break;
    case "job_cancelled": job.status = "cancelled"; break;
  }
}

function render() {
  const list = [...jobs.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || "")).slice(0, 30);
  if (!list.length) { main.innerHTML = '<p class="empty">No jobs yet.</p>'; return; }
  main.replaceChildren(...list.map((job) => {
    const el = document.createElement("section");
    el.className = `job ${job.status}`;
    el.dataset.jobId = job.job_id;
    const pct = job.progress.toFixed(1);
    el.innerHTML = `<h2><span class="name"></span><span class="status ${job.status}">${job.status}</span></h2>
      <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}"><div style="width:${pct}%"></div></div>
      <div class="meta"><span class="pct">${pct}%</span> · stage <b class="stage"></b> · ETA ${fmtSeconds(job.eta_seconds)} · <span class="msg"></span></div>`;
    el.querySelector(".name").textContent = job.name;
    el.querySelector(".stage").textContent = job.stage || "–";
    el.querySelector(".msg").textContent = job.message || "";
    if (job.error) {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = `${job.error.type}: ${job.error.message} (stage ${job.error.stage || job.stage})`;
      el.append(err);
    }
    return el;
  }));
}

let dirty = false;
function schedule() { if (!dirty) { dirty = true; requestAnimationFrame(() => { dirty = false; render(); }); } }

for (const type of ["job_queued", "job_started", "progress_update", "stage_completed", "job_completed", "job_failed", "job_cancelled"]) {
  socket.on(type, (ev) => { apply(ev); schedule(); });
}

socket.on("connect", () => {
  conn.textContent = "live"; conn.className = "conn ok";
  // A fresh snapshot on every (re)connect: nothing missed while offline stays missing.
  socket.emit("watch_jobs", {}, (ack) => {
    if (!ack.ok) { conn.textContent = ack.error.message; return; }
    for (const snap of ack.jobs) {
      const known = jobs.get(snap.job_id);
      if (!known || snap.seq >= known.seq) jobs.set(snap.job_id, snap);
    }
    schedule();
  });
});
socket.on("disconnect", () => { conn.textContent = "reconnecting…"; conn.className = "conn"; });
socket.on("connect_error", (err) => { conn.textContent = `offline: ${err.message}`; conn.className = "conn"; });
