"""schemathesis against the real server's /api/openapi.json.

Every generated case is sent twice, with a normal user's bearer token and
with a service token (which may create jobs for other owners and post to any
job), and every response must be no 5xx, a status the schema documents, and
a body that matches the schema. The server runs with raised HTTP rate limits
so a 429 never stands in for the real answer.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness import token_for

from .support import bearer, build_app

# serial: schemathesis gives every operation's item the same node id, and
# pytest-xdist then runs only the first; make test runs this file on its own.
pytestmark = [pytest.mark.server, pytest.mark.serial]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 40  # per operation (6 operations), each sent with two tokens (was 60: CI's time)
CALLS: Counter[str] = Counter()


def served_spec() -> dict:
    """The OpenAPI document, as an app built from the same code serves it.

    schemathesis' lazy ``from_fixture`` loader does not work with this pytest
    (it sets ``request.node._nodeid``, which this pytest's test items lack), and a schema loaded
    at import time cannot come from a server started by a fixture; so cases
    are generated from this document, sent to the real server, and
    ``test_real_server_serves_the_same_schema`` checks the two are the same.
    """
    app = build_app()
    try:
        response = app.test_client().get("/api/openapi.json")
        assert response.status_code == 200
        return response.get_json()
    finally:
        app.extensions["progresscast"].tracker.store.close()


SPEC = served_spec()
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def api_server(fast_server):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail(
            "under pytest-xdist only the first operation would be tested: run this file"
            " without -n (make test does)",
            pytrace=False,
        )
    # jobs for the listing to return (generated ids are random: 404, documented)
    for owner, start in [("schemathesis", True), ("schemathesis", False)]:
        r = requests.post(
            fast_server.url + "/api/jobs",
            json={"name": "seed", "stages": ["a", "b"], "start": start},
            headers=bearer(token_for(owner)),
            timeout=10,
        )
        assert r.status_code == 201, r.text
    yield fast_server
    print("\nschemathesis calls per operation:", dict(sorted(CALLS.items())))
    print("schemathesis total calls:", CALLS.total())


def test_real_server_serves_the_same_schema(api_server):
    served = requests.get(api_server.url + "/api/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == SPEC


TOKENS = {
    "user": bearer(token_for("schemathesis")),
    "service": bearer(token_for("pipeline", service=True)),
}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, api_server):
    for who, headers in TOKENS.items():
        CALLS[f"{case.operation.method.upper()} {case.operation.path} ({who})"] += 1
        case.call_and_validate(base_url=api_server.url, headers=headers, checks=CHECKS)
