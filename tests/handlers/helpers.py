"""Constants and the Socket.IO client wrapper shared by the handler tests.

The Flask-SocketIO test client runs handlers synchronously (``async_handlers``
off) and the tracker emits in the caller's thread, so events normally arrive
at once; :meth:`Peer.wait_until` still waits on a bounded condition, never a
fixed delay.

A test that must show an event did *not* arrive uses a sentinel: it drives
one more event that the client *does* receive and waits for it. One server
delivers events in the order it emits them, so anything that was going to
arrive before the sentinel is in the inbox by then.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from progresscast.tokens import issue_token
from tests.protocol_spec import (
    EVENT_EXTRA_KEYS,
    EVENT_KEYS,
    ISO_MS_Z,
    SNAPSHOT_KEYS,
    STAGE_KEYS,
)

__all__ = ["EVENT_EXTRA_KEYS", "EVENT_KEYS", "SNAPSHOT_KEYS", "STAGE_KEYS"]

NS = "/progress"
WAIT = 2.0  # seconds: upper bound of every wait
POLL = 0.002  # seconds between two checks of a bounded wait

STAGES = [{"name": "parsing", "weight": 1}, {"name": "analyzing", "weight": 3}]


def parse_iso_ms(text: str) -> datetime:
    assert ISO_MS_Z.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


#: the apps under test sign tokens with this (a fresh one per test session)
TEST_SECRET = secrets.token_urlsafe(48)


def token_for(user: str, **claims: Any) -> str:
    """A valid token for ``user`` (``admin=``, ``service=``, ``jobs=``, ``ttl=``)."""
    return issue_token(TEST_SECRET, user, **claims)


def as_user(user: str, **claims: Any) -> dict[str, str]:
    """HTTP headers authenticating as ``user``."""
    return {"Authorization": f"Bearer {token_for(user, **claims)}"}


def seqs(events: list[dict[str, Any]], job_id: str | None = None) -> list[int]:
    return [e["seq"] for e in events if job_id is None or e["job_id"] == job_id]


def assert_event_shape(event: dict[str, Any]) -> None:
    """The event carries DESIGN §4's common and type-specific fields."""
    assert EVENT_KEYS | EVENT_EXTRA_KEYS[event["type"]] <= set(event), event
    assert isinstance(event["seq"], int) and event["seq"] >= 1
    assert ISO_MS_Z.match(event["ts"]), event["ts"]


def assert_error(body: Any, code: str) -> dict[str, Any]:
    """``body`` is the protocol's error object ``{code, message, details?}``."""
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert set(body) <= {"code", "message", "details"}, body
    if "details" in body:
        assert isinstance(body["details"], dict), body
    return body


def assert_error_ack(ack: Any, code: str) -> dict[str, Any]:
    """``ack`` is ``{ok: false, error: {code, message, details?}}``; returns the error."""
    assert isinstance(ack, dict) and ack.get("ok") is False and set(ack) == {"ok", "error"}, ack
    return assert_error(ack["error"], code)


def strict_json(text: str | bytes) -> Any:
    """Parse RFC 8259 JSON: NaN, Infinity and out-of-range numbers are errors."""

    def reject(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    def finite(token: str) -> float:
        value = float(token)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"number out of range: {token}")
        return value

    return json.loads(text, parse_constant=reject, parse_float=finite)


class Peer:
    """A Socket.IO test client on ``/progress`` with request and inbox helpers."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.inbox: list[dict[str, Any]] = []  # job events received, oldest first

    @property
    def connected(self) -> bool:
        return self.raw.is_connected(NS)

    def request(self, event: Any, *args: Any) -> Any:
        """Emit ``event`` with ``args``; return the server's ack."""
        return self.raw.emit(event, *args, callback=True, namespace=NS)

    def ok(self, event: str, *args: Any) -> dict[str, Any]:
        """A request that must succeed; returns its ack."""
        ack = self.request(event, *args)
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
        return ack

    def drain(self) -> list[dict[str, Any]]:
        """Move what arrived into the inbox; return the inbox."""
        for pkt in self.raw.get_received(NS):
            assert len(pkt["args"]) == 1, pkt
            payload = pkt["args"][0]
            assert payload["type"] == pkt["name"], pkt  # `type` is the event name
            self.inbox.append(payload)
        return self.inbox

    def wait_until(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = WAIT
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate(inbox)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.drain()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; inbox: {self.inbox}")
            time.sleep(POLL)
        return self.inbox

    def wait_for(self, job_id: str, seq: int) -> list[dict[str, Any]]:
        """Wait for event ``seq`` of ``job_id``; return and clear everything
        received up to and including it."""

        def is_it(event: dict[str, Any]) -> bool:
            return event["job_id"] == job_id and event["seq"] == seq

        self.wait_until(lambda inbox: any(map(is_it, inbox)))
        end = next(i for i, e in enumerate(self.inbox) if is_it(e)) + 1
        received, self.inbox = self.inbox[:end], self.inbox[end:]
        return received
