"""Websocket frames (RFC 6455 §5.2) the server writes itself.

Server frames are never masked, so building one is a header and the data;
a broadcast builds its frame once for every client (connection.broadcast).
"""

from __future__ import annotations

import struct


def text_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final websocket frame holding ``data``: text by default,
    ``opcode=0x2`` for binary."""
    n = len(data)
    first = 0x80 | opcode
    if n <= 125:
        return struct.pack("!BB", first, n) + data
    if n <= 0xFFFF:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


def packet_frame(encoded: str | bytes) -> bytes:
    """The websocket frame of an encoded Engine.IO packet (binary ones are bytes)."""
    if isinstance(encoded, bytes):
        return text_frame(encoded, 0x2)
    return text_frame(encoded.encode())


CLOSE_FRAME = b"\x88\x02\x03\xe8"  # websocket close, status 1000
