"""The store contract on a real redis-server, plus what is Redis-only."""

from __future__ import annotations

import itertools

import pytest

from progresscast import StoreUnavailable, open_store
from progresscast.stores.redis import RedisStore

from .fakes import T0
from .store_contract import StoreContract, create, make_run

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


class TestRedisHistory:
    """Where the ETA's history lives in Redis, and its expiry."""

    @pytest.fixture
    def store(self, redis_server):
        store = RedisStore(redis_server.url, prefix=f"t{next(_prefixes)}")
        yield store
        for key in store.redis.scan_iter(f"{store.prefix}:*"):
            store.redis.delete(key)
        store.close()

    def test_keys_and_their_ttl(self, store):
        store.add_run("a:b", make_run("r1", T0), keep=5)
        p = store.prefix
        assert set(store.redis.scan_iter(f"{p}:*")) == {
            f"{p}:history:a:b",
            f"{p}:history-runs:a:b",
            f"{p}:history-kinds",
        }
        assert store.redis.zrange(f"{p}:history:a:b", 0, -1, withscores=True) == [("r1", T0)]
        assert store.redis.ttl(f"{p}:history:a:b") == -1  # no max_age: no TTL
        store.add_run("a:b", make_run("r2", T0 + 1), keep=5, max_age=3600)
        for key in (f"{p}:history:a:b", f"{p}:history-runs:a:b"):
            assert 3_500_000 < store.redis.pttl(key) <= 3_600_000
        assert store.redis.ttl(f"{p}:history-kinds") == -1  # the index never expires
        store.add_run("a:b", make_run("r3", T0 + 2), keep=5)  # without max_age again
        assert store.redis.ttl(f"{p}:history:a:b") == -1
        assert store.redis.ttl(f"{p}:history-runs:a:b") == -1

    def test_a_kind_whose_keys_expired_leaves_the_listing(self, store):
        import time

        store.add_run("gone", make_run("r", T0), keep=5, max_age=0.05)
        store.add_run("kept", make_run("r", T0), keep=5)
        time.sleep(0.2)
        assert store.runs("gone", 10) == []
        assert [k["kind"] for k in store.history_kinds()] == ["kept"]
        assert store.redis.zrange(f"{store.prefix}:history-kinds", 0, -1) == ["kept"]
        assert store.reset_history() == 1

    def test_adding_a_run_is_one_round_trip(self, store):
        store.add_run("k", make_run("warm", T0), keep=5, max_age=60)  # loads the script
        calls = []
        real = store.redis.execute_command

        def counting(*args, **kwargs):
            calls.append(args[0])
            return real(*args, **kwargs)

        store.redis.execute_command = counting
        try:
            store.add_run("k", make_run("r", T0 + 1), keep=5, max_age=60)
            store.runs("k", 5)
        finally:
            del store.redis.execute_command
        assert calls == ["EVALSHA", "EVALSHA"]

    def test_adding_a_run_forgets_kinds_as_old_as_max_age(self, store):
        store.add_run("old", make_run("o", T0), keep=5)
        store.add_run("new", make_run("n", T0 + 100), keep=5, max_age=50)
        assert [k["kind"] for k in store.history_kinds()] == ["new"]
        assert not store.redis.exists(store._history("old"), store._history_runs("old"))


def test_history_on_an_unreachable_redis_is_store_unavailable():
    from tests.harness import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    try:
        for call in (
            lambda: store.add_run("k", make_run("r", T0), keep=5),
            lambda: store.runs("k", 5),
            store.history_kinds,
            store.reset_history,
        ):
            with pytest.raises(StoreUnavailable):
                call()
    finally:
        store.close()
