"""The package as a user gets it (issue 12): the wheel built from this repo,
installed with ``pip install "progresscast[flask]"`` into a fresh virtualenv
outside the repo, and examples/existing_app served from a copy of it, with
nothing of the repo on its path.

A file that the wheel lacks (a page, a template, the JS client, a module)
fails here, where the rest of the suite, which runs from the source tree,
would never notice.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.harness import (
    ROOT,
    AppProcess,
    free_port,
    gunicorn_cmd,
    require_component,
    wait_until,
)

# Building the wheel and installing it with its dependencies from the package
# registry (pip's cache makes it quick after the first time) is most of it.
pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

PACKAGE = ROOT / "src" / "progresscast"
EXAMPLE = ROOT / "examples" / "existing_app"
#: the extension's page assets and templates, named here so that a file gone
#: from the source tree fails too (the wheel is also checked against the tree)
STATIC = ("progresscast.js", "ui.js", "dashboard.js", "job.js", "app.css")
TEMPLATES = ("base.html", "index.html", "job.html")
#: the server side of an app, which the `flask` extra leaves to the app
SERVER_PACKAGES = ("gunicorn>=25.3,<26", "eventlet")
#: never copied into the build: not the package's, and node_modules is large
NOT_SOURCE = {
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "test-artifacts",
    "instance",
}

USER, PASSWORD = "alice", "alice-password"


def run(cmd: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``cmd``, which must succeed; its output is in the failure message."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    took = time.monotonic() - started
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode} after {took:.1f}s:\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    print(f"[{took:5.1f}s] {' '.join(map(str, cmd))[:160]}")
    return proc


def outside_env(venv: Path, **extra: str) -> dict[str, str]:
    """A shell where only ``venv`` is active: nothing points into the repo
    (no PYTHONPATH), and none of the caller's progresscast settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        and not k.startswith("PROGRESSCAST_")
    }
    path = [str(venv / "bin")] + [
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and p != os.path.dirname(sys.executable)
    ]
    return {
        **env,
        "PATH": os.pathsep.join(path),
        "VIRTUAL_ENV": str(venv),
        "PYTHONNOUSERSITE": "1",
        **extra,
    }


def is_outside_repo(path: Path) -> bool:
    return not path.resolve().is_relative_to(ROOT.resolve())


# ---------------------------------------------------------------- the wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, as ``pip install .`` builds it, from a copy of the repo: a
    build in the repo itself would leave build/ behind, and setuptools packs
    whatever an earlier build left in build/lib, so a file dropped from the
    package could still be found there."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda _dir, names: [
            n for n in names if n in NOT_SOURCE or n.endswith((".egg-info", ".pyc"))
        ],
    )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(base / "dist"),
            str(source),
        ]
    )
    (built,) = (base / "dist").glob("progresscast-*.whl")
    return built


