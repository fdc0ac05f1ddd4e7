// The dashboard (/): every job of the signed-in user, live; new jobs appear
// at the top as they are created. Filter by status; cancel running jobs.
// A group is one card, its parent's, with its children nested inside it
// (their events reach watch_jobs too: they have the parent's owner).
import { io } from "socket.io-client";

import { isTerminal } from "./progresscast.js";
import { JobCard, announce, isGroup, startPage } from "./ui.js";

const PAGE = 30; // cards shown before "Show more"
const KEEP = 500; // jobs kept in the page; the oldest finished ones go beyond it
const FILTERS = {
  all: () => true,
  running: (job) => job.status === "running" || job.status === "queued",
  completed: (job) => job.status === "completed",
  failed: (job) => job.status === "failed",
  cancelled: (job) => job.status === "cancelled",
};
const EMPTY = {
  all: "No jobs yet. They appear here as soon as a pipeline starts one.",
  running: "Nothing running right now.",
  completed: "No completed jobs.",
  failed: "No failed jobs.",
  cancelled: "No cancelled jobs.",
};

const pc = startPage({ io });
if (pc) dashboard();

function dashboard() {
  const list = document.getElementById("jobs");
  const empty = document.getElementById("empty");
  const more = document.getElementById("more");
  const summary = document.getElementById("summary");
  const radios = [...document.querySelectorAll('input[name="filter"]')];
  const cards = new Map(); // job_id → JobCard
  let jobs = new Map(); // job_id → snapshot (the client's map)
  let loaded = false; // the first watch_jobs answer arrived
  let limit = PAGE;
  let filter = new URLSearchParams(location.search).get("status");
  if (!(filter in FILTERS)) filter = "all";
  radios.find((r) => r.value === filter).checked = true;

  const changed = new Set();
  let all = true; // render everything next frame
  let frame = 0;
  const schedule = () => (frame ||= requestAnimationFrame(render));

  pc.watchAll(
    (map, job) => {
      jobs = map;
      if (job) changed.add(job.job_id);
      else all = true;
      schedule();
    },
    { keep: KEEP, onError: (err) => console.warn("watch_jobs:", err) },
  );
  pc.onConnectionState((state) => {
    if (state === "connected" && !loaded) list.setAttribute("aria-busy", "true");
  });

  for (const radio of radios) {
    radio.addEventListener("change", () => {
      filter = radio.value;
      limit = PAGE;
      const url = new URL(location.href);
      if (filter === "all") url.searchParams.delete("status");
      else url.searchParams.set("status", filter);
      history.replaceState(null, "", url);
      all = true;
      schedule();
    });
  }
  more.addEventListener("click", () => {
    limit += PAGE;
    all = true;
    schedule();
  });
  setInterval(() => {
    for (const card of cards.values()) if (card.el.isConnected) card.tick();
  }, 1000);

  const cancel = (job) => pc.cancel(job.job_id);

  // A child whose parent is on the page is a row in the parent's card, not a card.
  const nested = (job) => job.parent_id != null && jobs.has(job.parent_id);

  let groups = new Map(); // parent id → its children's snapshots (this frame)

  function cardOf(job) {
    let card = cards.get(job.job_id);
    if (!card) {
      cards.set(job.job_id, (card = new JobCard(job, { onCancel: cancel })));
      if (isGroup(job)) card.setChildren(groups.get(job.job_id) ?? []);
    }
    return card;
  }

  function render() {
    frame = 0;
    // Trimmed by `keep`, or now nested in a parent that arrived after them.
    for (const id of cards.keys()) if (!jobs.has(id) || nested(jobs.get(id))) cards.delete(id);
    groups = new Map();
    for (const job of jobs.values()) {
      if (!nested(job)) continue;
      const kids = groups.get(job.parent_id);
      if (kids) kids.push(job);
      else groups.set(job.parent_id, [job]);
    }
    const touched = new Set(); // groups whose children changed
    const ids = all ? jobs.keys() : changed;
    for (const id of ids) {
      const job = jobs.get(id);
      if (!job) continue;
      if (nested(job)) {
        touched.add(job.parent_id);
        continue;
      }
      if (isGroup(job)) touched.add(id);
      const card = cards.get(id);
      if (!card) {
        cardOf(job);
        if (loaded && !all) announce(`New job: ${job.name}`);
      } else if (card.job !== job) {
        const was = card.job.status;
        card.update(job);
        if (was !== job.status && isTerminal(job.status)) {
          const why = job.status === "failed" && job.error ? `: ${job.error.type}` : "";
          announce(`${job.name} ${job.status}${why}`);
        }
      }
    }
    for (const id of touched) cards.get(id)?.setChildren(groups.get(id) ?? []);
    if (!all && changed.size === 0) return;
    loaded ||= all && pc.state === "connected";
    changed.clear();
    all = false;
    if (loaded) list.removeAttribute("aria-busy");

    // Newest first; only the order of cards that moved changes (focus stays put).
    const ordered = [...jobs.values()].filter((job) => !nested(job)).sort(
      (a, b) =>
        (b.created_at ?? "").localeCompare(a.created_at ?? "") || b.job_id.localeCompare(a.job_id),
    );
    const shown = ordered.filter(FILTERS[filter]);
    const wanted = shown.slice(0, limit).map((job) => {
      const card = cardOf(job);
      if (card.job !== job) card.update(job);
      return card.el;
    });
    let ref = list.firstElementChild;
    for (const el of wanted) {
      if (el === ref) ref = ref.nextElementSibling;
      else list.insertBefore(el, ref);
    }
    while (ref) {
      const next = ref.nextElementSibling;
      ref.remove();
      ref = next;
    }

    for (const radio of radios) {
      const count = ordered.filter(FILTERS[radio.value]).length;
      radio.parentElement.querySelector(".count").textContent = count;
    }
    const running = ordered.filter(FILTERS.running).length;
    summary.textContent = ordered.length ? `${running} active · ${ordered.length} in all` : "";
    empty.hidden = shown.length > 0 || !loaded;
    empty.textContent = EMPTY[filter];
    more.hidden = shown.length <= limit;
    more.textContent = `Show ${Math.min(PAGE, shown.length - limit)} more`;
  }
}
