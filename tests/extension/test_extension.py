"""progresscast.flask in an app of someone else's (conftest.build_app):
its sign-in identifies sockets and REST calls, tokens still work beside it,
its own routes, errors and events are left alone, and a foreign site cannot
act for its signed-in users."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flask import Flask
from flask_socketio import SocketIO

from progresscast.flask import Principal, ProgressCast
from progresscast.flask.auth import principal_from
from progresscast.flask.batching import BatchingManager
from progresscast.flask.jsonutil import TolerantPacket
from tests.harness import ROOT, token_for

from .conftest import NS, signed_in, socket_for

FOREIGN = "http://evil.example"


def job_of(app, user: str = "alice") -> str:
    response = signed_in(app, user).post("/work")
    assert response.status_code == 200, response.data
    return response.get_json()["job_id"]


def ack(client, event: str, payload=None):
    return client.emit(event, payload if payload is not None else {}, namespace=NS, callback=True)


# ------------------------------------------------------------ what it adds


def test_the_rest_api_is_under_the_prefix_for_the_signed_in_user(app):
    job_id = job_of(app, "alice")
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    got = alice.get(f"/progress/api/jobs/{job_id}")
    assert got.status_code == 200 and got.get_json()["owner"] == "alice"
    assert [j["job_id"] for j in alice.get("/progress/api/jobs").get_json()] == [job_id]
    missing = bob.get(f"/progress/api/jobs/{job_id}")
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
    assert bob.get("/progress/api/jobs").get_json() == []
    anonymous = app.test_client().get("/progress/api/jobs")
    assert anonymous.status_code == 401 and anonymous.get_json()["code"] == "unauthorized"


def test_openapi_document_lists_the_prefixed_paths(app):
    spec = app.test_client().get("/progress/api/openapi.json").get_json()
    assert "/progress/api/jobs/{job_id}/events" in spec["paths"]
    assert spec["info"]["title"] == "progresscast"


def test_js_client_and_pages_are_served_under_the_prefix(app):
    http = signed_in(app, "alice")
    with http.get("/progress/static/progresscast.js") as js:
        assert js.status_code == 200 and b"export function createClient" in js.data
    page = http.get("/progress/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-base="/progress"' in html and 'data-session-user="alice"' in html
    assert 'data-token=""' in html  # no token in the page: the cookie signs it in
    assert "cdn.jsdelivr.net/npm/socket.io-client" in html  # the default client URL
    assert http.get("/progress/jobs/some-job").status_code == 200
    assert http.get("/progress/healthz").get_json()["status"] == "ok"
    assert http.get("/progress/readyz").status_code == 200


def test_pages_can_be_turned_off_and_the_prefix_changed(make_app):
    app = make_app(PROGRESSCAST_PAGES=False, PROGRESSCAST_URL_PREFIX="/live")
    http = signed_in(app, "alice")
    assert http.get("/live/").status_code == 404
    assert http.get("/live/jobs/x").status_code == 404
    with http.get("/live/static/progresscast.js") as js:
        assert js.status_code == 200  # the client stays
    assert http.get("/live/api/jobs").status_code == 200
    assert http.get("/progress/api/jobs").status_code == 404


def test_a_misspelt_setting_is_an_error_not_a_silent_default(tmp_path):
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 40, PROGRESSCAST_STOER_URL="sqlite:///x.db")
    with pytest.raises(ValueError, match="PROGRESSCAST_STOER_URL"):
        ProgressCast(app, SocketIO(app, async_mode="threading"))


def test_the_socketio_must_be_set_up_first():
    app = Flask(__name__)
    with pytest.raises(RuntimeError, match=r"SocketIO\(app\)"):
        ProgressCast().init_app(app, SocketIO(async_mode="threading"))


def test_app_factory_pattern_with_one_extension_for_several_apps(tmp_path):
    progress = ProgressCast()
    socketio = SocketIO()

    def create_app(name: str, prefix: str) -> Flask:
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(SECRET_KEY="k" * 40, PROGRESSCAST_URL_PREFIX=prefix)
        socketio.init_app(app, async_mode="threading")
        progress.init_app(app, socketio)
        return app

    one = create_app("one", "/progress")
    with pytest.raises(RuntimeError, match="already serves another app"):
        create_app("shared", "/shared")  # Flask-SocketIO serves one app at a time
    socketio = SocketIO()
    two = create_app("two", "/live")
    progress.user_loader(lambda: "ann")
    try:
        states = one.extensions["progresscast"], two.extensions["progresscast"]
        assert [s.extension for s in states] == [progress, progress]
        # each app its own settings and its own store: a SQLite file in its instance folder
        with one.app_context():
            assert progress.settings["URL_PREFIX"] == "/progress"
            job = progress.tracker.create_job("import", ["fetch"], owner="ann")
        with two.app_context():
            assert progress.settings["URL_PREFIX"] == "/live"
            assert progress.tracker.list_jobs("ann") == []
        assert (tmp_path / "one" / "progresscast.db").exists()
        assert one.test_client().get(f"/progress/api/jobs/{job.job_id}").status_code == 200
        assert two.test_client().get(f"/live/api/jobs/{job.job_id}").status_code == 404
        with pytest.raises(RuntimeError, match="several apps"):
            progress.tracker  # noqa: B018  (outside an app context: which app?)
        # a closed app is forgotten: the one left is the app outside a context
        one.extensions["progresscast"].close()
        assert progress.settings["URL_PREFIX"] == "/live"
        # python-socketio's default manager gave way to ours; packets decode tolerantly
        assert isinstance(socketio.server.manager, BatchingManager)
        assert socketio.server.packet_class is TolerantPacket
    finally:
        progress.close()


def test_the_apps_json_module_still_encodes_packets(tmp_path):
    import json

    class AppJSON:
        """The app's own JSON module (it gave SocketIO ``json=``)."""

        loads = staticmethod(json.loads)

        @staticmethod
        def dumps(obj, **kwargs):
            return json.dumps(obj, default=lambda o: f"<{type(o).__name__}>", **kwargs)

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "k" * 40
    from socketio.packet import Packet

    before = Packet.json
    try:
        socketio = SocketIO(app, async_mode="threading", json=AppJSON)
        progress = ProgressCast(app, socketio)
        assert issubclass(socketio.server.packet_class, TolerantPacket)
        assert socketio.server.packet_class.json is AppJSON
        progress.close()
    finally:
        Packet.json = before  # python-socketio sets it process-wide


