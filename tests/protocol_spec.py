"""The wire protocol's shapes (DESIGN §3-§4, docs/protocol.md), written down
once, independently of the code, for every test folder to check against."""

import re

#: ISO-8601 UTC with milliseconds and a Z, as every timestamp on the wire
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

#: the job snapshot (``job`` in acks and REST)
SNAPSHOT_KEYS = {
    "job_id", "name", "owner", "status", "stages", "stage", "progress", "stage_progress",
    "message", "eta_seconds", "elapsed_seconds", "created_at", "started_at", "finished_at",
    "result", "error", "metadata", "seq",
    "cancel_requested",  # extension: reason of a pending cancellation, or null
    "n", "total", "unit", "rate",  # extension: the current stage's count
    "parent_id", "children",  # extension: groups
    "kind", "weights", "eta_low", "eta_high",  # extension: ETA from history
}  # fmt: skip
STAGE_KEYS = {"name", "weight", "status", "progress"}

#: fields of every job event, then the extra fields of each type
EVENT_KEYS = {"job_id", "seq", "type", "ts"}
EVENT_EXTRA_KEYS = {
    "job_queued": {"name", "stages", "owner", "metadata",
                   "parent_id", "children", "kind", "weights"},
    "job_started": {"name", "stages", "owner", "metadata",
                    "parent_id", "children", "kind", "weights"},
    "progress_update": {
        "stage", "stage_progress", "progress", "message", "eta_seconds", "elapsed_seconds",
        "n", "total", "unit", "rate", "children", "eta_low", "eta_high",
    },
    # DESIGN §4 fields, then (after the comment) the extensions in docs/protocol.md
    "stage_completed": {"stage", "next_stage", "progress",
                        "elapsed_seconds"},
    "job_completed": {"progress", "result", "elapsed_seconds",
                      "message"},
    "job_failed": {"stage", "error", "progress",
                   "stage_progress", "message", "elapsed_seconds", "n", "total", "unit", "rate"},
    "job_cancelled": {"stage", "progress", "reason",
                      "stage_progress", "message", "elapsed_seconds", "n", "total", "unit", "rate"},
}  # fmt: skip
