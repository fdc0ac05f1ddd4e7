"""Every private part of another package the transport relies on, and the
versions it was tested with.

python-engineio has no public way to change how a websocket is served, so
the transport reaches into it (and into python-socketio, eventlet and
gevent) at the places listed in :data:`HOOKS`. Each has a contract test in
tests/unit/test_transport_contracts.py, named after it, that fails with a
clear message when an upgrade changes it. At start-up
(:func:`untested_versions`) a version outside :data:`TESTED` turns the
transport off, with one warning: python-engineio's own path is slower but
does not depend on any of this.

To support a new version: run the contract tests and the transport's
server tests (tests/integration/test_direct_websocket.py) with it, then
widen :data:`TESTED`.
"""

from __future__ import annotations

from importlib import metadata
from typing import NamedTuple


class Hook(NamedTuple):
    """One private part of a dependency, and what the transport does with it."""

    name: str  # the contract test is test_<name>
    package: str  # the distribution it belongs to
    where: str  # the attribute, method or key
    use: str  # what the transport does with it


HOOKS: tuple[Hook, ...] = (
    Hook(
        "engineio_sockets_dict",
        "python-engineio",
        "engineio.Server.sockets; Server._handle_connect stores its new Socket there",
        "DirectSockets replaces the dict and swaps each new socket's __class__",
    ),
    Hook(
        "engineio_socket_state",
        "python-engineio",
        "engineio.socket.Socket: queue, connected, upgraded, upgrading, closing, closed, "
        "last_ping, check_ping_timeout()",
        "DirectSocket reads and sets the socket's state as python-engineio does",
    ),
    Hook(
        "engineio_websocket_handler",
        "python-engineio",
        "engineio.socket.Socket._websocket_handler(ws), called by _upgrade_websocket",
        "overridden: a parkable websocket is parked instead of served by three threads",
    ),
    Hook(
        "engineio_schedule_ping",
        "python-engineio",
        "engineio.socket.Socket.schedule_ping(), called at connect and on every PONG",
        "overridden: the shared Pinger sends the next ping",
    ),
    Hook(
        "engineio_send",
        "python-engineio",
        "engineio.socket.Socket.send(pkt), the way every packet to a client goes",
        "overridden: a direct socket frames and writes the packet at once",
    ),
    Hook(
        "engineio_close_abort",
        "python-engineio",
        "engineio.socket.Socket.close(wait=False, abort=True): the disconnect event, "
        "closed set, nothing written",
        "DirectSocket.close calls it, then writes the CLOSE packet itself",
    ),
    Hook(
        "engineio_upgrade_probe",
        "python-engineio",
        "the upgrade probe exchange in Socket._websocket_handler "
        "(PING probe, PONG probe, NOOP to the poll, UPGRADE)",
        "copied in DirectSocket._upgrade",
    ),
    Hook(
        "engineio_socket_queue",
        "python-engineio",
        "engineio.socket.Socket.queue: read only by poll() (long-polling, and the writer "
        "thread of python-engineio's websocket); an upgraded socket answers a poll with NOOP",
        "a parked socket's queue is swapped for one shared sink (memory per connection)",
    ),
    Hook(
        "engineio_message_handler",
        "python-engineio",
        "Socket.receive(MESSAGE) calls Server._trigger_event('message', sid, data, "
        "run_async=async_handlers), which calls Server.handlers['message'](sid, data) and "
        "logs what it raises",
        "with async_handlers off, a parked socket calls handlers['message'] itself",
    ),
    Hook(
        "engineio_eventlet_input",
        "python-engineio",
        "engineio.async_drivers.eventlet.WebSocketWSGI: the socket from "
        "environ['eventlet.input'].get_socket()",
        "where the transport cannot answer the handshake under eventlet (TLS, compression),"
        " SocketHolder hands python-engineio's class gunicorn's socket",
    ),
    Hook(
        "engineio_async_websocket",
        "python-engineio",
        "engineio.Server._async['websocket'](handler, server)(environ, start_response)",
        "replaced per server by a class that answers the handshake itself (handshake.py)",
    ),
    Hook(
        "socketio_pubsub_handle_emit",
        "python-socketio",
        "socketio.PubSubManager: emit() hands its message (and its keys) to "
        "_handle_emit() and _publish(); _thread() hands other servers' to _handle_emit(), "
        "reading _listen(); Packet.reconstruct_binary",
        "overridden (batching.py): local delivery goes through the fan-out and batching"
        " explicitly; _publish counts failures; _listen tracks the subscription",
    ),
    Hook(
        "socketio_pubsub_return_callback",
        "python-socketio",
        "socketio.PubSubManager._return_callback(host_id, sid, namespace, id, *args)",
        "an emit with a callback from another server acks through it",
    ),
    Hook(
        "socketio_send_eio_packet",
        "python-socketio",
        "socketio.Server._send_eio_packet(eio_sid, eio_pkt), how Manager.emit sends",
        "a broadcast sends to a socket that does not write directly as Manager.emit does"
        " (Flask-SocketIO's test client replaces it to listen)",
    ),
    Hook(
        "socketio_manager_rooms",
        "python-socketio",
        "socketio.Manager.rooms[namespace][room][sid] = eio_sid, get_participants()",
        "the fan-out and the batches read the rooms to frame once per room",
    ),
    Hook(
        "socketio_handle_eio_message",
        "python-socketio",
        "socketio.Server registers _handle_eio_message(eio_sid, data) as Engine.IO's "
        "'message' handler; it reads _binary_packet, handlers, namespace_handlers, "
        "not_handled, manager.sid_from_eio_sid() and manager.is_connected()",
        "event_lane.py takes its place for plain EVENTs to a class-based namespace, doing"
        " what _handle_event, _trigger_event and _send_packet do (it stands aside when"
        " one is replaced), and hands it every other message",
    ),
    Hook(
        "eventlet_hub_listeners",
        "eventlet",
        "hub.add(hub.READ, fd, cb, tb, mark_as_closed), hub.remove(listener), "
        "hubs.notify_opened(fd), hubs.trampoline(fd, write=True, timeout, timeout_exc)",
        "the parked reader and the drainer's waits",
    ),
    Hook(
        "gevent_io_watcher",
        "gevent",
        "gevent.get_hub().loop.io(fd, 1).start(cb), .stop(), .close(); "
        "gevent.socket.wait_write(fd, timeout, timeout_exc)",
        "the parked reader and the drainer's waits",
    ),
    Hook(
        "gunicorn_socket",
        "gunicorn",
        "environ['gunicorn.socket']; StopIteration from the app: no response, "
        "gunicorn closes its copy of the socket",
        "the websocket's socket under gunicorn (both loops)",
    ),
)

#: the versions tested with; a version with the same major.minor is accepted
TESTED: dict[str, str] = {
    "python-engineio": "4.15.1",
    "python-socketio": "5.18.1",
    "eventlet": "0.41.3",
    "gevent": "26.9.0",
}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def untested_versions(async_mode: str) -> list[str]:
    """What is installed in a version the transport was not tested with, for
    ``async_mode`` (its loop's package counts only under that loop); an
    empty list when everything was."""
    distributions = ["python-engineio", "python-socketio"]
    if async_mode in ("eventlet", "gevent"):
        distributions.append(async_mode)
    problems = []
    for distribution in distributions:
        version = installed_version(distribution)
        if version is None or _minor(version) != _minor(TESTED[distribution]):
            problems.append(
                f"{distribution} {version} (tested: {'.'.join(_minor(TESTED[distribution]))}.x)"
            )
    return problems
