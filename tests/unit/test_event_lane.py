"""The event lane (progresscast/flask/event_lane.py) answers every message
exactly as python-socketio does.

Two real python-socketio servers with progresscast's packet class get the
same messages: one through the lane, one through python-socketio's own
``_handle_eio_message``. What their namespaces are called with, what they
send back and what they raise must be the same, message by message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import socketio
from hypothesis import given, settings
from hypothesis import strategies as st

from progresscast.flask import event_lane
from progresscast.flask.jsonutil import SocketJSON, TolerantPacket

NAMESPACE = "/progress"


class Recorder(socketio.Namespace):
    """Answers by event name, recording each call."""

    def __init__(self, namespace: str, calls: list) -> None:
        super().__init__(namespace)
        self.calls = calls

    def trigger_event(self, event, *args):
        self.calls.append((event, *args))
        if event == "none":
            return None
        if event == "tuple":
            return (1, "two")
        if event == "bytes":
            return {"blob": b"\x00\x01"}
        if event == "unhandled":
            return self.server.not_handled
        if event == "boom":
            raise ValueError("the handler failed")
        return {"ok": True, "event": event, "args": len(args)}


class Rig:
    """A python-socketio server, its lane (or not), and what it did."""

    def __init__(self, lane: bool, logger: Any = False, namespace: str = NAMESPACE) -> None:
        # Handlers inline, as web/ runs them (the lane stands aside otherwise).
        self.server = socketio.Server(async_mode="threading", logger=logger, async_handlers=False)
        self.server.packet_class = TolerantPacket
        self.calls: list = []
        self.sent: list = []
        self.server.register_namespace(Recorder(namespace, self.calls))
        eio = self.server.eio
        eio.send = lambda eio_sid, data: self.sent.append((eio_sid, data))
        eio.send_packet = lambda eio_sid, pkt: self.sent.append((eio_sid, pkt.encode()))
        self.sid = self.server.manager.connect("eio1", namespace)
        self.lane = event_lane.install(self.server) if lane else None
        self.receive = self.server.eio.handlers["message"]

    def feed(self, message):
        before = (len(self.calls), len(self.sent))
        try:
            self.receive("eio1", message)
            raised = None
        except Exception as exc:  # compared between the two paths
            raised = (type(exc), str(exc))
        calls = [
            tuple("SID" if arg == self.sid else arg for arg in call)
            for call in self.calls[before[0] :]
        ]
        return calls, self.sent[before[1] :], raised


def same_answers(messages, **rig_options):
    lane, plain = Rig(lane=True, **rig_options), Rig(lane=False, **rig_options)
    assert lane.lane is not None and lane.receive == lane.lane
    assert plain.receive == plain.server._handle_eio_message
    for message in messages:
        assert lane.feed(message) == plain.feed(message), message
    return lane


EDGE_CASES = [
    '2/progress,1["ping",{}]',
    '2/progress,["ping",{}]',  # no ack id: no ack
    '2/progress,007["ping"]',  # the id is read as a number
    '2/progress,12["ping",1,2,3]',
    '2/progress,3["none"]',
    '2/progress,4["tuple"]',
    '2/progress,5["bytes"]',  # a binary ack: an ACK and its attachment
    '2/progress,6["unhandled"]',
    '2/progress,8["boom"]',
    "2/progress,9[]",
    "2/progress,9[1,2]",
    '2/progress,9{"a":1}',
    '2/progress,9"text"',
    '2/progress,9["a"',
    '2/progress,9["a",NaN]',
    '2/progress,9["a",1e400]',
    "2/progress,9" + "[" * 600 + "]" * 600,
    '2/progress,9["a",' + "1" * 30 + "]",
    "2/progress," + "1" * 99 + '["ping"]',
    "2/progress," + "1" * 100 + '["ping"]',
    '2/progress,\u0663["ping"]',  # a non-ASCII digit
    '2/progress,1\u0663["ping"]',
    '2/progress?x=1,1["ping"]',
    '2/other,1["ping"]',
    '2/,1["ping"]',
    '21-/progress,1["ping"]',
    '2/progress1["ping"]',
    '2/progress,1["ping"]trailing',
    '2["ping"]',
    '3/progress,1["late ack"]',
    "1/progress,",
    "2",
    "",
    b"\x00binary",
]


@pytest.mark.parametrize("message", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_each_edge_case_gets_python_socketios_answer(message):
    same_answers([message])


def test_the_common_case_goes_through_the_lane_itself():
    # The lane answers a ping itself (python-socketio's handler is not run).
    lane = Rig(lane=True)
    lane.lane.fallback = None  # python-socketio's path: would raise if called
    calls, sent, raised = lane.feed('2/progress,7["ping",{"x":1}]')
    assert raised is None
    assert calls == [("ping", "SID", {"x": 1})]
    assert sent == [("eio1", '3/progress,7[{"ok":true,"event":"ping","args":2}]')]


def test_a_binary_event_waiting_for_its_attachment_is_python_socketios():
    # A BINARY_EVENT and then its attachment: the lane must not read the
    # attachment (nor a text message in between) as a new event.
    same_answers(
        [
            '51-/progress,1["ping",{"_placeholder":true,"num":0}]',
            b"\x01\x02",
            '2/progress,2["ping"]',
        ]
    )


def test_a_client_not_connected_to_the_namespace_is_dropped_as_python_socketio_does():
    lane, plain = Rig(lane=True), Rig(lane=False)
    for rig in (lane, plain):
        rig.server.manager.disconnect(rig.sid, NAMESPACE)
    assert lane.feed('2/progress,1["ping"]') == plain.feed('2/progress,1["ping"]')
    assert lane.calls == [] and lane.sent == []


def test_with_info_logging_every_event_is_logged_as_python_socketio_does(caplog):
    logger = logging.getLogger("test_event_lane")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger="test_event_lane"):
        same_answers(['2/progress,1["ping"]'], logger=logger)
    received = [r.getMessage() for r in caplog.records if "received event" in r.getMessage()]
    assert len(received) == 2  # once per server: the lane stood aside


def test_an_app_namespace_on_the_root_gets_python_socketios_ack():
    # Packet.encode() leaves "/" out of the ACK ("35[...]", not "3/,5[...]").
    same_answers(['2/,5["ping"]', '25["ping"]'], namespace="/")


def test_the_admin_uis_development_mode_still_sees_every_event():
    # It wraps _trigger_event on the instance to report each event. (It also
    # patches python-engineio's Socket class: one server at a time, undone.)
    for rig in (Rig(lane=True), Rig(lane=False)):
        admin = rig.server.instrument(auth=False, mode="development", namespace="/admin")
        try:
            rig.server.manager.connect("eio-admin", "/admin")
            rig.sent.clear()
            calls, sent, raised = rig.feed('2/progress,1["ping"]')
        finally:
            admin.uninstrument()
        assert calls == [("ping", "SID")] and raised is None
        reported = [text for _, text in sent if "event_received" in text]
        assert len(reported) == 1, sent
        assert sent[-1] == ("eio1", '3/progress,1[{"ok":true,"event":"ping","args":1}]')


class BareLogger:
    """Any object will do as python-socketio's logger: no isEnabledFor here."""

    def info(self, *args, **kwargs):
        pass

    warning = error = exception = debug = info


