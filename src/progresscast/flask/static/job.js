// The job page (/jobs/<id>): the job's card, its details and its event
// timeline (stored history first, then live events), newest on top. A
// group's parent lists its children (list_children, read again as the
// parent's events say they changed); a child links to its parent.
import { io } from "socket.io-client";

import {
  JobCard,
  announce,
  formatChildren,
  formatClock,
  formatCounts,
  formatDateTime,
  formatDuration,
  formatEta,
  formatPercent,
  h,
  isGroup,
  jobHref,
  startPage,
} from "./ui.js";

/** A group's children are read again at most this often (ms) while it changes. */
const RELIST_MS = 1000;

const pc = startPage({ io });
if (pc) jobPage(document.body.dataset.jobId);

function jobPage(jobId) {
  const slot = document.getElementById("card");
  const facts = h("dl", { class: "facts", "aria-label": "Details" });
  const rows = document.getElementById("events");
  const table = rows.closest("table");
  const count = document.getElementById("event-count");
  const toggle = document.getElementById("show-progress");
  let card = null;
  let lastSeq = 0; // highest seq in the table
  let total = 0;
  let incoming = [];
  let frame = 0;
  const children = relister(jobId, (kids) => card?.setChildren(kids));
  const parent = parentLink();

  toggle.addEventListener("change", () => table.classList.toggle("hide-progress", !toggle.checked));

  pc.watch(
    jobId,
    (job) => {
      if (!card) {
        card = new JobCard(job, {
          heading: "h1",
          link: false,
          onCancel: (j) => pc.cancel(j.job_id),
          expanded: true, // the children are what a group's page is for
        });
        card.el.append(facts);
        slot.replaceChildren(card.el);
        setInterval(() => card.tick(), 1000);
      } else {
        const was = card.job.status;
        card.update(job);
        if (was !== job.status) announce(`${job.name} ${job.status}`);
      }
      document.title = `${job.name} · progresscast`;
      renderFacts(job);
      if (isGroup(job)) children.changed();
      parent.show(job.parent_id);
    },
    {
      history: true,
      onEvent: (ev) => {
        incoming.push(ev);
        frame ||= requestAnimationFrame(flush);
      },
      onError: (err) => {
        if (err.code === "not_found" || err.code === "forbidden") {
          slot.replaceChildren(
            h(
              "div",
              { class: "empty", role: "alert" },
              h("strong", {}, "Job not found. "),
              "It does not exist, was pruned, or belongs to someone else.",
            ),
          );
        }
      },
    },
  );

  // Events go in newest first; a jump in seq (history no longer stored) gets a row saying so.
  function flush() {
    frame = 0;
    const batch = incoming;
    incoming = [];
    const fragment = document.createDocumentFragment();
    for (const ev of batch) {
      if (ev.seq <= lastSeq) continue;
      if (ev.seq > lastSeq + 1) {
        const missing = ev.seq - lastSeq - 1;
        const text =
          lastSeq === 0 && ev.seq > 1
            ? `${missing} earlier event${missing > 1 ? "s are" : " is"} no longer stored`
            : `${missing} event${missing > 1 ? "s" : ""} not shown (history trimmed)`;
        fragment.prepend(h("tr", { class: "gap" }, h("td", { colspan: 4 }, text)));
      }
      fragment.prepend(eventRow(ev));
      lastSeq = ev.seq;
      total += 1;
    }
    rows.prepend(fragment);
    count.textContent = `${total} event${total === 1 ? "" : "s"}`;
    document.getElementById("no-events").hidden = total > 0;
  }

  // The children, read now and again whenever the parent changes (its events
  // carry the children's counts): one request at a time, at most one a second.
  function relister(id, show) {
    let busy = false;
    let again = false;
    let last = -Infinity;
    const run = async () => {
      busy = true;
      again = false;
      await new Promise((r) => setTimeout(r, Math.max(0, last + RELIST_MS - performance.now())));
      try {
        show(await pc.listChildren(id));
      } catch (err) {
        console.warn("list_children:", err.code ?? err);
      } finally {
        last = performance.now();
        busy = false;
        if (again) run();
      }
    };
    return {
      changed() {
        if (busy) again = true;
        else run();
      },
    };
  }

  // A child's page says which group it belongs to (and how the group does).
  function parentLink() {
    const crumbs = document.querySelector(".crumbs");
    let shown = null;
    return {
      show(parentId) {
        if (parentId == null || shown === parentId) return;
        shown = parentId;
        const name = h("span", { class: "group-name" }, parentId);
        const state = h("span", { class: "group-state" });
        const link = h("a", { href: jobHref(parentId), class: "group-link" }, name);
        crumbs.append(
          h("span", { class: "crumb-sep", "aria-hidden": "true" }, " / "),
          h("span", { class: "crumb-group" }, "Group: ", link, " ", state),
        );
        pc.watch(parentId, (group) => {
          name.textContent = group.name;
          state.textContent = `(${formatChildren(group.children) || group.status})`;
        });
      },
    };
  }

  function renderFacts(job) {
    const items = [
      ["Job id", h("code", {}, job.job_id)],
      ["Owner", job.owner],
      ...(job.kind != null && job.kind !== job.name ? [["Kind", job.kind]] : []),
      ["Created", formatDateTime(job.created_at)],
      ["Started", formatDateTime(job.started_at)],
      ["Finished", formatDateTime(job.finished_at)],
      ["Events", String(job.seq)],
    ];
    if (job.parent_id != null)
      items.push(["Group", h("a", { href: jobHref(job.parent_id) }, h("code", {}, job.parent_id))]);
    if (job.cancel_requested != null) items.push(["Cancel requested", job.cancel_requested]);
    if (job.metadata && Object.keys(job.metadata).length)
      items.push(["Metadata", json(job.metadata)]);
    if (job.result != null) items.push(["Result", json(job.result)]);
    facts.replaceChildren(...items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  }
}

const json = (value) => {
  const line = JSON.stringify(value);
  return h("pre", {}, line.length <= 60 ? line : JSON.stringify(value, null, 2));
};

function eventRow(ev) {
  return h(
    "tr",
    { dataset: { seq: ev.seq, type: ev.type } },
    h("td", { class: "seq" }, String(ev.seq)),
    h(
      "td",
      { class: "time" },
      h("time", { datetime: ev.ts, title: ev.ts }, formatClock(ev.ts, { ms: true })),
    ),
    h("td", {}, h("span", { class: "etype", dataset: { type: ev.type } }, ev.type)),
    h("td", { class: "details" }, details(ev)),
  );
}

/** The fields of an event worth reading, in words. */
function details(ev) {
  switch (ev.type) {
    case "job_queued":
    case "job_started": {
      const stages = ev.stages.map((s) => `${s.name} ${Math.round(s.weight * 100)}%`).join(", ");
      const group = ev.children ? ` · a group of ${ev.children.total} jobs` : "";
      const learned = ev.weights === "learned" ? " (weights learned from past runs)" : "";
      return `${ev.name} — stages ${stages}${learned}${group}`;
    }
    case "progress_update": {
      const parts = [
        `${ev.stage} ${formatPercent(ev.stage_progress)}`,
        `overall ${formatPercent(ev.progress)}`,
      ];
      const counts = ev.children
        ? formatChildren(ev.children)
        : formatCounts({ ...ev, status: "running" });
      if (counts) parts.push(counts);
      const eta = formatEta(ev);
      if (eta) parts.push(`ETA ${eta}`);
      if (ev.message) parts.push(`“${ev.message}”`);
      return parts.join(" · ");
    }
    case "stage_completed":
      return `${ev.stage} done → ${ev.next_stage ?? "no stage left"} · overall ${formatPercent(ev.progress)}`;
    case "job_completed": {
      const result = ev.result == null ? "" : ` · result ${JSON.stringify(ev.result)}`;
      return `after ${formatDuration(ev.elapsed_seconds)}${result}`;
    }
    case "job_failed":
      return `${ev.error?.type}: ${ev.error?.message} (in ${ev.stage ?? "no stage"}, at ${formatPercent(ev.progress)})`;
    case "job_cancelled":
      return `${ev.reason ?? "cancelled"} (in ${ev.stage ?? "no stage"}, at ${formatPercent(ev.progress)})`;
    default:
      return JSON.stringify(ev);
  }
}