def test_importing_progresscast_does_not_import_flask():
    code = "import sys, progresscast, progresscast.client; assert 'flask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT / "src", check=True, timeout=60)


# ----------------------------------------------------------- who is calling


def test_socket_connect_is_signed_in_by_the_apps_session(app):
    job_id = job_of(app, "alice")
    alice = socket_for(app, signed_in(app, "alice"))
    assert alice.is_connected(NS)
    joined = ack(alice, "join_job", {"job_id": job_id})
    assert joined["ok"] and joined["job"]["owner"] == "alice"
    bob = socket_for(app, signed_in(app, "bob"))
    refused = ack(bob, "join_job", {"job_id": job_id})
    assert refused["error"]["code"] == "not_found"
    nobody = socket_for(app, app.test_client())
    assert not nobody.is_connected(NS)


def test_an_admin_principal_from_the_user_loader_may_watch_all_jobs(app):
    job_of(app, "alice")
    root = socket_for(app, signed_in(app, "root"))
    everything = ack(root, "watch_jobs", {"all": True})
    assert everything["ok"] and [j["owner"] for j in everything["jobs"]] == ["alice"]
    alice = socket_for(app, signed_in(app, "alice"))
    assert ack(alice, "watch_jobs", {"all": True})["error"]["code"] == "forbidden"


def test_bearer_tokens_work_beside_the_user_loader(app):
    job_id = job_of(app, "alice")
    http = app.test_client()
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    assert http.get(f"/progress/api/jobs/{job_id}", headers=auth).status_code == 200
    share = {"Authorization": f"Bearer {token_for('carol', jobs=[job_id])}"}
    assert http.get(f"/progress/api/jobs/{job_id}", headers=share).status_code == 200
    sock = socket_for(app, auth={"token": token_for("alice")})
    assert ack(sock, "join_job", {"job_id": job_id})["ok"]
    # a token from someone else's secret is refused, session or not
    forged = {"Authorization": "Bearer " + token_for("alice").rsplit(".", 1)[0] + ".x"}
    assert http.get(f"/progress/api/jobs/{job_id}", headers=forged).status_code == 401


def test_a_short_secret_turns_tokens_off_but_not_the_apps_sign_in(make_app):
    app = make_app(SECRET_KEY="short")
    job_id = job_of(app, "alice")
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    refused = app.test_client().get(f"/progress/api/jobs/{job_id}", headers=auth)
    assert refused.status_code == 401
    assert "not enabled" in refused.get_json()["message"]
    assert signed_in(app, "alice").get(f"/progress/api/jobs/{job_id}").status_code == 200


