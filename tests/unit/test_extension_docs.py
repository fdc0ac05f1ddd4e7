"""The Flask extension's documentation runs as written (issue 12).

- The README's lead example ("Add live progress to your Flask app") is taken
  out of README.md and run as an app: threading mode, as ``flask run``
  starts it, on a SQLite file in a temporary folder, driven by Flask's test
  client and Flask-SocketIO's test client.
- Its browser snippet names what the extension serves.
- docs/flask-extension.md lists every setting of ``Defaults`` with its
  default, and nothing that is not one; its app factory runs.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
import sys
from pathlib import Path

import pytest

from progresscast.flask import settings
from progresscast.flask.settings import DEFAULTS, PREFIX, SOCKETIO_CLIENT_CDN
from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXTENSION_DOC = ROOT / "docs" / "flask-extension.md"
LEAD = "Add live progress to your Flask app"
JS_CLIENT = ROOT / "src" / "progresscast" / "flask" / "static" / "progresscast.js"

#: defaults computed from the machine (host name, process id): the doc describes them
COMPUTED = {"INSTANCE_NAME", "SERVER_ID"}
#: background sweeps off, so that no thread outlives the test (TestConfig does the same)
NO_SWEEPS = {
    "EXPIRY_SWEEP_SECONDS": 0,
    "PRUNE_EVERY_SECONDS": 0,
    "STALL_SECONDS": 0,
    "CANCEL_GRACE_SECONDS": 0,
    "STORE_CHECKPOINT_SECONDS": 0,
}


def section(path: Path, heading: str) -> str:
    """The text of the section ``## heading`` of a markdown file."""
    text = path.read_text()
    assert f"\n## {heading}\n" in text, f"{path.name} has no section {heading!r}"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def load_module(path: Path, name: str, source: str, monkeypatch):
    """``source`` written to ``path`` and imported as module ``name`` (Flask
    finds the app's root and instance folders from the module's file)."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ README


@pytest.fixture
def readme_app(tmp_path, monkeypatch):
    """The README's lead example, run as ``flask --app app run`` would run it:
    FLASK_RUN_FROM_CLI makes Flask-SocketIO choose threading mode, and the
    relative SQLite URL lands in the working directory (here a temporary one)."""
    block = blocks(section(README, LEAD), "python")[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    monkeypatch.setenv("SECRET_KEY", "s" * 48)
    for name, value in NO_SWEEPS.items():
        monkeypatch.setitem(settings.DEFAULTS, name, value)
    module = load_module(tmp_path / "readme_app.py", "readme_app", block, monkeypatch)
    yield module
    module.progress.tracker.store.close()


def test_the_readme_example_is_complete_and_uses_the_public_api():
    text = section(README, LEAD)
    assert 'pip install "progresscast[flask]"' in text
    code = blocks(text, "python")[0]
    ast.parse(code)  # one complete block, not fragments
    for line in (
        "from progresscast.flask import ProgressCast",
        'app.config["PROGRESSCAST_STORE_URL"] = ',
        "socketio = SocketIO(app)",
        "progress = ProgressCast(app, socketio)",
        "@progress.user_loader",
        "progress.tracker.job(",
        "socketio.start_background_task(",
    ):
        assert line in code, line
    assert "examples/existing_app" in text and "docs/flask-extension.md" in text
    # The README's other examples stay where the tests of the standalone server find them.
    readme = README.read_text()
    for heading in (
        "The standalone server",
        "Report progress over HTTP (any language)",
        "Watch a job from Python or a terminal",
    ):
        assert f"\n## {heading}\n" in readme, heading
    assert readme.index(f"## {LEAD}") < readme.index("## The standalone server")
    standalone = section(README, "The standalone server")
    assert "make run" in blocks(standalone, "bash")[0] and "make test" in standalone


def test_the_readme_example_runs_a_job_for_the_signed_in_user(readme_app):
    app, socketio = readme_app.app, readme_app.socketio
    assert socketio.async_mode == "threading"
    assert (Path.cwd() / "progress.db").is_file()  # PROGRESSCAST_STORE_URL as written

    # Nobody signed in: the app's own view and the extension's API say 401.
    anonymous = app.test_client()
    assert anonymous.post("/reports").status_code == 401
    refused = anonymous.get("/progress/api/jobs")
    assert refused.status_code == 401 and refused.get_json()["code"] == "unauthorized"

    # Signed in (the session the app's login would set): a job starts.
    ann = app.test_client()
    with ann.session_transaction() as session:
        session["user_id"] = "ann"
    started = ann.post("/reports")
    assert started.status_code == 202, started.get_data(as_text=True)
    job_id = started.get_json()["job_id"]

    # The browser's socket, signed in by the same cookie, follows it.
    sock = socketio.test_client(
        app, namespace="/progress", flask_test_client=ann, headers={"Origin": "http://localhost"}
    )
    assert sock.is_connected("/progress")
    ack = sock.emit(
        "join_job", {"job_id": job_id, "since": 0}, namespace="/progress", callback=True
    )
    assert ack["ok"] is True, ack
    assert ack["job"]["owner"] == "ann" and ack["job"]["name"] == "monthly report"

    job = wait_until(
        lambda: (
            (j := ann.get(f"/progress/api/jobs/{job_id}").get_json())["status"] == "completed" and j
        ),
        15,
        what="the README's job to complete",
    )
    assert job["progress"] == 100.0
    assert [(s["name"], s["status"]) for s in job["stages"]] == [
        ("query", "completed"),
        ("render", "completed"),
    ]
    assert ack["events"][0]["type"] == "job_started"
    seen = [*ack["events"], *(m["args"][0] for m in sock.get_received("/progress"))]
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs)) and seen[-1]["type"] == "job_completed", seen
    # The emitter forwards at most one update per MIN_INTERVAL: some batches, not each.
    batches = [e["message"] for e in seen if e["type"] == "progress_update" and e.get("message")]
    assert batches and all(re.fullmatch(r"batch \d+ of 20", m) for m in batches), batches

    # Another user does not see it; the pages answer the signed-in user.
    bob = app.test_client()
    with bob.session_transaction() as session:
        session["user_id"] = "bob"
    assert bob.get(f"/progress/api/jobs/{job_id}").get_json()["code"] == "not_found"
    assert ann.get("/progress/").status_code == 200

    # Another site's page, with ann's cookie: no socket, no write.
    foreign = {"Origin": "https://elsewhere.example"}
    evil = socketio.test_client(app, namespace="/progress", flask_test_client=ann, headers=foreign)
    assert not evil.is_connected("/progress")
    cancel = ann.post(f"/progress/api/jobs/{job_id}/cancel", json={}, headers=foreign)
    assert cancel.status_code == 403 and cancel.get_json()["code"] == "forbidden"
    sock.disconnect(namespace="/progress")


def test_the_readme_browser_snippet_names_what_the_extension_serves(readme_app):
    text = section(README, LEAD)
    html = blocks(text, "html")[0]
    client = readme_app.app.test_client()

    # The JS client, under the extension's prefix, with the functions used.
    imported = re.search(r'import \{ createClient \} from "([^"]+)"', html).group(1)
    assert imported == "/progress/static/progresscast.js"
    served = client.get(imported)
    assert served.status_code == 200
    source = served.get_data(as_text=True)
    served.close()
    assert source == JS_CLIENT.read_text()
    assert "export function createClient(" in source and "\n  watch(jobId, onState" in source
    assert "createClient({ io })" in html and "pc.watch(job_id, " in html

    # The route it posts to is the Python block's.
    posted = re.search(r'fetch\("([^"]+)", \{ method: "POST" \}\)', html).group(1)
    assert f'@app.post("{posted}")' in blocks(text, "python")[0]

    # The Socket.IO client: the version the built-in pages load.
    script = re.search(r'<script src="([^"]+)">', html).group(1)
    version = re.search(r"socket\.io-client@([\d.]+)/", script).group(1)
    assert f"socket.io-client@{version}/" in SOCKETIO_CLIENT_CDN
    assert script == SOCKETIO_CLIENT_CDN.replace("socket.io.esm.min.js", "socket.io.min.js")


# ------------------------------------------------------- docs/flask-extension.md


def documented_settings() -> dict[str, str]:
    """``PROGRESSCAST_NAME`` → the default cell, from the tables of the doc's
    "Settings" section."""
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", section(EXTENSION_DOC, "Settings"), re.M)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a setting is listed twice"
    return {name: cell.strip() for name, cell in rows}


def test_every_setting_is_in_the_doc_with_its_default():
    documented = documented_settings()
    expected = {PREFIX + name for name in DEFAULTS}
    missing = sorted(expected - set(documented))
    unknown = sorted(set(documented) - expected)
    assert not missing, f"docs/flask-extension.md does not list: {missing}"
    assert not unknown, f"docs/flask-extension.md lists settings that do not exist: {unknown}"
    for name, default in DEFAULTS.items():
        cell = documented[PREFIX + name]
        if name in COMPUTED:
            assert cell, name
            continue
        shown = re.match(r"`([^`]*)`", cell)
        assert shown, f"{name}: the default should start with a code span, got {cell!r}"
        value = ast.literal_eval(shown.group(1))
        assert value == default and type(value) is type(default), (
            f"{name}: the doc says {shown.group(1)}, settings.py {default!r}"
        )


def test_the_docs_ten_lines_are_the_readmes():
    readme = blocks(section(README, LEAD), "python")[0]
    doc = section(EXTENSION_DOC, "The ten lines")
    assert blocks(doc, "python")[0] == readme
    assert blocks(doc, "html")[0] == blocks(section(README, LEAD), "html")[0]


def test_the_doc_quotes_the_errors_it_describes(caplog):
    from flask import Flask
    from flask_socketio import SocketIO

    from progresscast.flask import ProgressCast

    doc = EXTENSION_DOC.read_text()
    with pytest.raises(RuntimeError) as order:
        ProgressCast(Flask(__name__), SocketIO())
    assert f"RuntimeError: {order.value}\n" in doc

    # A SECRET_KEY under 32 characters: bearer tokens off, with the warning quoted.
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="too short",
        PROGRESSCAST_STORE_URL="sqlite:///:memory:",
        **{PREFIX + name: value for name, value in NO_SWEEPS.items()},
    )
    with caplog.at_level(logging.WARNING, logger="progresscast.flask.extension"):
        progress = ProgressCast(app, SocketIO(app, async_mode="threading"))
    try:
        assert progress.token_secret is None
        warning = next(r.getMessage() for r in caplog.records if "tokens are off" in r.getMessage())
        assert f"\n{warning}\n" in doc
        refused = app.test_client().get(
            "/progress/api/jobs", headers={"Authorization": "Bearer x.y.z"}
        )
        message = refused.get_json()["message"]
        assert refused.status_code == 401 and f"(`{message}`" in " ".join(doc.split())
    finally:
        progress.tracker.store.close()


def test_every_python_block_of_the_doc_parses():
    for block in blocks(EXTENSION_DOC.read_text(), "python"):
        ast.parse(block)


def test_the_docs_app_factory_runs(tmp_path, monkeypatch):
    factory = next(b for b in blocks(EXTENSION_DOC.read_text(), "python") if "def create_app(" in b)
    assert factory.index("socketio.init_app(app)") < factory.index(
        "progress.init_app(app, socketio)"
    )
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # threading mode
    module = load_module(tmp_path / "yourapp.py", "yourapp", factory, monkeypatch)
    app = module.create_app(
        {
            "SECRET_KEY": "s" * 48,
            "PROGRESSCAST_STORE_URL": f"sqlite:///{tmp_path / 'factory.db'}",
            **{PREFIX + name: value for name, value in NO_SWEEPS.items()},
        }
    )
    try:
        client = app.test_client()
        assert client.get("/progress/healthz").get_json()["status"] == "ok"
        assert client.get("/progress/api/jobs").status_code == 401
        with client.session_transaction() as session:
            session["user_id"] = "ann"
        created = client.post("/progress/api/jobs", json={"name": "n", "stages": ["only"]})
        assert created.status_code == 201 and created.get_json()["owner"] == "ann"
    finally:
        module.progress.tracker.store.close()
