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

from flask.json.provider import DefaultJSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def loads(s: str | bytes, **kwargs: Any) -> Any:
    """``json.loads`` that refuses NaN, Infinity and overflowing numbers.

    Every refusal is a ``json.JSONDecodeError``, which callers already turn
    into "malformed JSON".
    """
    kwargs.setdefault("parse_constant", _no_constant)
    kwargs.setdefault("parse_float", _finite_float)
    try:
        return json.loads(s, **kwargs)
    except json.JSONDecodeError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        doc = s if isinstance(s, str) else s.decode("utf-8", "replace")
        raise json.JSONDecodeError(str(exc), doc, 0) from None


def dumps(obj: Any, **kwargs: Any) -> str:
    kwargs.setdefault("allow_nan", False)
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(obj, **kwargs)


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