def test_without_a_user_loader_only_tokens_sign_in(make_app):
    app = make_app(user_loader=False)
    http = signed_in(app, "alice")  # the app's session means nothing to progresscast
    refused = http.get("/progress/api/jobs")
    assert refused.status_code == 401
    assert refused.get_json()["message"] == "authentication required: a bearer token"
    assert not socket_for(app, http).is_connected(NS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("ann", Principal("ann", session=True)),
        (42, Principal("42", session=True)),
        (Principal("ann", admin=True), Principal("ann", admin=True, session=True)),
    ],
)
def test_what_a_user_loader_may_return(value, expected):
    assert principal_from(value) == expected


def test_a_user_loader_returning_something_else_is_a_clear_error():
    with pytest.raises(TypeError, match="user_loader returns None, a user id"):
        principal_from(object())


@pytest.mark.parametrize("user_id", ["bob#batch", "ann smith", "x" * 129, "-dash"])
def test_user_ids_that_could_name_another_users_room_are_refused(user_id):
    """Rooms are built from user ids (``user:<id>``, ``user:<id>#batch``):
    the same rule as for tokens keeps one user's id from naming another's room."""
    with pytest.raises(ValueError, match="progresscast user ids are 1-128"):
        principal_from(user_id)


def test_a_principal_may_say_it_is_not_from_a_cookie():
    assert principal_from(Principal("demo", session=False)).session is False


# ------------------------------------------------------- cross-site safety


