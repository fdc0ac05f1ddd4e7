"""transport/frames.py writes the frames eventlet's own websocket would, and
reads the frames a client writes as wsproto does."""

from __future__ import annotations

import pytest
from eventlet.websocket import RFC6455WebSocket

from progresscast.flask.transport.frames import (
    CLOSE_FRAME,
    FRAGMENT_COST,
    FrameReader,
    MessageTooLarge,
    ProtocolError,
    packet_frame,
    text_frame,
    unmask,
)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
def test_text_frame_matches_eventlet_framing(size):
    text = ("é" * size)[: max(0, size // 2)] + "x" * (size - max(0, size // 2))
    eventlet_ws = RFC6455WebSocket(None, {}, 13)
    assert text_frame(text.encode()) == eventlet_ws._pack_message(text)


@pytest.mark.parametrize("size", [0, 100, 70_000])
def test_binary_packets_get_binary_frames(size):
    data = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    eventlet_ws = RFC6455WebSocket(None, {}, 13)
    assert packet_frame(data) == eventlet_ws._pack_message(data)
    assert packet_frame("4hello") == eventlet_ws._pack_message("4hello")


def test_an_event_holding_bytes_cannot_take_the_json_only_path():
    # progresscast/flask/batching.py encodes broadcasts with binary=False (no search for
    # bytes) and relies on this TypeError to hand bytes to python-socketio.
    from socketio import packet

    from progresscast.flask.jsonutil import TolerantPacket

    plain = TolerantPacket(packet.EVENT, namespace="/progress", data=["e", {"n": 1}], binary=False)
    assert plain.encode() == '2/progress,["e",{"n":1}]'
    with pytest.raises(TypeError):
        TolerantPacket(
            packet.EVENT, namespace="/progress", data=["e", {"b": b"\x00"}], binary=False
        ).encode()


# -- reading: FrameReader against the frames wsproto's client writes ---------


def client_frames(*events) -> bytes:
    """What a websocket client (wsproto, masking as RFC 6455 requires) sends."""
    from wsproto.connection import Connection, ConnectionType

    client = Connection(ConnectionType.CLIENT)
    return b"".join(client.send(event) for event in events)


def feed_in_pieces(reader: FrameReader, data: bytes, size: int):
    messages, replies = [], []
    for at in range(0, len(data), size):
        got, pongs = reader.feed(data[at : at + size])
        messages += got
        replies += pongs
    return messages, replies


@pytest.mark.parametrize(
    "size, piece",
    [(size, piece) for size in (0, 1, 125, 126, 65535, 65536) for piece in (1, 3, 7, 65536)]
    + [(200_000, 7), (200_000, 65536)],
)
def test_reader_reads_text_and_binary_messages_of_every_length_however_split(size, piece):
    from wsproto.events import BytesMessage, TextMessage

    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    data = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    wire = client_frames(TextMessage(text), BytesMessage(data), TextMessage("2probe"))
    reader = FrameReader(10**7)
    messages, replies = feed_in_pieces(reader, wire, piece)
    assert messages == [text, data, "2probe"]
    assert type(messages[0]) is str and type(messages[1]) is bytes
    assert replies == [] and not reader.closed and reader.buffer == b""


def test_reader_joins_fragments_and_answers_pings_sent_between_them():
    from wsproto.events import CloseConnection, Ping, TextMessage

    wire = client_frames(
        TextMessage("42/progress,1", message_finished=False),
        Ping(b"are you there"),
        TextMessage('["ping"]', message_finished=False),
        TextMessage(""),
        TextMessage("after"),
        CloseConnection(1000),
    )
    reader = FrameReader(1000)
    messages, replies = reader.feed(wire + masked_frame(0x81, b"never read"))
    assert messages == ['42/progress,1["ping"]', "after"]
    assert replies == [text_frame(b"are you there", 0xA)]  # the pong, unmasked
    assert reader.closed and reader.error is None
    assert reader.feed(client_frames(TextMessage("later"))) == ([], [])


def masked_frame(first: int, payload: bytes, mask=b"\x01\x02\x03\x04", length=None) -> bytes:
    n = len(payload) if length is None else length
    head = bytes([first])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    "bad, why",
    [
        (b"\x81\x05hello", "must be masked"),
        (masked_frame(0xC1, b"x"), "reserved bits"),  # RSV1: compression never negotiated
        (masked_frame(0x83, b"x"), "unknown opcode"),
        (masked_frame(0x8B, b"x"), "unknown opcode"),
        (masked_frame(0x80, b"x"), "no message to continue"),
        (masked_frame(0x09, b"x"), "control frame"),  # a fragmented ping
        (masked_frame(0x89, b"x" * 126), "control frame"),
        (masked_frame(0x81, b"\xff\xfe"), "not UTF-8"),
        (masked_frame(0x01, b"a") + masked_frame(0x81, b"b"), "before the last one ended"),
        (b"\x81\xfe\x00\x05" + b"\x00" * 9, "shortest form"),  # 5 in the 16-bit form
        (b"\x81\xff" + (65_535).to_bytes(8, "big"), "shortest form"),  # fits in 16 bits
        (b"\x81\xff" + (2**63 + 5).to_bytes(8, "big"), "shortest form"),  # the top bit
        (masked_frame(0x88, b"\x03"), "one-byte body"),
        (masked_frame(0x88, (999).to_bytes(2, "big")), "may not be sent"),
        (masked_frame(0x88, (1005).to_bytes(2, "big")), "may not be sent"),
        (masked_frame(0x88, (1000).to_bytes(2, "big") + b"\xff"), "reason is not UTF-8"),
    ],
)
def test_reader_refuses_what_rfc6455_forbids_after_the_messages_before_it(bad, why):
    reader = FrameReader(1000)
    messages, _ = reader.feed(masked_frame(0x81, b"first") + bad + masked_frame(0x81, b"later"))
    assert messages == ["first"]
    assert reader.closed and isinstance(reader.error, ProtocolError)
    assert why in str(reader.error)


def test_the_close_code_answers_the_kind_of_error():
    for wire, code in (
        (masked_frame(0x81, b"\xff"), 1007),  # text that is not UTF-8
        (b"\x81\x05hello", 1002),  # unmasked
        (masked_frame(0x81, b"x" * 11), 1009),  # over the limit
    ):
        reader = FrameReader(10)
        reader.feed(wire)
        assert reader.closed and reader.error.code == code
        assert reader.closing_frame() == b"\x88\x02" + code.to_bytes(2, "big")
    reader = FrameReader(10)
    assert reader.feed(masked_frame(0x88, (4000).to_bytes(2, "big") + "bye ✓".encode()))
    assert reader.closed and reader.error is None  # a valid close from the client
    assert reader.closing_frame() == CLOSE_FRAME


def test_empty_fragments_count_against_the_limit():
    # A client sending endless empty continuation frames held memory for ever
    # (found in review): each fragment costs FRAGMENT_COST besides its bytes.
    reader = FrameReader(100_000)
    wire = masked_frame(0x01, b"") + masked_frame(0x00, b"") * (100_000 // FRAGMENT_COST + 1)
    assert reader.feed(wire) == ([], [])
    assert reader.closed and isinstance(reader.error, MessageTooLarge)


def test_a_large_message_in_small_pieces_is_parsed_once_it_is_all_there():
    reader = FrameReader(10**7)
    wire = masked_frame(0x82, bytes(range(256)) * 4096)  # 1 MiB, 14 bytes of header
    assert reader.feed(wire[:14]) == ([], [])
    assert reader.need == len(wire)  # nothing is parsed again until then
    for at in range(14, len(wire) - 200, 200):
        assert reader.feed(wire[at : at + 200]) == ([], [])
    (message,), _ = reader.feed(wire[at + 200 :])
    assert message == bytes(range(256)) * 4096 and reader.buffer == b"" and reader.need == 2


def test_reader_refuses_a_message_over_the_limit_from_its_header_alone():
    reader = FrameReader(100)
    assert reader.feed(masked_frame(0x81, b"x" * 100)) == (["x" * 100], [])
    # the frame announces 2**40 bytes: refused before any of them arrive
    reader.feed(masked_frame(0x81, b"", length=2**40)[:14])
    assert reader.closed and isinstance(reader.error, MessageTooLarge)
    # fragments count together
    reader = FrameReader(200)
    messages, _ = reader.feed(masked_frame(0x01, b"x" * 60) + masked_frame(0x80, b"x" * 90))
    assert messages == [] and isinstance(reader.error, MessageTooLarge)


def test_unmask_is_rfc6455s_xor():
    mask = b"\x37\xfa\x21\x3d"
    data = bytes(range(256)) * 3 + b"tail"
    assert unmask(mask, data) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert unmask(mask, b"") == b""
