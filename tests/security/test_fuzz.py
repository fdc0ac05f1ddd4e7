"""Fuzzing every socket request and every REST endpoint with hypothesis.

Random and malformed payloads: wrong types, huge strings (up to 100 KB,
beyond MAX_CONTENT_LENGTH = 64 KiB and MAX_HTTP_BUFFER_SIZE = 16 KiB), deep
nesting, unknown fields, non-JSON bodies, wrong content types, NaN/Infinity
literals, invalid UTF-8.

Invariants:
- a socket request always acks ``{ok: true, ...}`` or ``{ok: false, error:
  {code, message}}`` with a known code and the connection stays open, except
  that a message larger than the server's max_http_buffer_size may cost its
  connection: then a new connection works;
- REST never answers 5xx; every 4xx is JSON ``{code, message, details?}``
  with a known code; every 2xx is strict JSON;
- the server answers the next valid request after every example.

Many examples run against the Flask test client (handler level, fast); a
bounded number run against a real gunicorn+eventlet server. Inputs that hit
the dedicated tests at the end (10 000-level nesting, lone surrogates) are
kept out of the random strategies, so the random runs spend their examples on
everything else.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import NAMESPACE, SocketClient, token_for
from tests.protocol_spec import EVENT_EXTRA_KEYS

from .support import (
    DROPPED,
    HTTP_CODES,
    bearer,
    call_or_drop,
    check_ack,
    check_error_body,
    discard,
    raw_call,
)

REQUESTS = ["join_job", "leave_job", "watch_jobs", "unwatch_jobs", "cancel_job", "ping"]
TARGETS = [*REQUESTS, "unknown"]
ENDPOINTS = {
    "create": ("POST", "/api/jobs"),
    "list": ("GET", "/api/jobs"),
    "get": ("GET", "/api/jobs/{id}"),
    "events": ("GET", "/api/jobs/{id}/events"),
    "ingest": ("POST", "/api/jobs/{id}/events"),
    "cancel": ("POST", "/api/jobs/{id}/cancel"),
}
BUFFER = 16 * 1024  # MAX_HTTP_BUFFER_SIZE
FUZZER = "fuzzer"

# Per socket request / REST endpoint (derandomized: the same examples every
# run). Down from 250 and 100 to keep the whole suite inside CI's ten minutes
# on two cores; the bugs the larger runs found are pinned by their own tests.
HANDLER_EXAMPLES = 150  # Flask test client
LIVE_EXAMPLES = 60  # real server

EXAMPLES: Counter[str] = Counter()  # examples actually run, for the report
OUTCOMES: dict[str, Counter] = defaultdict(Counter)  # status codes / ack codes seen
FRESH_JOB = {"name": "fresh", "stages": ["a", "b"], "start": True}


def fuzz_settings(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture(scope="module", autouse=True)
def report_examples():
    yield
    if EXAMPLES:
        print("\nfuzz examples:", dict(sorted(EXAMPLES.items())), "total", EXAMPLES.total())
        for target, seen in sorted(OUTCOMES.items()):
            print(f"  {target}: {dict(seen.most_common())}")


# ----------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4)
    ),
    max_leaves=12,
)
#: huge strings, some beyond MAX_HTTP_BUFFER_SIZE (16 KiB) and MAX_CONTENT_LENGTH (64 KiB)
huge_text = st.tuples(
    st.sampled_from(["a", "é", "€", "😀", '"', "\\", "\x00", "<script>"]),
    st.sampled_from([1_000, 8_000, 15_000, 17_000, 40_000, 66_000, 100_000]),
).map(lambda t: t[0] * max(1, t[1] // len(t[0].encode())))


def nested(depth: int, leaf: Any = None) -> Any:
    value: Any = [] if leaf is None else leaf
    for _ in range(depth):
        value = [value]
    return value


#: deep, but shallower than the recursion limit (10 000 levels: see the dedicated tests)
deep_values = st.integers(10, 400).map(nested)
any_value = json_values | huge_text | deep_values
extra_key = st.text(min_size=1, max_size=20).filter(
    lambda k: k not in {"job_id", "since", "reason", "all"}
)


def mostly(valid: st.SearchStrategy, *garbage: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` about three times in four, else one of ``garbage``: near-valid
    input gets past the first check and exercises what lies behind it."""
    bad = st.one_of(*garbage)  # (one_of drops repeated strategies: weigh by hand)
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else valid)


