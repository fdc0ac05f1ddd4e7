"""Strict JSON for everything that enters and leaves the server.

Python's json accepts ``NaN``, ``Infinity`` and numbers that overflow to
infinity, and writes them back out; browsers' ``JSON.parse`` rejects them, so
one bad post could break every page watching that job. Here they are refused
on the way in (400 / ``invalid_payload``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider
from socketio.packet import BINARY_EVENT, CONNECT, EVENT, Packet
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from progresscast import jsoncodec


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


_STRICT = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
#: arrays and objects nested deeper than this are refused: orjson reads up to
#: 1,024 levels, but Python's json (the encoder's fallback) and every
#: recursive walk give up near 1,000 with a RecursionError
MAX_NESTING = 512


def loads(s: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` that refuses what a browser could not read back.

    NaN, Infinity, numbers that overflow, invalid UTF-8, lone surrogates
    (``"\\ud800"``: not Unicode, and SQLite cannot store them) and nesting so
    deep that it exhausts the parser's recursion. Every refusal is a
    ``json.JSONDecodeError``, which callers already answer as malformed JSON.
    """
    # Every event from the message queue (each instance decodes every one,
    # docs/deployment.md) and every socket request comes this way. orjson
    # refuses all that this refuses, in C, but reads integers beyond 64 bits
    # as floats: text that may hold one takes the standard library's path.
    if not kwargs and not jsoncodec.may_hold_long_int(s):
        try:
            value = orjson.loads(s)
        except orjson.JSONDecodeError:
            pass  # refused: the path below says why, in the same words as before
        else:
            _check_nesting(s, value)
            return value
    try:
        text = s.decode("utf-8") if isinstance(s, bytes | bytearray) else s
        if kwargs:
            kwargs.setdefault("parse_constant", _no_constant)
            kwargs.setdefault("parse_float", _finite_float)
            value = json.loads(text, **kwargs)
        else:  # json.loads with any argument builds a decoder per call
            value = _STRICT.decode(text)
        _check_nesting(text, value)
        if "\\u" in text or not text.isascii():
            # Surrogates can only come from escapes or surrogatepass bytes.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except json.JSONDecodeError:
        raise
    except (ValueError, UnicodeError, RecursionError) as exc:
        doc = s if isinstance(s, str) else bytes(s).decode("utf-8", "replace")
        message = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise json.JSONDecodeError(message[:200], doc[:200], 0) from None


def _check_nesting(s: str | bytes, value: Any) -> None:
    # Counting brackets is one pass in C; only text with that many walks the value.
    opened = s.count("[") + s.count("{") if isinstance(s, str) else s.count(b"[") + s.count(b"{")
    if opened > MAX_NESTING and _depth(value) > MAX_NESTING:
        doc = s if isinstance(s, str) else bytes(s).decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply", doc[:200], 0)


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def dumps(obj: Any, **kwargs: Any) -> str:
    """Compact JSON (orjson), whatever formatting the caller asks for:
    python-socketio only ever asks for compact separators."""
    return jsoncodec.dumps(obj)


class StrictParser(FlaskParser):
    """webargs' Flask parser (used by flask-smorest), parsing JSON strictly."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        return loads(req.get_data(cache=True))


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, parsing strictly."""

    sort_keys = False  # keep snapshots in protocol order

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s, **kwargs)


class SocketJSON:
    """The ``json`` module python-socketio encodes and decodes packets with."""

    loads = staticmethod(loads)
    dumps = staticmethod(dumps)


#: the event name a client message stands for when it cannot be decoded
MALFORMED = "malformed_request"


class TolerantPacket(Packet):
    """Socket.IO packets whose undecodable payloads still get an answer.

    python-socketio drops a packet whose JSON does not parse (so the client
    waits for its ack until it times out) and fails on an event that is not
    ``[name, ...]``. Here such an event becomes ``[MALFORMED, reason]`` with
    its namespace and ack id kept, and the namespace acks ``invalid_payload``.
    A connect whose auth cannot be decoded is refused (its auth is not an object).
    """

    json = SocketJSON

    @classmethod
    def data_is_binary(cls, data):
        # python-socketio walks the whole payload in Python looking for
        # bytes, for every ack: a join_job ack resuming 50 events took
        # longer to walk than to build. orjson (jsoncodec) refuses bytes,
        # so one C pass says "none"; only then is the walk needed.
        try:
            jsoncodec.dumps(data)
        except TypeError:
            return super().data_is_binary(data)
        return False

    def decode(self, encoded_packet):
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, RecursionError) as exc:
            if self.packet_type == CONNECT:
                # e.g. auth 0: encoded "0/ns,0", the 0 read back as an ack id
                # and nothing left to decode; the connect is refused instead.
                self.data = MALFORMED
                return 0
            if self.packet_type not in (EVENT, BINARY_EVENT):
                raise
            self.data = [MALFORMED, f"undecodable payload: {str(exc)[:200]}"]
            return 0
        if self.packet_type == EVENT and not (
            isinstance(self.data, list) and self.data and isinstance(self.data[0], str)
        ):
            self.data = [MALFORMED, "an event is a JSON array: [name, payload]"]
        return attachments
