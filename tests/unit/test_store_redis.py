"""The store contract on a real redis-server, plus what is Redis-only."""

from __future__ import annotations

import itertools

import pytest

from progresscast import StoreUnavailable, open_store
from progresscast.stores.redis import RedisStore

from .store_contract import StoreContract, create

_prefixes = itertools.count()


class TestRedisStore(StoreContract):
    @pytest.fixture
    def make_store(self, redis_server):
        made = []

        def make(**options):
            # A fresh prefix per store keeps tests apart on one server.
            store = RedisStore(redis_server.url, prefix=f"t{next(_prefixes)}", **options)
            made.append(store)
            return store

        yield make
        for store in made:
            for key in store.redis.scan_iter(f"{store.prefix}:*"):
                store.redis.delete(key)
            store.close()

    def test_open_store_takes_options_from_the_url(self, redis_server):
        store = open_store(
            f"{redis_server.url}?prefix=px&max_events_per_job=7"
            "&retention_seconds=60&socket_keepalive=true"
        )
        try:
            assert isinstance(store, RedisStore)
            assert (store.prefix, store.max_events_per_job, store.retention_seconds) == (
                "px",
                7,
                60,
            )
            store.ping()
        finally:
            store.close()

    def test_ended_jobs_get_a_ttl(self, make_store):
        from .store_contract import step

        store = make_store(retention_seconds=120)
        events, state = create("ttl", start=True)
        store.append(events, state)
        assert store.redis.ttl(store._job("ttl")) == -1  # running: kept
        events, state = step(state, "job_completed")
        store.append(events, state)
        assert 0 < store.redis.ttl(store._job("ttl")) <= 120
        assert 0 < store.redis.ttl(store._events("ttl")) <= 120


def test_an_unreachable_redis_is_store_unavailable():
    from tests.harness import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.get("x")
    events, state = create("x")
    with pytest.raises(StoreUnavailable):
        store.append(events, state)


def test_a_burst_beyond_the_pool_waits_instead_of_failing(redis_server):
    import threading

    store = RedisStore(redis_server.url, prefix=f"t{next(_prefixes)}", max_connections=4)
    events, state = create("busy", start=True)
    store.append(events, state)
    errors, seen = [], []

    def reader():
        try:
            for _ in range(20):
                seen.append(store.get("busy").seq)
        except Exception as exc:  # "Too many connections" with a non-blocking pool
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert errors == [] and len(seen) == 32 * 20 and set(seen) == {1}
    finally:
        for key in store.redis.scan_iter(f"{store.prefix}:*"):
            store.redis.delete(key)
        store.close()
