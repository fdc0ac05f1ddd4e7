"""transport/frames.py writes the frames eventlet's own websocket would."""

from __future__ import annotations

import pytest
from eventlet.websocket import RFC6455WebSocket

from progresscast.flask.transport.frames import packet_frame, text_frame


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
