"""The README's "Counts, rates and groups" example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

from progresscast import SQLiteStore

from .test_extension_docs import README, ROOT

HEADING = "### Counts, rates and groups"


def block() -> str:
    text = README.read_text()
    assert f"\n{HEADING}\n" in text
    section = text.split(f"\n{HEADING}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has no python block"
    return match.group(1)


def test_the_readme_counts_and_groups_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(block())
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # its progress.db lands here
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
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