def test_a_logger_that_is_not_a_logging_logger_keeps_python_socketios_path():
    same_answers(['2/progress,1["ping"]'], logger=BareLogger())


def test_a_server_class_with_its_own_dispatch_gets_no_lane():
    class Custom(socketio.Server):
        def _trigger_event(self, event, namespace, *args):
            return super()._trigger_event(event, namespace, *args)

    server = Custom(async_mode="threading", async_handlers=False)
    server.packet_class = TolerantPacket
    assert event_lane.install(server) is None


def test_with_async_handlers_python_socketio_runs_the_handler():
    rig = Rig(lane=True)
    rig.server.async_handlers = True
    started = []
    rig.server.start_background_task = lambda fn, *args: started.append(fn.__name__)
    assert rig.feed('2/progress,1["ping"]') == ([], [], None)
    assert started == ["_handle_event_internal"]


def test_other_packet_classes_keep_python_socketios_path():
    server = socketio.Server(async_mode="threading")
    assert event_lane.install(server) is None  # python-socketio's own Packet
    assert server.eio.handlers["message"] == server._handle_eio_message
    other = type("OtherJSON", (TolerantPacket,), {"json": json})
    server.packet_class = other
    assert event_lane.install(server) is None
    server.packet_class = TolerantPacket
    assert TolerantPacket.json is SocketJSON
    assert event_lane.install(server) is not None


ids = st.sampled_from(["", "1", "42", "007", "1" * 99, "1" * 100, "\u0663", "-1"])
names = st.sampled_from(["ping", "none", "tuple", "unhandled", "malformed_request", "", "x"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
events = st.builds(
    lambda name, args: json.dumps([name, *args]), names, st.lists(json_values, max_size=3)
)
payloads = events | st.text(max_size=30) | json_values.map(json.dumps)
prefixes = st.sampled_from(
    ["2/progress,", "2/progress?a=b,", "2/other,", "2", "2/", "3/progress,", "5/progress,"]
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.lists(st.tuples(prefixes, ids, payloads), min_size=1, max_size=6))
def test_any_message_gets_python_socketios_answer(parts):
    same_answers([prefix + ack_id + payload for prefix, ack_id, payload in parts])


@pytest.mark.parametrize("direct", [True, False])
def test_the_extension_installs_the_lane_with_the_transport(tmp_path, direct):
    from tests.extension.conftest import build_app

    app = build_app(tmp_path, PROGRESSCAST_DIRECT_WEBSOCKET=direct)
    try:
        server = app.extensions["progresscast"].socketio.server
        handler = server.eio.handlers["message"]
        if direct:
            assert isinstance(handler, event_lane.EventLane)
        else:  # DIRECT_WEBSOCKET=false turns all of it off
            assert handler == server._handle_eio_message
    finally:
        app.extensions["progresscast"].close()