FRESH = "@fresh"  # in a path: replaced by a new running job of the fuzzer


def job_ids(known: list[str]) -> st.SearchStrategy:
    return mostly(
        st.sampled_from(known),
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,40}\Z"),
        st.text(max_size=200),
        huge_text,
        json_values,
    )


def request_payloads(name: str, known: list[str]) -> st.SearchStrategy:
    """Payloads for socket request ``name``: near-valid objects and anything at all."""
    extras = mostly(st.just({}), st.dictionaries(extra_key, json_values, min_size=1, max_size=2))
    if name in {"join_job", "leave_job", "cancel_job"}:
        optional: dict[str, st.SearchStrategy] = {}
        if name == "join_job":
            optional["since"] = mostly(st.integers(0, 10), st.integers(-5, 2**64), json_values)
        if name == "cancel_job":
            optional["reason"] = mostly(st.text(max_size=600), huge_text, json_values)
        near = st.fixed_dictionaries({"job_id": job_ids(known)}, optional=optional)
    elif name == "watch_jobs":
        near = st.fixed_dictionaries({}, optional={"all": mostly(st.booleans(), json_values)})
    else:
        near = st.just({})
    near = st.tuples(near, extras).map(lambda t: {**t[0], **t[1]})
    return mostly(near, any_value)


def request_args(name: str, known: list[str]) -> st.SearchStrategy:
    """The arguments of one emit: usually one payload, sometimes none or several."""
    return mostly(
        request_payloads(name, known).map(lambda p: (p,)),
        st.lists(json_values, max_size=3).map(tuple),
    )


unknown_names = st.text(min_size=1, max_size=40).filter(lambda n: n not in REQUESTS) | (
    st.sampled_from(["connect", "disconnect", "message", "json", "trigger_event", "on_ping"])
)

# --- REST

CONTENT_TYPES = [
    None,
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/merge-patch+json",
    "application/vnd.api+json",
    "*/*",
]
content_types = mostly(st.just("application/json"), st.sampled_from(CONTENT_TYPES))
stage_names = st.sampled_from(["a", "b", "c", "parse", "render"])
stage_values = mostly(
    stage_names
    | st.fixed_dictionaries({"name": stage_names}, optional={"weight": st.floats(0.01, 100)}),
    st.text(max_size=120),
    st.fixed_dictionaries(
        {"name": st.text(max_size=8) | json_values},
        optional={"weight": st.floats(allow_nan=False) | json_values, "x": json_values},
    ),
)
EVENT_TYPES = list(EVENT_EXTRA_KEYS)
extra_fields = st.fixed_dictionaries({}, optional={"extra": json_values})


def with_extras(near: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(near, mostly(st.just({}), extra_fields)).map(lambda t: {**t[0], **t[1]})


def near_bodies(endpoint: str, known: list[str]) -> st.SearchStrategy:
    if endpoint == "create":
        return with_extras(
            st.fixed_dictionaries(
                {
                    "name": mostly(st.text(min_size=1, max_size=50), huge_text, json_values),
                    "stages": mostly(
                        st.lists(stage_values, min_size=1, max_size=4, unique_by=str), json_values
                    ),
                },
                optional={
                    "job_id": job_ids(known),
                    "owner": mostly(st.just(FUZZER), st.text(max_size=20), json_values),
                    "metadata": mostly(
                        st.dictionaries(st.text(max_size=5), any_value, max_size=3), json_values
                    ),
                    "start": mostly(st.booleans(), json_values),
                },
            )
        )
    if endpoint == "ingest":
        return with_extras(
            st.fixed_dictionaries(
                {"type": mostly(st.sampled_from(EVENT_TYPES), json_values)},
                optional={
                    "stage": mostly(st.sampled_from(["a", "b", "zzz"]), json_values),
                    "next_stage": mostly(st.sampled_from(["a", "b"]), json_values),
                    "stage_progress": mostly(
                        st.floats(0, 100), st.floats(-1e308, 1e308), json_values
                    ),
                    "message": mostly(st.text(max_size=200), huge_text, json_values),
                    "result": any_value,
                    "error": mostly(
                        st.text(max_size=20)
                        | st.fixed_dictionaries({"message": st.text(), "type": st.text()}),
                        any_value,
                    ),
                    "reason": mostly(st.text(max_size=600), json_values),
                },
            )
        )
    if endpoint == "cancel":
        return with_extras(
            st.fixed_dictionaries(
                {}, optional={"reason": mostly(st.text(max_size=600), huge_text, json_values)}
            )
        )
    return json_values  # GET endpoints: a body they should ignore


#: literals strict JSON refuses, spliced into otherwise valid bodies
NON_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]


