"""Runs the JS client's tests (``node --test tests/js/``) against a real server.

The server is a gunicorn+eventlet process like every integration test's; node
gets its URL and token secret and mints tokens for its own users.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.harness import ROOT, SECRET, ServerProcess, require_component

pytestmark = pytest.mark.server


def test_js_client_against_a_real_server(tmp_path):
    node = shutil.which("node")
    require_component(node is not None, "node")
    require_component(
        (ROOT / "node_modules" / "socket.io-client").is_dir(),
        "node_modules/socket.io-client (npm ci)",
    )
    # Expired tokens are swept every second, so the session_expired test is quick.
    server = ServerProcess(tmp_path, env={"PROGRESSCAST_EXPIRY_SWEEP_SECONDS": "1"}).start()
    try:
        run = subprocess.run(
            [node, "--test", "--test-reporter=spec", "tests/js/"],
            cwd=ROOT,
            env={
                **os.environ,
                "PROGRESSCAST_TEST_URL": server.url,
                "PROGRESSCAST_TEST_SECRET": SECRET,
                "NO_COLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        server.stop()
    report = run.stdout + run.stderr
    print(report)  # shown with -s, and by pytest on failure
    assert run.returncode == 0, f"node --test failed ({run.returncode}):\n{report}"
    # Nothing was skipped for want of the server.
    assert "ℹ skipped 0" in report, report
