"""A worker's one-step store-and-publish (stores/redis.py ``QueuePublisher``),
on a real redis-server: what python-socketio's listener reads, and DESIGN §4's
guarantees (stored before emitted, gapless seq) under concurrent writers."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
import redis
import socketio

from progresscast import ProgressTracker
from progresscast.errors import SeqConflict, StoreUnavailable
from progresscast.protocol import NAMESPACE, event_rooms
from progresscast.stores.redis import QueuePublisher, RedisStore, same_server

from .fakes import DOC_STAGES
from .store_contract import create, step

_channels = itertools.count()


@pytest.fixture
def channel():
    return f"pc-test-{next(_channels)}"


@pytest.fixture
def listener(redis_server, channel):
    """Subscribed to ``channel``; ``next_message()`` waits (bounded) for one."""
    conn = redis.Redis.from_url(redis_server.url)
    pubsub = conn.pubsub()
    pubsub.subscribe(channel)
    # confirmed before the test publishes anything
    confirmed = pubsub.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "subscribe"

    def next_message(timeout: float = 5.0) -> dict | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            message = pubsub.get_message(timeout=min(0.5, end - time.monotonic()))
            if message is not None and message["type"] == "message":
                return json.loads(message["data"])
        return None

    yield next_message
    pubsub.close()
    conn.close()


def worker(redis_server, channel, **kwargs) -> ProgressTracker:
    prefix = f"qp{next(_channels)}"
    return ProgressTracker.from_urls(
        f"{redis_server.url}?prefix={prefix}", redis_server.url, channel=channel, **kwargs
    )


def test_the_message_is_the_one_python_socketio_publishes(redis_server, channel, listener):
    tracker = worker(redis_server, channel, min_interval=0)
    manager = socketio.RedisManager(redis_server.url, channel=channel, write_only=True)
    try:
        assert isinstance(tracker.emitter, QueuePublisher)
        state = tracker.create_job("import", DOC_STAGES, owner="alice", start=True)
        ours = listener()
        [event] = tracker.store.events_since(state.job_id)
        manager.emit(
            event["type"], event, to=event_rooms(state.job_id, "alice"), namespace=NAMESPACE
        )
        theirs = listener()
        assert ours is not None and theirs is not None
        assert ours.pop("host_id") == tracker.emitter.host_id
        assert ours["data"] == [event]
        theirs.pop("host_id")
        assert ours == theirs  # what PubSubManager._handle_emit reads
        # emit() (any other emit a worker makes) publishes the same message
        tracker.emitter.emit(
            event["type"], event, to=event_rooms(state.job_id, "alice"), namespace=NAMESPACE
        )
        again = listener()
        again.pop("host_id")
        assert again == theirs
    finally:
        manager.redis.close()
        tracker.close()


def test_an_event_is_published_once_stored_and_a_lost_race_publishes_nothing(
    redis_server, channel, listener
):
    store = RedisStore(redis_server.url, prefix=f"qp{next(_channels)}")
    publisher = QueuePublisher(store, channel)
    tail = publisher.tail(event_rooms("x", "u"), NAMESPACE)
    try:
        events, state = create("x", start=True)
        store.append_publish(events, state, channel, tail)
        message = listener()
        assert message["data"] == events
        assert store.events_since("x") == events  # stored when it was published
        stale, _ = step(state, "progress_update", stage_progress=10)
        events2, state2 = step(state, "progress_update", stage_progress=20)
        store.append_publish(events2, state2, channel, tail)
        with pytest.raises(SeqConflict):  # seq 2 is taken: nothing stored, nothing sent
            store.append_publish(stale, state2, channel, tail)
        events3, state3 = step(state2, "progress_update", stage_progress=30)
        store.append_publish(events3, state3, channel, tail)
        # Redis delivers in publish order: nothing came between seq 2 and 3
        assert [listener()["data"][0]["seq"] for _ in range(2)] == [2, 3]
        assert [e["seq"] for e in store.events_since("x")] == [1, 2, 3]
    finally:
        store.close()


def test_concurrent_workers_publish_a_gapless_history_in_seq_order(redis_server, channel, listener):
    prefix = f"qp{next(_channels)}"
    trackers = [
        ProgressTracker.from_urls(
            f"{redis_server.url}?prefix={prefix}", redis_server.url, channel=channel
        )
        for _ in range(2)
    ]
    try:
        job = trackers[0].create_job("race", DOC_STAGES, owner="u", start=True)
        errors = []

        def report(tracker, base):
            try:
                for i in range(40):
                    tracker.record(job.job_id, "progress_update", stage_progress=(base + i) / 2)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=report, args=(t, b))
            for t, b in ((trackers[0], 0), (trackers[0], 100), (trackers[1], 50))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        stored = trackers[0].store.events_since(job.job_id)
        assert [e["seq"] for e in stored] == list(range(1, 122))
        published = [listener()["data"][0] for _ in range(121)]
        assert published == stored  # each once, in seq order, as stored
    finally:
        for tracker in trackers:
            tracker.close()


def test_a_script_redis_lost_is_loaded_again(redis_server, channel, listener):
    tracker = worker(redis_server, channel)
    try:
        state = tracker.create_job("r", ["a"], owner="u", start=True)
        assert listener()["data"][0]["seq"] == 1
        tracker.store.redis.script_flush()  # as after a restart of Redis
        tracker.record(state.job_id, "progress_update", stage_progress=5)
        assert listener()["data"][0]["seq"] == 2
    finally:
        tracker.close()


def test_from_urls_publishes_in_one_step_only_on_one_server(redis_server, channel):
    other = "redis://127.0.0.1:1/0"
    cases = [
        ({}, redis_server.url.replace("/0", "/3"), QueuePublisher),  # another db: one server
        ({"atomic_publish": False}, redis_server.url, socketio.RedisManager),
        ({}, other, socketio.RedisManager),
    ]
    for kwargs, queue, kind in cases:
        tracker = ProgressTracker.from_urls(redis_server.url, queue, channel=channel, **kwargs)
        try:
            assert type(tracker.emitter) is kind
        finally:
            tracker.close()
    with pytest.raises(ValueError, match="one Redis server"):
        ProgressTracker.from_urls(redis_server.url, other, atomic_publish=True)


def test_same_server():
    assert same_server("redis://h:6379/0", "redis://h/5")
    assert not same_server("redis://h:6379/0", "redis://h:6380/0")
    assert not same_server("redis://localhost/0", "redis://127.0.0.1/0")  # not resolved
    assert not same_server("redis://a:p@h/0", "redis://h/0")
    assert not same_server("rediss://h/0", "redis://h/0")
    assert same_server("unix:///tmp/r.sock?db=1", "unix:///tmp/r.sock")
    assert not same_server("redis+sentinel://h:26379/0/m", "redis+sentinel://h:26379/0/m")


def test_a_write_whose_reply_is_lost_is_not_sent_again(redis_server):
    """Redis is busy (another client's long script) past the store's socket
    timeout: the store gives up waiting, but the write it sent still runs
    once Redis is free. Sending it again would store the update twice (found
    in review)."""
    prefix = f"lost{next(_channels)}"
    store = RedisStore(redis_server.url, prefix=prefix, socket_timeout=0.2)
    tracker = ProgressTracker(store)
    busy = redis.Redis.from_url(redis_server.url)
    try:
        state = tracker.create_job("r", ["a", "b"], owner="u", start=True)
        started = threading.Event()

        def hold_redis() -> None:
            started.set()
            # Redis's one thread, busy for well over the socket timeout
            busy.eval("local i = 0 while i < 40000000 do i = i + 1 end", 0)

        holder = threading.Thread(target=hold_redis)
        holder.start()
        started.wait(5)
        time.sleep(0.05)  # the script is running (Redis answers nobody meanwhile)
        with pytest.raises(StoreUnavailable):
            tracker.record(state.job_id, "stage_completed")
        holder.join(10)
        events = store.events_since(state.job_id)
        assert [e["type"] for e in events].count("stage_completed") == 1, events
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finally:
        busy.close()
        tracker.close()
