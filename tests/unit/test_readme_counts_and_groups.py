"""The README's "Counts, rates and groups" and "An ETA that learns from past
runs" examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys

from progresscast import SQLiteStore

from .test_extension_docs import README, ROOT

HEADING = "### Counts, rates and groups"


def block(heading: str = HEADING) -> str:
    text = README.read_text()
    assert f"\n{heading}\n" in text
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has no python block"
    return match.group(1)


def run_block(tmp_path, heading: str = HEADING) -> subprocess.CompletedProcess:
    script = tmp_path / "example.py"
    script.write_text(block(heading))
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # its database lands here
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run


def test_the_readme_eta_example_learns_the_weights_it_shows(tmp_path):
    run = run_block(tmp_path, "### An ETA that learns from past runs")
    mode, weights = run.stdout.split(" ", 1)
    assert mode == "learned"
    fetch, load = (float(w) for w in weights.strip(" []\n").split(","))
    # Measured on a machine that may be busy: fetch is the larger share by far.
    assert fetch > 0.6 and abs(fetch + load - 1.0) < 0.11, run.stdout
    store = SQLiteStore(str(tmp_path / "eta.db"))
    try:
        assert len(store.runs("nightly import", 10)) == 3
    finally:
        store.close()


def test_the_readme_counts_and_groups_example_runs_as_written(tmp_path):
    run_block(tmp_path)
    store = SQLiteStore(str(tmp_path / "progress.db"))
    try:
        jobs = {j.name: j for j in store.list_jobs(limit=100)}
        load = jobs["customer import"]
        assert load.status == "completed"
        # (its loops are instant, so updates are throttled away: the units, if any, are these)
        counted = [e for e in store.events_since(load.job_id) if e["type"] == "progress_update"]
        assert {e["unit"] for e in counted} <= {"pages", "rows"}
        group = jobs["import 3 videos"]
        assert group.status == "completed" and group.children["completed"] == 3
        assert [c.status for c in store.list_children(group.job_id)] == ["completed"] * 3
    finally:
        store.close()