def bodies(endpoint: str, known: list[str]) -> st.SearchStrategy:
    near = near_bodies(endpoint, known)
    with_nan = st.tuples(near, st.sampled_from(NON_JSON_NUMBERS)).map(
        lambda t: (
            json.dumps({**t[0], "stage_progress": "@@"} if isinstance(t[0], dict) else ["@@"])
            .replace('"@@"', t[1])
            .encode()
        )
    )
    invalid_utf8 = st.sampled_from(
        [b'{"name": "\xff\xfe", "stages": ["a"]}', b"\xc3\x28", b'{"reason": "\xc0\xaf"}']
    )
    return mostly(
        near.map(lambda v: json.dumps(v).encode()),
        any_value.map(lambda v: json.dumps(v).encode()),
        with_nan,
        invalid_utf8,
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        st.just(b""),
    )


def query_strings() -> st.SearchStrategy:
    keys = mostly(
        st.sampled_from(["status", "page", "page_size", "since", "limit"]), st.text(max_size=8)
    )
    values = mostly(
        st.sampled_from(["queued", "running", "completed", "0", "1", "2", "50", "1000"]),
        st.sampled_from(["-1", "1001", "2e3", "", "NaN", "true", "1.5"]),
        st.integers(-(2**70), 2**70).map(str),
        st.text(max_size=30),
    )
    return st.lists(st.tuples(keys, values), max_size=4).map(urlencode)


def path_ids(known: list[str]) -> st.SearchStrategy:
    return mostly(
        st.sampled_from([*known, FRESH, FRESH]),
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,40}\Z"),
        st.text(min_size=1, max_size=60).map(lambda s: quote(s, safe="")),
        st.sampled_from(["..", "%2e%2e", "%00", "a%2Fb", "%ff", "x" * 300]),
    )


def auth_headers() -> st.SearchStrategy:
    return mostly(
        st.just(bearer(token_for(FUZZER))),
        st.sampled_from(
            [
                {},
                {"Authorization": "Bearer x.y.z"},
                {"Authorization": "Basic Zm9v"},
                bearer(token_for(FUZZER, service=True)),
                bearer(token_for("victim")),
            ]
        ),
    )


def rest_requests(endpoint: str, known: list[str]) -> st.SearchStrategy:
    method, template = ENDPOINTS[endpoint]
    return st.fixed_dictionaries(
        {
            "path": path_ids(known).map(lambda i: template.replace("{id}", i))
            if "{id}" in template
            else st.just(template),
            "query": query_strings(),
            "body": bodies(endpoint, known),
            "content_type": content_types,
            "auth": auth_headers(),
            "method": st.just(method),
        }
    )


# ------------------------------------------------------------ the invariants


def check_rest_response(status: int, content_type: str, text: bytes, where: str) -> None:
    assert status < 500, (where, status, text[:500])
    if 300 <= status < 400:
        return  # werkzeug's redirect of a path with "//" to the merged one: not an error
    try:
        body = strict_loads(text)
    except ValueError:
        raise AssertionError(f"not JSON: {where} -> {status} {text[:300]!r}") from None
    if status >= 400:
        assert content_type.startswith("application/json"), (where, status, text[:300])
        check_error_body(body, HTTP_CODES)


def strict_loads(text: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def check_request_ack(name: str, ack: Any) -> None:
    check_ack(ack)
    if ack["ok"] is True:
        assert name in REQUESTS, (name, ack)


# ================================================================ handler level


@pytest.fixture(scope="module")
def handler_world(handler_app):
    """Jobs of the fuzzer (queued and running) and of someone else, in the handler app."""
    http = handler_app.test_client()
    known = []
    for owner, start in [(FUZZER, False), (FUZZER, True), ("victim", True), (FUZZER, True)]:
        r = http.post(
            "/api/jobs",
            json={"name": "j", "stages": ["a", "b"], "start": start},
            headers=bearer(token_for(owner)),
        )
        assert r.status_code == 201, r.get_data()
        known.append(r.get_json()["job_id"])
    return handler_app, [*known, uuid.uuid4().hex]


def handler_peer(app):
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app, namespace=NAMESPACE, auth={"token": token_for(FUZZER)})
    assert client.is_connected(NAMESPACE)
    return client