def test_a_foreign_site_cannot_write_with_the_users_cookie(app):
    job_id = job_of(app, "alice")
    alice = signed_in(app, "alice")
    path = f"/progress/api/jobs/{job_id}/cancel"
    for headers in ({"Origin": FOREIGN}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        refused = alice.post(path, json={}, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.get_json()["code"] == "forbidden"
        assert "cross-site" in refused.get_json()["message"]
    assert alice.get(f"/progress/api/jobs/{job_id}").get_json()["status"] == "queued"
    # reads are not writes (and without CORS headers the foreign page cannot read them)
    assert alice.get(f"/progress/api/jobs/{job_id}", headers={"Origin": FOREIGN}).status_code == 200
    # the app's own page may
    ok = alice.post(path, json={}, headers={"Origin": "http://localhost"})
    assert ok.status_code == 202 and ok.get_json()["status"] == "cancelled"


def test_same_origin_by_fetch_metadata_and_non_browser_callers_may_write(app):
    alice = signed_in(app, "alice")
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {}):
        job_id = job_of(app, "alice")
        response = alice.post(f"/progress/api/jobs/{job_id}/cancel", json={}, headers=headers)
        assert response.status_code == 202, headers


def test_a_bearer_token_is_not_ambient_so_any_origin_may_use_it(app):
    job_id = job_of(app, "alice")
    response = app.test_client().post(
        f"/progress/api/jobs/{job_id}/cancel",
        json={},
        headers={"Origin": FOREIGN, "Authorization": f"Bearer {token_for('alice')}"},
    )
    assert response.status_code == 202


def test_an_allowed_origin_may_write_with_the_cookie(make_app):
    app = make_app(PROGRESSCAST_CORS_ALLOWED_ORIGINS=["https://admin.example"])
    job_id = job_of(app, "alice")
    alice = signed_in(app, "alice")
    path = f"/progress/api/jobs/{job_id}/cancel"
    assert alice.post(path, json={}, headers={"Origin": FOREIGN}).status_code == 403
    allowed = alice.post(path, json={}, headers={"Origin": "https://admin.example"})
    assert allowed.status_code == 202
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    # the browser sends the cookie cross-origin only when told credentials are welcome
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    unlisted = alice.get(f"/progress/api/jobs/{job_id}", headers={"Origin": FOREIGN})
    assert "Access-Control-Allow-Origin" not in unlisted.headers


def test_a_foreign_site_cannot_open_a_socket_with_the_users_cookie(app):
    alice = signed_in(app, "alice")
    for headers in (
        {"Origin": FOREIGN},
        {"Origin": FOREIGN, "Sec-Fetch-Site": "same-origin"},  # Origin decides
        {"Sec-Fetch-Site": "cross-site"},
        {},  # a <script> tag's long-polling handshake (JSONP) sends neither
    ):
        assert not socket_for(app, alice, headers=headers).is_connected(NS), headers
    own = socket_for(app, alice, headers={"Origin": "http://localhost"})
    assert own.is_connected(NS)
    polling = socket_for(app, alice, headers={"Sec-Fetch-Site": "same-origin"})
    assert polling.is_connected(NS)  # a same-origin XHR poll sends no Origin
    # a token is not ambient: any origin may connect with one
    with_token = socket_for(app, headers={"Origin": FOREIGN}, auth={"token": token_for("alice")})
    assert with_token.is_connected(NS)


# ---------------------------------------------------- the app is left alone


def test_the_apps_own_error_pages_and_routes_are_untouched(app):
    http = app.test_client()
    own = http.get("/own")
    assert own.status_code == 404 and own.mimetype == "text/html"
    nowhere = http.get("/nowhere")
    assert nowhere.status_code == 404 and nowhere.mimetype == "text/html"
    ours = signed_in(app, "alice").get("/progress/api/jobs/nope")
    assert ours.status_code == 404 and ours.get_json()["code"] == "not_found"


def test_the_apps_own_events_work_beside_progress(app):
    alice_http, bob_http = signed_in(app, "alice"), signed_in(app, "bob")
    alice_app = socket_for(app, alice_http, namespace="/")
    bob_app = socket_for(app, bob_http, namespace="/")
    bob_progress = socket_for(app, bob_http)
    assert ack(bob_progress, "watch_jobs")["ok"]
    alice_app.emit("notice", {"text": "lunch"})
    [got] = [p for p in bob_app.get_received("/") if p["name"] == "notice"]
    assert got["args"][0] == {"text": "lunch", "from": "alice"}
    assert bob_progress.get_received(NS) == []  # nothing of the app's leaks into /progress


def test_an_app_blueprint_named_jobs_keeps_its_name(tmp_path):
    from flask import Blueprint

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "k" * 40
    jobs = Blueprint("jobs", __name__)
    jobs.get("/jobs")(lambda: "the app's jobs")
    app.register_blueprint(jobs)
    progress = ProgressCast(app, SocketIO(app, async_mode="threading"))
    try:
        assert app.test_client().get("/jobs").get_data(as_text=True) == "the app's jobs"
        assert "progresscast_jobs" in app.blueprints
    finally:
        progress.close()


def test_a_flask_login_app_returns_current_user_get_id(tmp_path):
    """The usual Flask-Login app: its user_loader is one line."""
    from flask_login import LoginManager, UserMixin, current_user, login_user

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "k" * 40
    login = LoginManager(app)
    login.user_loader(User)
    socketio = SocketIO(app, async_mode="threading")
    progress = ProgressCast(app, socketio)

    @progress.user_loader
    def current_user_id():
        return current_user.get_id()  # None when anonymous

    @app.post("/login/<user>")
    def sign_in(user):
        login_user(User(user))
        return "", 204

    try:
        state = progress.tracker.create_job("import", ["fetch"], owner="ann")
        http = app.test_client()
        assert http.get("/progress/api/jobs").status_code == 401  # anonymous
        assert http.post("/login/ann").status_code == 204
        assert http.get(f"/progress/api/jobs/{state.job_id}").status_code == 200
        sock = socket_for(app, http)
        assert ack(sock, "join_job", {"job_id": state.job_id})["ok"]
        assert not socket_for(app, app.test_client()).is_connected(NS)
    finally:
        progress.close()


def test_with_another_client_manager_batched_watchers_get_events_one_by_one(tmp_path):
    """An app that brought its own Socket.IO client manager keeps it; a
    dashboard asking for batches gets every event anyway, unbatched."""
    import socketio as python_socketio

    class AppsOwnManager(python_socketio.Manager):
        pass

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = "k" * 40
    socketio = SocketIO(app, async_mode="threading", client_manager=AppsOwnManager())
    progress = ProgressCast(app, socketio)
    progress.user_loader(lambda: "ann")
    try:
        assert type(socketio.server.manager) is AppsOwnManager
        dashboard = socket_for(app, app.test_client())
        assert ack(dashboard, "watch_jobs", {"batch": True})["ok"]
        state = progress.tracker.create_job("import", ["fetch"], owner="ann", start=True)
        got = [p for p in dashboard.get_received(NS)]
        assert [(p["name"], p["args"][0]["job_id"]) for p in got] == [("job_started", state.job_id)]
    finally:
        progress.close()


@pytest.mark.parametrize("auth", [12.5, -3, "token", [1], True])
def test_a_connect_whose_auth_is_not_an_object_is_refused_even_when_signed_in(app, auth):
    """Auth that is not an object is refused. ``12.5`` is encoded
    ``0/progress,12.5``, which python-socketio reads back as the ack id 12 and
    the undecodable ``.5``: refused too, not an exception in the server. (A
    whole number is read back as an ack id and no auth at all.)"""
    assert not socket_for(app, signed_in(app, "alice"), auth=auth).is_connected(NS)