@pytest.fixture(scope="session")
def wheel_files(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_has_the_extension_and_its_page_assets(wheel_files):
    named = [
        *(f"progresscast/flask/static/{name}" for name in STATIC),
        *(f"progresscast/flask/templates/progresscast/{name}" for name in TEMPLATES),
        "progresscast/flask/__init__.py",
        "progresscast/py.typed",
    ]
    missing = [name for name in named if name not in wheel_files]
    assert not missing, f"the wheel lacks {missing}"
    # Every file of the package's source tree, whatever is added later.
    tree = {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    missing = sorted(tree - wheel_files)
    assert not missing, f"the wheel lacks {missing}"


def test_wheel_has_nothing_but_the_package(wheel_files):
    tops = {name.split("/", 1)[0] for name in wheel_files}
    (dist_info,) = (t for t in tops if t.endswith(".dist-info"))
    assert tops == {"progresscast", dist_info}, f"unexpected top-level entries: {tops}"
    for name in wheel_files:
        lowered = name.lower()
        # the official Socket.IO client is loaded by the pages from a URL, never shipped
        assert "socket.io" not in lowered, name
        assert "node_modules" not in lowered, name
        assert "/tests/" not in f"/{lowered}", name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name


def test_wheel_metadata_declares_the_flask_extra(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (metadata,) = (n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(metadata).decode()
    assert "Provides-Extra: flask" in text
    # what progresscast.flask imports, whatever else brings it along
    for requirement in (
        "flask",
        "flask-socketio",
        "flask-smorest",
        "flask-cors",
        "webargs",
        "prometheus-client",
    ):
        assert re.search(
            rf"^Requires-Dist: {re.escape(requirement)}\b.*extra == \"flask\"", text, re.M
        ), f"the flask extra does not require {requirement}"
    assert not re.search(r"^Requires-Dist: (eventlet|gevent|gunicorn)\b", text, re.M | re.I)
    assert "License-Expression: MIT" in text
    assert "Description-Content-Type: text/markdown" in text


def test_wheel_metadata_declares_the_celery_extra(wheel):
    with zipfile.ZipFile(wheel) as zf:
        assert "progresscast/celery.py" in zf.namelist()
        (metadata,) = (n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(metadata).decode()
    assert "Provides-Extra: celery" in text
    for requirement in ("celery", "redis"):
        assert re.search(
            rf"^Requires-Dist: {re.escape(requirement)}\b.*extra == \"celery\"", text, re.M
        ), f"the celery extra does not require {requirement}"


# ------------------------------------------------------ the fresh virtualenv

#: run in the fresh venv after installing the wheel alone, and again with the extra
PROBE = """
import importlib, json, sys
import progresscast
result = {"file": progresscast.__file__, "flask_loaded": "flask" in sys.modules}
try:
    importlib.import_module("progresscast.flask")
    result["extension"] = "ok"
except ImportError as exc:
    result["extension"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"
        self.probes: dict[str, dict] = {}
        self.timings: dict[str, float] = {}

    def probe(self, when: str, cwd: Path) -> None:
        out = run([str(self.python), "-c", PROBE], cwd=cwd, env=outside_env(self.path))
        self.probes[when] = json.loads(out.stdout.strip().splitlines()[-1])

    def pip_install(self, label: str, *args: str) -> None:
        started = time.monotonic()
        run(
            [
                str(self.python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                # the versions the repo is tested with (requirements.txt pins)
                "--constraint",
                str(ROOT / "requirements.txt"),
                *args,
            ],
            timeout=480,
            env=outside_env(self.path),
        )
        self.timings[label] = time.monotonic() - started


@pytest.fixture(scope="session")
def venv(tmp_path_factory, wheel) -> Venv:
    """A virtualenv outside the repo: the wheel alone first, then with its
    ``flask`` extra and a server for the example."""
    # (Debian's python3 has ensurepip only with its python3-venv package)
    has_pip = importlib.util.find_spec("ensurepip") is not None
    require_component(has_pip, "python -m venv with pip (ensurepip)")
    base = tmp_path_factory.mktemp("venv")
    assert is_outside_repo(base)
    env = Venv(base / "venv")
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(env.path)])
    env.timings["venv"] = time.monotonic() - started
    away = Path(tempfile.gettempdir())  # a working directory with no progresscast in it
    env.pip_install("wheel", str(wheel))
    env.probe("alone", away)
    env.pip_install("wheel[flask] + server", f"{wheel}[flask]", *SERVER_PACKAGES)
    env.probe("flask", away)
    print("venv timings:", {k: round(v, 1) for k, v in env.timings.items()})
    return env


def test_the_wheel_alone_imports_without_flask(venv):
    alone = venv.probes["alone"]
    assert Path(alone["file"]).is_relative_to(venv.path), alone
    assert alone["flask_loaded"] is False
    # without the extra, the extension says what it lacks
    assert alone["extension"].startswith("ModuleNotFoundError"), alone


def test_import_progresscast_does_not_import_flask(venv):
    installed = venv.probes["flask"]
    assert Path(installed["file"]).is_relative_to(venv.path), installed
    assert installed["extension"] == "ok", installed
    # flask is installed now, and `import progresscast` still leaves it alone
    assert installed["flask_loaded"] is False


# ---------------------------------------------------- the example, installed


@pytest.fixture(scope="session")
def example_server(tmp_path_factory, venv):
    """examples/existing_app, copied out of the repo, served by the fresh
    venv's gunicorn with the eventlet worker."""
    require_component(EXAMPLE.is_dir(), f"the example app ({EXAMPLE.relative_to(ROOT)})")
    base = tmp_path_factory.mktemp("example")
    app_dir = base / "existing_app"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
    assert is_outside_repo(app_dir)
    # whatever else the example asks for (progresscast itself is the wheel)
    listed = (app_dir / "requirements.txt").read_text().splitlines()
    wanted = (r.split("#", 1)[0].strip() for r in listed)
    others = [r for r in wanted if r and "progresscast" not in r and not r.startswith(("-e", "."))]
    if others:
        venv.pip_install("the example's requirements", *others)
    env = outside_env(
        venv.path,
        SECRET_KEY=secrets.token_urlsafe(32),
        PROGRESSCAST_STORE_URL=f"sqlite:///{base / 'progress.db'}",
        EXAMPLE_PACE="0.05",
        PYTHONUNBUFFERED="1",
    )
    # the extension this server will run is the venv's, not the repo's
    where = run(
        [
            str(venv.python),
            "-c",
            "import progresscast.flask, sys; print(progresscast.__file__)",
        ],
        cwd=app_dir,
        env=env,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv.path), where
    port = free_port()
    server = AppProcess(
        gunicorn_cmd("eventlet", port, "app:app", python=str(venv.python)),
        cwd=app_dir,
        env=env,
        port=port,
        log_path=base / "gunicorn.log",
        health_path="/progress/healthz",
    )
    started = time.monotonic()
    server.start(timeout=60)
    print(f"example up in {time.monotonic() - started:.1f}s")
    try:
        yield server.url
    finally:
        server.stop()


def post_forms(page: str) -> list[tuple[str, dict[str, str]]]:
    """Each POST form of ``page``: its action and its named inputs with their
    values (hidden fields such as the app's CSRF token included)."""
    forms = []
    for attrs, body in re.findall(r"<form\b([^>]*)>(.*?)</form>", page, re.S | re.I):
        if not re.search(r'\bmethod="post"', attrs, re.I):
            continue
        action = re.search(r'\baction="([^"]*)"', attrs)
        fields = {}
        for tag in re.findall(r"<input\b[^>]*>", body, re.I):
            name = re.search(r'\bname="([^"]+)"', tag)
            value = re.search(r'\bvalue="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
        forms.append((html.unescape(action.group(1)) if action else "", fields))
    return forms


@pytest.fixture
def sign_in(example_server):
    """``sign_in(user, password)``: a browser's session after signing in
    through the example's own form; closed after the test."""
    made: list[requests.Session] = []

    def make(user: str = USER, password: str = PASSWORD) -> requests.Session:
        http = requests.Session()
        made.append(http)
        page = http.get(example_server + "/login", timeout=10)
        assert page.status_code == 200, page.text[:500]
        (action, fields), *_ = post_forms(page.text)
        fields.update(username=user, password=password)
        answer = http.post(
            urljoin(page.url, action), data=fields, timeout=10, allow_redirects=False
        )
        assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
        return http

    yield make
    for http in made:
        http.close()


def my_jobs(http: requests.Session, url: str) -> dict[str, dict]:
    answer = http.get(url + "/progress/api/jobs", timeout=10)
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    return {job["job_id"]: job for job in answer.json()}


def test_installed_extension_serves_the_js_client(example_server):
    for name in STATIC:
        answer = requests.get(f"{example_server}/progress/static/{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.content == (PACKAGE / "flask" / "static" / name).read_bytes(), name
    client = requests.get(example_server + "/progress/static/progresscast.js", timeout=10)
    assert "createClient" in client.text
    assert "javascript" in client.headers["Content-Type"]


def test_installed_extension_renders_the_dashboard_for_a_signed_in_user(example_server, sign_in):
    http = sign_in()
    page = http.get(example_server + "/progress/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert f'data-session-user="{USER}"' in page.text
    # the page's own assets, where its template says they are
    assets = re.findall(r'(?:href|src)="(/progress/static/[^"]+)"', page.text)
    assert any(a.endswith("/dashboard.js") for a in assets), assets
    assert any(a.endswith("/app.css") for a in assets), assets
    for asset in assets:
        assert http.get(example_server + asset, timeout=10).status_code == 200, asset
    # and the app's own page loads the JS client from the package
    home = http.get(example_server + "/", timeout=10)
    assert home.status_code == 200, home.text[:500]
    assert "/progress/static/progresscast.js" in home.text


def test_a_job_started_through_the_example_completes(example_server, sign_in):
    http = sign_in()
    before = my_jobs(http, example_server)
    # the app's own form, as its page submits it (with its CSRF field)
    home = http.get(example_server + "/", timeout=10)
    forms = [(a, f) for a, f in post_forms(home.text) if "logout" not in a]
    assert forms, home.text[:1000]
    action, fields = forms[0]
    answer = http.post(urljoin(home.url, action), data=fields, timeout=10, allow_redirects=False)
    assert answer.status_code in (200, 201, 202, 302, 303), (answer.status_code, answer.text)

    def new_job():
        return next((j for i, j in my_jobs(http, example_server).items() if i not in before), None)

    job = wait_until(new_job, 30, interval=0.2, what="the started job")
    job_id = job["job_id"]

    def ended():
        answer = http.get(f"{example_server}/progress/api/jobs/{job_id}", timeout=10)
        assert answer.status_code == 200, (answer.status_code, answer.text[:500])
        job = answer.json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    job = wait_until(ended, 60, interval=0.2, what=f"job {job_id} to end")
    assert job["status"] == "completed", job
    assert job["owner"] == USER
    assert job["progress"] == pytest.approx(100.0)
    # its page, from the package's templates
    page = http.get(f"{example_server}/progress/jobs/{job_id}", timeout=10)
    assert page.status_code == 200 and job_id in page.text
    # another user does not see it
    bob = sign_in("bob", "bob-password")
    assert bob.get(f"{example_server}/progress/api/jobs/{job_id}", timeout=10).status_code == 404