@pytest.mark.parametrize("name", TARGETS)
def test_handler_socket_requests_always_ack_a_known_shape(handler_world, name):
    app, known = handler_world
    peer = handler_peer(app)
    names = unknown_names if name == "unknown" else st.just(name)

    @fuzz_settings(HANDLER_EXAMPLES)
    @given(event=names, data=st.data())
    def run(event, data):
        args = data.draw(request_args(name, known))
        EXAMPLES[f"handler socket {name}"] += 1
        ack = peer.emit(event, *args, callback=True, namespace=NAMESPACE)
        check_request_ack(event, ack)
        OUTCOMES[f"handler socket {name}"][ack.get("error", {}).get("code", "ok")] += 1
        assert peer.is_connected(NAMESPACE), (event, args)
        assert peer.emit("ping", {}, callback=True, namespace=NAMESPACE)["ok"] is True

    try:
        run()
    finally:
        if peer.is_connected(NAMESPACE):
            peer.disconnect(NAMESPACE)


@fuzz_settings(HANDLER_EXAMPLES)
@given(auth=st.none() | json_values | st.fixed_dictionaries({"token": json_values | huge_text}))
def test_handler_connect_with_random_auth_is_refused(handler_app, auth):
    EXAMPLES["handler connect"] += 1
    socketio = handler_app.extensions["socketio"]
    client = socketio.test_client(handler_app, namespace=NAMESPACE, auth=auth)
    assert not client.is_connected(NAMESPACE), auth


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_handler_rest_never_5xx_and_errors_are_json(handler_world, endpoint):
    app, known = handler_world
    http = app.test_client()

    @fuzz_settings(HANDLER_EXAMPLES)
    @given(req=rest_requests(endpoint, known))
    def run(req):
        EXAMPLES[f"handler rest {endpoint}"] += 1
        headers = dict(req["auth"])
        if req["content_type"] is not None:
            headers["Content-Type"] = req["content_type"]
        path = req["path"]
        if FRESH in path:
            r = http.post("/api/jobs", json=FRESH_JOB, headers=bearer(token_for(FUZZER)))
            path = path.replace(FRESH, r.get_json()["job_id"])
        r = http.open(
            path,
            method=req["method"],
            query_string=req["query"],
            data=req["body"],
            headers=headers,
        )
        check_rest_response(r.status_code, r.content_type or "", r.get_data(), str(req)[:300])
        OUTCOMES[f"handler rest {endpoint}"][r.status_code] += 1
        assert http.get("/healthz").status_code == 200

    run()


# ================================================================ real server


