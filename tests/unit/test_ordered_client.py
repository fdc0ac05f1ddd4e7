"""The Python client handles incoming messages in the order they arrive.

python-engineio's client runs each message's handler in a thread of its own;
on a busy machine two events then reach the handlers swapped, and a client
that drops ``seq <= last`` loses one. ``ordered_socketio_client`` relies on two
hooks of python-socketio and python-engineio; these tests name them, so an
upgrade that changes them fails here first.
"""

from __future__ import annotations

import threading

import engineio
import socketio

from progresscast.client import ordered_socketio_client
from tests.harness import wait_until


def test_the_hooks_it_relies_on_are_there():
    assert callable(getattr(socketio.Client, "_engineio_client_class", None)), (
        "python-socketio no longer has Client._engineio_client_class"
    )
    assert callable(getattr(engineio.Client, "_trigger_event", None)), (
        "python-engineio no longer has Client._trigger_event"
    )
    client = ordered_socketio_client(reconnection=False)
    assert isinstance(client, socketio.Client)
    assert isinstance(client.eio, engineio.Client)
    assert type(client.eio).__name__ == "OrderedEngineIOClient", type(client.eio)


def test_messages_are_handled_in_order_off_the_reading_thread():
    client = ordered_socketio_client(reconnection=False)
    seen: list[tuple[int, threading.Thread]] = []
    done = threading.Event()

    def handler(n):
        seen.append((n, threading.current_thread()))
        if n == 199:
            done.set()

    client.eio.on("message", handler)
    for n in range(200):
        # what python-engineio's read loop does with each MESSAGE packet
        client.eio._trigger_event("message", n, run_async=True)
    assert done.wait(10)
    assert [n for n, _ in seen] == list(range(200))
    assert threading.current_thread() not in {thread for _, thread in seen}
    wait_until(lambda: not client.eio._handling, 5, what="the handling thread to end")


def test_a_plain_client_would_hand_each_message_to_a_thread_of_its_own():
    """Why the ordered client exists (if this changes, it may not be needed)."""
    client = socketio.Client(reconnection=False)
    done = threading.Event()
    threads: list[threading.Thread] = []

    def handler(data):
        threads.append(threading.current_thread())
        done.set()

    client.eio.on("message", handler)
    task = client.eio._trigger_event("message", 1, run_async=True)
    assert done.wait(5)
    task.join(5)
    assert threads[0] is not threading.current_thread()
