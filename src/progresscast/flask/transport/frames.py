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


def close_frame(code: int) -> bytes:
    """A websocket close frame with status ``code`` and no reason."""
    return b"\x88\x02" + code.to_bytes(2, "big")


CLOSE_FRAME = close_frame(1000)  # a normal closure


class ProtocolError(ValueError):
    """The client broke RFC 6455: the connection ends, with close ``code``
    (1002 protocol error; 1007 for text that is not UTF-8)."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class MessageTooLarge(ValueError):
    """A message (or the frame announcing it) is over the size limit."""

    code = 1009  # RFC 6455 §7.4.1: message too big


#: what a fragment counts against the size limit besides its payload, so
#: that a client cannot hold memory with endless empty fragments
FRAGMENT_COST = 64
#: close status codes a client may send (RFC 6455 §7.4; 1004-1006 and 1015
#: never go on the wire), and the range for libraries and applications
_CLOSE_CODES = frozenset(range(1000, 1015)) - {1004, 1005, 1006}


class FrameReader:
    """The websocket messages in what a client sends (RFC 6455 §5).

    Client frames are masked, a message may come in fragments, and control
    frames (ping, pong, close) may arrive between the fragments. wsproto
    does all of this too, at about 19 µs a message, a sixth of what a small
    request costs the server; this does it in about 2 µs. No extension is
    ever negotiated on the connections that use it, so any RSV bit is an
    error.

    :meth:`feed` returns the complete messages (``str`` for text, ``bytes``
    for binary) and the frames to send back (pongs). ``closed`` is set once
    the client's close frame arrived, or the client broke the protocol or
    the size limit: then ``error`` (a :class:`ProtocolError` or a
    :class:`MessageTooLarge`, with the close code to answer) says how. The
    messages before that are still returned; nothing after it is read.

    Bytes wait in one buffer until a whole frame can be there (``need``),
    so a large message arriving in small pieces is parsed once, not once
    per piece; fragments are joined in one ``bytearray`` as they come.
    """

    __slots__ = (
        "binary",
        "buffer",
        "closed",
        "error",
        "fragmented",
        "max_message",
        "message",
        "message_cost",
        "need",
    )

    def __init__(self, max_message: int) -> None:
        self.buffer = bytearray()  # bytes not parsed yet
        self.need = 2  # how many the buffer must hold before the next parse
        self.message = bytearray()  # the fragments of a message not complete yet
        self.message_cost = 0  # what they count against max_message
        self.fragmented = False  # a message has begun and not ended
        self.binary = False  # the opcode of that message
        self.max_message = max_message
        self.closed = False
        self.error: ProtocolError | MessageTooLarge | None = None

    def closing_frame(self) -> bytes:
        """The close frame the server ends with: a normal closure, or the
        code of the error that ended the connection (1002, 1007, 1009)."""
        return CLOSE_FRAME if self.error is None else close_frame(self.error.code)

    def feed(self, data: bytes) -> tuple[list[str | bytes], list[bytes]]:
        messages: list[str | bytes] = []
        replies: list[bytes] = []
        if self.closed:
            return messages, replies
        self.buffer += data
        if len(self.buffer) >= self.need:
            try:
                self._parse(messages, replies)
            except (ProtocolError, MessageTooLarge) as exc:
                self.error, self.closed = exc, True
                self.buffer.clear()
        return messages, replies

    def _parse(self, messages: list, replies: list) -> None:
        buf = bytes(self.buffer)
        pos, end = 0, len(buf)
        need = 2
        while not self.closed:
            if end - pos < 2:
                need = 2
                break
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolError("reserved bits set with no extension negotiated")
            if not b1 & 0x80:
                raise ProtocolError("client frames must be masked")
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if end - head < 2:
                    need = 4
                    break
                length, head = int.from_bytes(buf[head : head + 2], "big"), head + 2
                if length < 126:
                    raise ProtocolError("frame length not in its shortest form")
            elif length == 127:
                if end - head < 8:
                    need = 10
                    break
                length, head = int.from_bytes(buf[head : head + 8], "big"), head + 8
                if length < 0x10000 or length >> 63:
                    raise ProtocolError("frame length not in its shortest form")
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise ProtocolError("fragmented or over-long control frame")
            elif self.message_cost + length > self.max_message:
                raise MessageTooLarge(f"message over {self.max_message} bytes")
            if end - head < 4 + length:
                need = head + 4 + length - pos
                break
            payload = unmask(buf[head : head + 4], buf[head + 4 : head + 4 + length])
            pos = head + 4 + length
            if opcode >= 0x8:  # control: whole, short, may come between fragments
                if opcode == 0x9:
                    replies.append(text_frame(payload, 0xA))  # pong with the same data
                elif opcode == 0x8:
                    _check_close(payload)
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
                self.message += payload
                self.message_cost += length + FRAGMENT_COST
                self.fragmented = True
                continue
            if self.fragmented:
                self.message += payload
                payload = bytes(self.message)
                self.message.clear()
                self.message_cost, self.fragmented = 0, False
            if self.binary:
                messages.append(payload)
            else:
                try:
                    messages.append(payload.decode())
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not UTF-8", 1007) from None
        del self.buffer[:pos]
        self.need = need


def _check_close(payload: bytes) -> None:
    """A close frame's body: nothing, or a status code and a UTF-8 reason."""
    if not payload:
        return
    if len(payload) == 1:
        raise ProtocolError("close frame with a one-byte body")
    code = int.from_bytes(payload[:2], "big")
    if code not in _CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(f"close status {code} may not be sent")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not UTF-8", 1007) from None


def unmask(mask: bytes, data: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (one big-integer XOR)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