@pytest.fixture(scope="module")
def live_world(fast_server):
    """The fuzzer's jobs (queued, running) and someone else's, on the real server."""
    known = []
    for owner, start in [(FUZZER, False), (FUZZER, True), ("victim", True), (FUZZER, True)]:
        r = requests.post(
            fast_server.url + "/api/jobs",
            json={"name": "j", "stages": ["a", "b"], "start": start},
            headers=bearer(token_for(owner)),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        known.append(r.json()["job_id"])
    return fast_server, [*known, uuid.uuid4().hex]


class LiveSocket:
    """The fuzzer's connection; replaced by a new one when the server drops it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = SocketClient(url, FUZZER)
        self.drops = 0

    def request(self, event: str, args: tuple) -> Any:
        return call_or_drop(self.client, event, *args, timeout=10)

    def reconnect(self) -> None:
        self.drops += 1
        discard(self.client)
        self.client = SocketClient(self.url, FUZZER)

    def close(self) -> None:
        discard(self.client)


def encoded_size(event: str, args: tuple) -> int:
    return len(json.dumps([event, *args]).encode())


@pytest.mark.server
@pytest.mark.parametrize("name", TARGETS)
def test_live_socket_requests_always_ack_or_drop_only_oversized(live_world, name):
    server, known = live_world
    sock = LiveSocket(server.url)
    names = unknown_names if name == "unknown" else st.just(name)

    @fuzz_settings(LIVE_EXAMPLES)
    @given(event=names, data=st.data())
    def run(event, data):
        args = data.draw(request_args(name, known))
        EXAMPLES[f"live socket {name}"] += 1
        ack = sock.request(event, args)
        if ack == DROPPED:
            # only a message beyond max_http_buffer_size may cost the connection
            assert encoded_size(event, args) > BUFFER - 512, (event, str(args)[:300])
            sock.reconnect()
        else:
            check_request_ack(event, ack)
        OUTCOMES[f"live socket {name}"][
            ack if ack == DROPPED else ack.get("error", {}).get("code", "ok")
        ] += 1
        assert sock.client.call("ping")["ok"] is True  # the next valid request

    try:
        run()
    finally:
        print(f"\n{name}: {sock.drops} oversized messages dropped their connection")
        sock.close()
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


@pytest.mark.server
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_live_rest_never_5xx_and_errors_are_json(live_world, endpoint):
    server, known = live_world
    session = requests.Session()
    probe = f"{server.url}/api/jobs/{known[0]}"

    @fuzz_settings(LIVE_EXAMPLES)
    @given(req=rest_requests(endpoint, known))
    def run(req):
        EXAMPLES[f"live rest {endpoint}"] += 1
        headers = dict(req["auth"])
        if req["content_type"] is not None:
            headers["Content-Type"] = req["content_type"]
        path = req["path"]
        if FRESH in path:
            r = session.post(
                server.url + "/api/jobs",
                json=FRESH_JOB,
                headers=bearer(token_for(FUZZER)),
                timeout=10,
            )
            path = path.replace(FRESH, r.json()["job_id"])
        url = server.url + path + ("?" + req["query"] if req["query"] else "")
        r = session.request(req["method"], url, data=req["body"], headers=headers, timeout=10)
        check_rest_response(
            r.status_code, r.headers.get("Content-Type", ""), r.content, str(req)[:300]
        )
        OUTCOMES[f"live rest {endpoint}"][r.status_code] += 1
        nxt = session.get(probe, headers=bearer(token_for(FUZZER)), timeout=10)
        assert nxt.status_code == 200, nxt.text

    try:
        run()
    finally:
        session.close()


# ------------------------------------------- crafted packets, and known bugs

DEEP = 10_000  # levels of nested lists: '[' * 10_000 (20 KB as JSON)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def spliced(template: dict, depth: int) -> bytes:
    """``template`` as JSON with its "@@" string replaced by ``depth`` nested lists."""
    return json.dumps(template).replace('"@@"', deep_json(depth)).encode()


def deep_bodies(known: list[str]) -> list[tuple[str, str, bytes]]:
    running = known[1]
    return [
        ("POST", "/api/jobs", deep_json(DEEP).encode()),
        ("POST", "/api/jobs", spliced({"name": "x", "stages": ["a"], "metadata": "@@"}, DEEP)),
        (
            "POST",
            f"/api/jobs/{running}/events",
            spliced({"type": "job_completed", "result": "@@"}, DEEP),
        ),
        ("POST", f"/api/jobs/{running}/cancel", deep_json(DEEP).encode()),
        ("POST", "/api/jobs", deep_json(2_000).encode()),
    ]


@pytest.mark.server
def test_live_deeply_nested_bodies_leave_the_server_up(live_world):
    server, known = live_world
    for method, path, body in deep_bodies(known):
        r = requests.request(
            method,
            server.url + path,
            data=body,
            headers={**bearer(token_for(FUZZER)), "Content-Type": "application/json"},
            timeout=10,
        )
        # whatever the status, the answer is a JSON error
        check_error_body(r.json(), HTTP_CODES)
        assert r.status_code >= 400
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    ok = requests.get(f"{server.url}/api/jobs/{known[0]}", headers=bearer(token_for(FUZZER)))
    assert ok.status_code == 200


@pytest.mark.server
def test_live_deeply_nested_bodies_are_refused_with_4xx(live_world):
    server, known = live_world
    statuses = []
    for method, path, body in deep_bodies(known):
        r = requests.request(
            method,
            server.url + path,
            data=body,
            headers={**bearer(token_for(FUZZER)), "Content-Type": "application/json"},
            timeout=10,
        )
        statuses.append((path, r.status_code, r.json().get("code")))
    assert all(status < 500 for _, status, _ in statuses), statuses


@pytest.mark.server
@pytest.mark.parametrize(
    "endpoint, body",
    [
        ("create", b'{"name": "\\ud800", "stages": ["a"]}'),
        ("create", b'{"name": "x", "stages": ["a"], "metadata": {"k": "\\udfff"}}'),
        ("ingest", b'{"type": "progress_update", "stage": "a", "message": "\\ud800"}'),
        ("cancel", b'{"reason": "\\ud83d"}'),
        # not even an escape: the bytes ED A0 80 (a UTF-8-encoded surrogate, invalid
        # UTF-8), which json.loads(bytes) decodes with "surrogatepass"
        ("cancel", b'{"reason": "\xed\xa0\x80"}'),
    ],
    ids=["create-name", "create-metadata", "ingest-message", "cancel-reason", "cancel-raw-bytes"],
)
def test_live_lone_surrogates_are_refused_with_4xx(fast_server, endpoint, body):
    headers = {**bearer(token_for(FUZZER)), "Content-Type": "application/json"}
    job_id = None
    if endpoint != "create":  # a queued job: cancelling it records job_cancelled at once
        job_id = requests.post(
            fast_server.url + "/api/jobs",
            json={"name": "s", "stages": ["a"], "start": endpoint == "ingest"},
            headers=headers,
            timeout=10,
        ).json()["job_id"]
    method, template = ENDPOINTS[endpoint]
    r = requests.request(
        method,
        fast_server.url + template.replace("{id}", job_id or ""),
        data=body,
        headers=headers,
        timeout=10,
    )
    assert requests.get(fast_server.url + "/healthz", timeout=5).status_code == 200
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    check_error_body(r.json(), HTTP_CODES)


@pytest.mark.server
def test_live_socket_cancel_with_lone_surrogate_acks_invalid_payload(fast_server):
    queued = requests.post(
        fast_server.url + "/api/jobs",
        json={"name": "s", "stages": ["a"]},
        headers=bearer(token_for(FUZZER)),
        timeout=10,
    ).json()["job_id"]
    client = SocketClient(fast_server.url, FUZZER)
    try:
        ack = client.call("cancel_job", {"job_id": queued, "reason": "\ud800"})
        check_ack(ack)
        assert client.call("ping")["ok"] is True
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    finally:
        client.close()


GARBAGE_PACKETS = [
    '["ping",{"a":NaN}]',
    '["ping",{"a":Infinity}]',
    '["join_job",{"job_id":"x","since":1e999}]',
    '["ping",{',
    "[]",
    '{"a":1}',
    "[5,{}]",
    '["ping",' + deep_json(5_000) + "]",
    '["ping","' + "x" * 20_000 + '"]',
]


@pytest.mark.server
def test_live_hand_made_packets_never_break_the_server(live_world):
    """Packets no Socket.IO client library would send: the connection either
    stays usable or is dropped, any ack is a well-formed error, and a new
    connection works."""
    server, _ = live_world
    client = SocketClient(server.url, FUZZER)
    acks: list[Any] = []
    try:
        for text in GARBAGE_PACKETS:
            acks.append(raw_call_nowait(client, text))
            if call_or_drop(client, "ping", {}) == DROPPED:
                assert len(text) > BUFFER - 512, text[:100]  # only an oversized one
                discard(client)
                client = SocketClient(server.url, FUZZER)
            assert client.call("ping")["ok"] is True
        for box in acks:
            for ack in box:
                check_ack(ack)
                assert ack["ok"] is False, ack
    finally:
        discard(client)
    # an invalid UTF-8 text frame: the websocket layer may close the connection
    client = SocketClient(server.url, FUZZER)
    try:
        client.sio.eio.ws.send(b'42/progress,1["ping",{"a":"\xff"}]', websocket.ABNF.OPCODE_TEXT)
        fresh = SocketClient(server.url, FUZZER)
        assert fresh.call("ping")["ok"] is True
        fresh.close()
    finally:
        discard(client)
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def raw_call_nowait(client: SocketClient, text: str) -> list:
    """Send a hand-made packet with an ack id; return a list that the ack (if
    any ever comes) is appended to. The next request's ack bounds the wait."""
    box: list = []
    ack_id = client.sio._generate_ack_id(NAMESPACE, lambda *a: box.append(a[0] if a else None))
    client.sio.eio.send(f"2{NAMESPACE},{ack_id}{text}")
    return box


@pytest.mark.server
def test_live_deeply_nested_socket_payload_acks_invalid_payload(live_world):
    server, _ = live_world
    client = SocketClient(server.url, FUZZER)
    try:
        ack = raw_call(client, '["join_job",' + deep_json(2_000) + "]", timeout=2)
        assert ack != DROPPED
        check_ack(ack)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    finally:
        client.close()
