"""JSON encoding for what progresscast stores and sends, with orjson.

Every progress update is encoded three times: the job's state and the event
for the store, and the Socket.IO packet for the watchers. The standard
library's encoder took about a tenth of a server's time per update
(docs/benchmarks.md); orjson does the same work in a fraction of it.

Output is compact (no spaces) and UTF-8 text, as before. What orjson refuses
(integers beyond 64 bits, non-string keys) goes through the standard library
instead, so anything that encoded before still encodes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> str:
    """``obj`` as compact JSON text."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _fallback(obj)


def dumpb(obj: Any) -> bytes:
    """``obj`` as compact JSON, UTF-8 bytes (:func:`dumps` without the
    round trip through ``str``, for what goes straight onto a socket)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _fallback(obj).encode()


#: digits as b"0", everything else as b" ": a run of 19 digits is then a
#: plain substring search, in C (a regex tried at every position cost three
#: times orjson's decoding of a job's state)
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_RUN = b"0" * 19
#: what may come just after a run of digits that is part of a float
_FLOAT_TAIL = frozenset(b".eE")


def may_hold_long_int(text: str | bytes) -> bool:
    """Whether JSON ``text`` may hold an integer beyond 64 bits, which
    orjson reads as a float: such text takes the standard library's path.

    That is a run of 19 digits or more that is not a float's fraction (after
    a ``.``) nor its integer part (before ``.``, ``e`` or ``E``). Digits in a
    string count too: a false alarm only costs the slower decoder. Floats
    such as ``0.0004525184631347656`` are common in a job's state (ETA
    paces), so each run is judged by its two neighbours, in C, rather than
    by a regex that would be tried at every position of the text.
    """
    # bytearray, memoryview: what orjson also reads
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    digits = raw.translate(_DIGITS)
    start = digits.find(_RUN)
    while start != -1:  # the first match is where a run starts
        end = digits.find(b" ", start)
        if end == -1:
            end = len(raw)
        fraction = start > 0 and raw[start - 1] == 0x2E  # after a "."
        integer_part = end < len(raw) and raw[end] in _FLOAT_TAIL
        if not (fraction or integer_part):
            return True
        start = digits.find(_RUN, end)
    return False


def loads(text: str | bytes) -> Any:
    """What :func:`dumps` wrote (or any JSON), decoded with orjson: the
    stores read a job's state on every request about it. Text holding an
    integer of 19 digits or more (beyond 64 bits, orjson reads a float) goes
    through the standard library, as does what orjson refuses."""
    if not isinstance(text, (str, bytes)):
        text = bytes(text)  # a memoryview, which json.loads does not take
    if not may_hold_long_int(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
