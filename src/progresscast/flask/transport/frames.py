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


class ProtocolError(ValueError):
    """The client broke RFC 6455: the connection ends."""


class MessageTooLarge(ValueError):
    """A message (or the frame announcing it) is over the size limit."""


class FrameReader:
    """The websocket messages in what a client sends (RFC 6455 §5).

    Client frames are masked, a message may come in fragments, and control
    frames (ping, pong, close) may arrive between the fragments. wsproto
    does all of this too, at about 19 µs a message, a sixth of what a small
    request costs the server; this does it in about 2 µs. No extension is ever negotiated on
    the connections that use it, so any RSV bit is an error.

    :meth:`feed` returns the complete messages (``str`` for text, ``bytes``
    for binary) and the frames to send back (pongs). ``closed`` is set once
    the client's close frame arrived, or the client broke the protocol or
    the size limit: then ``error`` (a :class:`ProtocolError` or a
    :class:`MessageTooLarge`) says how. The messages before that are still
    returned; nothing after it is read.
    """

    __slots__ = (
        "binary",
        "buffer",
        "closed",
        "error",
        "fragmented",
        "max_message",
        "part_bytes",
        "parts",
    )

    def __init__(self, max_message: int) -> None:
        self.buffer = b""  # bytes of a frame not complete yet
        self.parts: list[bytes] = []  # fragments of a message not complete yet
        self.part_bytes = 0
        self.fragmented = False  # a message has begun and not ended
        self.binary = False  # the opcode of the message in parts
        self.max_message = max_message
        self.closed = False
        self.error: ValueError | None = None

    def feed(self, data: bytes) -> tuple[list[str | bytes], list[bytes]]:
        messages: list[str | bytes] = []
        replies: list[bytes] = []
        if self.closed:
            return messages, replies
        try:
            self._parse(self.buffer + data if self.buffer else data, messages, replies)
        except (ProtocolError, MessageTooLarge) as exc:
            self.error, self.closed, self.buffer = exc, True, b""
        return messages, replies

    def _parse(self, buf: bytes, messages: list, replies: list) -> None:
        pos, end = 0, len(buf)
        while not self.closed and end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolError("reserved bits set with no extension negotiated")
            if not b1 & 0x80:
                raise ProtocolError("client frames must be masked")
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length, head = int.from_bytes(buf[head : head + 2], "big"), head + 2
            elif length == 127:
                if end - head < 8:
                    break
                length, head = int.from_bytes(buf[head : head + 8], "big"), head + 8
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise ProtocolError("fragmented or over-long control frame")
            elif self.part_bytes + length > self.max_message:
                raise MessageTooLarge(f"message over {self.max_message} bytes")
            if end - head < 4 + length:
                break
            payload = unmask(buf[head : head + 4], buf[head + 4 : head + 4 + length])
            pos = head + 4 + length
            if opcode >= 0x8:  # control: whole, short, may come between fragments
                if opcode == 0x9:
                    replies.append(text_frame(payload, 0xA))  # pong with the same data
                elif opcode == 0x8:
                    self.closed = True
                elif opcode != 0xA:
                    raise ProtocolError(f"unknown opcode {opcode:#x}")
                continue
            if opcode == 0x0:
                if not self.fragmented:
                    raise ProtocolError("continuation frame with no message to continue")
            elif opcode in (0x1, 0x2):
                if self.fragmented:
                    raise ProtocolError("new message before the last one ended")
                self.binary = opcode == 0x2
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            if not fin:
                self.parts.append(payload)
                self.part_bytes += length
                self.fragmented = True
                continue
            if self.fragmented:
                payload = b"".join([*self.parts, payload])
                self.parts, self.part_bytes, self.fragmented = [], 0, False
            if self.binary:
                messages.append(payload)
            else:
                try:
                    messages.append(payload.decode())
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not UTF-8") from None
        self.buffer = buf[pos:] if pos < end else b""


def unmask(mask: bytes, data: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (one big-integer XOR)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
