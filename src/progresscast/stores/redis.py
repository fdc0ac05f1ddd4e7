"""Redis job store: for several server instances and worker processes.

Keys (``p`` is the prefix, ``progresscast`` by default)::

    p:job:<id>              hash  state (JSON), owner, status, seq, created_at,
                                  finished_at, updated_at, cancel_reason
    p:events:<id>           stream, entry id "<seq>-0", field e = event JSON;
                            trimmed to the newest max_events_per_job
    p:jobs                  zset  every job, score created_at
    p:owner:<owner>         zset  an owner's jobs, score created_at
    p:status:<status>       zset  jobs by status, score created_at
    p:owner:<owner>:<status> zset an owner's jobs by status
    p:running               zset  running jobs, score updated_at (stall detection)
    p:finished              zset  ended jobs, score finished_at (pruning)
    p:cancelling            zset  unfinished jobs with a cancellation request,
                                  score the request's time
    p:children:<parent>     zset  a parent's children, score the creation order
    p:history:<kind>        zset  the ETA's run history of a kind: job ids,
                                  score finished_at; the newest ``keep``
    p:history-runs:<kind>   hash  job id -> the run (JSON), same members
    p:history-kinds         zset  kinds with history, score the newest run's
                                  finished_at

A kind is any string (``:`` included): the two keys of a kind differ before
the kind begins (``history:`` and ``history-runs:``), so no kind's key is
another kind's. With ``max_age`` a kind's keys expire that long after its
last run, and adding a run forgets kinds whose newest run is that old.

Every write is one Lua script, so appending events, updating the state and
moving the indexes happen together or not at all, and the compare-and-set on
``seq`` holds across any number of writers. Ended jobs also get a TTL
(``retention_seconds``) as a safety net behind :meth:`prune`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SeqConflict, StoreUnavailable
from ..jsoncodec import dumpb, dumps, loads
from ..state import JobState, JobStatus
from .base import JobStore, decode_state, run_fields

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Redis store needs redis-py: pip install 'progresscast[redis]' (or redis)"
    ) from exc


# KEYS: job, events
# ARGV: prefix, expected_seq, n_events, channel ('' to publish nothing), the
#       message's tail (QueuePublisher.tail), then per event its seq, JSON and
#       type, then the state fields.
# Returns {0, stored seq} on a seq conflict, else {1, new seq, pending cancel reason or nil}.
# With a channel, each event is published on it once stored, as python-socketio's
# pub/sub message {"method": "emit", "event": type, "data": [event], ...}: in the
# same script, so an event is never stored without being published, nor
# published before it is stored, and a write that loses the compare-and-set
# publishes nothing.
_APPEND = """
local job, events = KEYS[1], KEYS[2]
local prefix = ARGV[1]
local expected = tonumber(ARGV[2])
local stored = tonumber(redis.call('HGET', job, 'seq') or '0')
if stored ~= expected then
  return {0, stored}
end
local n = tonumber(ARGV[3])
local channel, tail = ARGV[4], ARGV[5]
local i = 6
for _ = 1, n do
  redis.call('XADD', events, ARGV[i] .. '-0', 'e', ARGV[i + 1])
  i = i + 3
end
local owner, status, seq = ARGV[i], ARGV[i + 1], ARGV[i + 2]
local created, finished, updated = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
local state, max_events, ttl = ARGV[i + 6], tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8])
local parent = ARGV[i + 9]
local id = string.sub(job, string.len(prefix) + 6)  -- after "<prefix>:job:"
local old = redis.call('HGET', job, 'status')
redis.call('HSET', job, 'owner', owner, 'status', status, 'seq', seq, 'created_at', created,
           'updated_at', updated, 'state', state)
if finished ~= '' then redis.call('HSET', job, 'finished_at', finished) end
if old ~= status then
  if old then
    redis.call('ZREM', prefix .. ':status:' .. old, id)
    redis.call('ZREM', prefix .. ':owner:' .. owner .. ':' .. old, id)
  end
  redis.call('ZADD', prefix .. ':status:' .. status, created, id)
  redis.call('ZADD', prefix .. ':owner:' .. owner .. ':' .. status, created, id)
end
if not old then
  redis.call('ZADD', prefix .. ':jobs', created, id)
  redis.call('ZADD', prefix .. ':owner:' .. owner, created, id)
  if parent ~= '' then
    local children = prefix .. ':children:' .. parent
    redis.call('HSET', job, 'parent', parent)
    redis.call('ZADD', children, redis.call('ZCARD', children), id)
  end
end
if status == 'running' then
  redis.call('ZADD', prefix .. ':running', updated, id)
else
  redis.call('ZREM', prefix .. ':running', id)
end
if finished ~= '' then
  redis.call('ZADD', prefix .. ':finished', finished, id)
  redis.call('HDEL', job, 'cancel_reason')
  redis.call('ZREM', prefix .. ':cancelling', id)
  if ttl > 0 then
    redis.call('EXPIRE', job, ttl)
    redis.call('EXPIRE', events, ttl)
    redis.call('EXPIRE', prefix .. ':children:' .. id, ttl)
  end
end
if tonumber(seq) > max_events then
  redis.call('XTRIM', events, 'MINID', (tonumber(seq) - max_events + 1) .. '-0')
end
if channel ~= '' then
  for e = 6, 6 + 3 * (n - 1), 3 do
    local head = '{"method":"emit","event":"' .. ARGV[e + 2] .. '","data":['
    redis.call('PUBLISH', channel, head .. ARGV[e + 1] .. ']' .. tail)
  end
end
return {1, tonumber(seq), redis.call('HGET', job, 'cancel_reason')}
"""

# KEYS: job, cancelling; ARGV: reason, requested_at, job id
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
if redis.call('HSETNX', KEYS[1], 'cancel_reason', ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
return 1
"""

_DELETE = """
local prefix, id = ARGV[1], ARGV[2]
local job = prefix .. ':job:' .. id
local owner = redis.call('HGET', job, 'owner')
local status = redis.call('HGET', job, 'status')
local parent = redis.call('HGET', job, 'parent')
if parent then redis.call('ZREM', prefix .. ':children:' .. parent, id) end
redis.call('DEL', job, prefix .. ':events:' .. id, prefix .. ':children:' .. id)
redis.call('ZREM', prefix .. ':jobs', id)
redis.call('ZREM', prefix .. ':finished', id)
redis.call('ZREM', prefix .. ':running', id)
redis.call('ZREM', prefix .. ':cancelling', id)
if status then redis.call('ZREM', prefix .. ':status:' .. status, id) end
if owner then
  redis.call('ZREM', prefix .. ':owner:' .. owner, id)
  if status then redis.call('ZREM', prefix .. ':owner:' .. owner .. ':' .. status, id) end
end
return 1
"""


# ARGV: prefix, kind, job id, finished_at, run JSON, keep, then with max_age
#       (else ''): finished_at - max_age (the oldest kept), max_age in milliseconds
_ADD_RUN = """
local prefix, kind, id = ARGV[1], ARGV[2], ARGV[3]
local record, keep = ARGV[5], tonumber(ARGV[6])
local oldest, ttl_ms = ARGV[7], tonumber(ARGV[8])
local kinds = prefix .. ':history-kinds'
local order = prefix .. ':history:' .. kind
local runs = prefix .. ':history-runs:' .. kind
local function forget(ids)
  for _, old in ipairs(ids) do
    redis.call('ZREM', order, old)
    redis.call('HDEL', runs, old)
  end
end
redis.call('ZADD', order, ARGV[4], id)
redis.call('HSET', runs, id, record)
if oldest ~= '' then
  local cutoff = '(' .. oldest
  forget(redis.call('ZRANGEBYSCORE', order, '-inf', cutoff))
  -- kinds whose newest run is that old: every run of theirs is (a few per call)
  for _, stale in ipairs(redis.call('ZRANGEBYSCORE', kinds, '-inf', cutoff, 'LIMIT', 0, 100)) do
    if stale ~= kind then
      redis.call('DEL', prefix .. ':history:' .. stale, prefix .. ':history-runs:' .. stale)
      redis.call('ZREM', kinds, stale)
    end
  end
end
local n = redis.call('ZCARD', order)
if n > keep then forget(redis.call('ZRANGE', order, 0, n - keep - 1)) end
local newest = redis.call('ZREVRANGE', order, 0, 0, 'WITHSCORES')
redis.call('ZADD', kinds, newest[2], kind)
if ttl_ms then
  redis.call('PEXPIRE', order, ttl_ms)
  redis.call('PEXPIRE', runs, ttl_ms)
else  -- no max_age now: none from an earlier call either
  redis.call('PERSIST', order)
  redis.call('PERSIST', runs)
end
return n
"""

# ARGV: prefix, kind, since ('-inf' for none), limit
_RUNS = """
local order = ARGV[1] .. ':history:' .. ARGV[2]
local runs = ARGV[1] .. ':history-runs:' .. ARGV[2]
local ids = redis.call('ZREVRANGEBYSCORE', order, '+inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', runs, id)
  if record then out[#out + 1] = record end
end
return out
"""

# ARGV: prefix, kind ('' for every kind). Returns how many runs went.
_RESET_HISTORY = """
local prefix = ARGV[1]
local kinds = prefix .. ':history-kinds'
local names = {ARGV[2]}
if ARGV[2] == '' then names = redis.call('ZRANGE', kinds, 0, -1) end
local removed = 0
for _, kind in ipairs(names) do
  local order = prefix .. ':history:' .. kind
  removed = removed + redis.call('ZCARD', order)
  redis.call('DEL', order, prefix .. ':history-runs:' .. kind)
  redis.call('ZREM', kinds, kind)
end
return removed
"""

# ARGV: prefix, kind: drop a kind whose keys expired from the kinds' index.
_FORGET_EXPIRED_KIND = """
if redis.call('EXISTS', ARGV[1] .. ':history:' .. ARGV[2]) == 0 then
  redis.call('ZREM', ARGV[1] .. ':history-kinds', ARGV[2])
end
return 1
"""


def _pack(args: list[Any]) -> bytes:
    """One command in RESP: bytes as they are, str as UTF-8, numbers as text."""
    out = []
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"*%d\r\n%b" % (len(args), b"".join(out))


def _unavailable(method):
    """Turn redis-py's connection errors into StoreUnavailable."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # incl. pool exhausted
            raise StoreUnavailable(f"Redis store unreachable: {exc}") from exc

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class RedisStore(JobStore):
    """Job store in Redis (6.2 or newer).

    :param url: ``redis://host:port/db``.
    :param max_events_per_job: history kept per job (a gapless suffix).
    :param retention_seconds: TTL given to an ended job's keys (0: none).
    :param max_connections: connections kept to Redis; more callers wait.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "progresscast",
        max_events_per_job: int = 10_000,
        retention_seconds: int = 7 * 24 * 3600,
        socket_timeout: float = 5.0,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.max_events_per_job = max_events_per_job
        self.retention_seconds = retention_seconds
        # A blocking pool: under a burst of requests (1,000 clients joining at
        # once) callers wait for a connection instead of failing with "Too
        # many connections", which redis-py's default pool does past its cap.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        self.redis = redis.Redis(connection_pool=pool)
        self._append = self.redis.register_script(_APPEND)
        self._cancel = self.redis.register_script(_CANCEL)
        self._delete = self.redis.register_script(_DELETE)
        self._add_run = self.redis.register_script(_ADD_RUN)
        self._runs = self.redis.register_script(_RUNS)
        self._reset_history = self.redis.register_script(_RESET_HISTORY)
        self._forget_expired_kind = self.redis.register_script(_FORGET_EXPIRED_KIND)

    def _job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _events(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def append(self, events: Sequence[dict[str, Any]], state: JobState) -> str | None:
        return self.append_publish(events, state, "", "")

    @_unavailable
    def append_publish(
        self, events: Sequence[dict[str, Any]], state: JobState, channel: str, tail: str
    ) -> str | None:
        """:meth:`append`, and publish each event on ``channel`` in the same
        script, once stored: ``'{"method":"emit","event":"<type>","data":[<event>]'
        + tail`` (:meth:`QueuePublisher.tail`). One round trip; an event is
        published if and only if it is stored. ``channel=""``: publish nothing."""
        if not events:
            return None
        first = events[0]["seq"]
        argv: list[Any] = [self.prefix, first - 1, len(events), channel, tail]
        for event in events:
            argv += [event["seq"], dumpb(event), event["type"]]
        argv += [
            state.owner,
            state.status.value,
            state.seq,
            repr(state.created_at),
            "" if state.finished_at is None else repr(state.finished_at),
            repr(state.updated_at),
            dumpb(state.to_record()),
            self.max_events_per_job,
            self.retention_seconds,
            state.parent_id or "",
        ]
        ok, stored, *cancel_reason = self._evalsha(
            self._append, [self._job(state.job_id), self._events(state.job_id)], argv
        )
        if not ok:
            raise SeqConflict(state.job_id, first - 1, stored or None)
        return cancel_reason[0] if cancel_reason else None

    def _evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``script(keys, args)`` on a connection of the pool, the command
        packed here: redis-py's per-argument encoding and command plumbing
        cost more CPU than the script (bench/update_cost.py), and a worker
        runs this once per update. A connection that fails while the command
        is sent (a pooled connection Redis closed) is replaced once; a
        command that was sent is never sent again: if its reply is lost, it
        may have run, and a second run would store the update twice. A
        script Redis lost (restarted) is loaded again."""
        pool = self.redis.connection_pool
        command = _pack(["EVALSHA", script.sha, len(keys), *keys, *args])
        for attempt in (1, 2, 3):
            conn = pool.get_connection()
            try:
                try:
                    conn.send_packed_command([command])
                except (redis.ConnectionError, redis.TimeoutError):
                    conn.disconnect()
                    if attempt >= 2:
                        raise
                    continue
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                if attempt == 3:
                    raise
                self.redis.script_load(script.script)
            finally:
                pool.release(conn)
        raise AssertionError("unreachable")

    def _state(self, fields: dict[str, str]) -> JobState:
        state = decode_state(fields["state"])
        state.cancel_requested = fields.get("cancel_reason")
        return state

    @_unavailable
    def get(self, job_id: str) -> JobState | None:
        fields = self.redis.hgetall(self._job(job_id))
        return self._state(fields) if fields.get("state") else None

    @_unavailable
    def request_cancel(self, job_id: str, reason: str, requested_at: float | None = None) -> bool:
        when = time.time() if requested_at is None else requested_at
        return bool(
            self._cancel(
                keys=[self._job(job_id), f"{self.prefix}:cancelling"],
                args=[reason, repr(when), job_id],
            )
        )

    @_unavailable
    def cancel_overdue(self, requested_before: float) -> list[str]:
        return self.redis.zrangebyscore(f"{self.prefix}:cancelling", "-inf", f"({requested_before}")

    @_unavailable
    def cancel_reason(self, job_id: str) -> str | None:
        return self.redis.hget(self._job(job_id), "cancel_reason")

    @_unavailable
    def events_since(self, job_id: str, since: int = 0, limit: int | None = None) -> list[dict]:
        if limit is not None and limit <= 0:
            return []
        entries = self.redis.xrange(
            self._events(job_id), min=f"{since + 1}-0", max="+", count=limit
        )
        return [loads(fields["e"]) for _, fields in entries]

    @_unavailable
    def first_seq(self, job_id: str) -> int | None:
        entries = self.redis.xrange(self._events(job_id), count=1)
        return int(entries[0][0].split("-")[0]) if entries else None

    def _indexes(self, owner: str | None, status: Sequence[JobStatus] | None) -> list[str]:
        base = f"{self.prefix}:owner:{owner}" if owner is not None else None
        if not status:
            return [base or f"{self.prefix}:jobs"]
        names = [JobStatus(s).value for s in status]
        if base:
            return [f"{base}:{s}" for s in names]
        return [f"{self.prefix}:status:{s}" for s in names]

    @_unavailable
    def list_jobs(self, owner=None, status=None, limit=50, offset=0) -> list[JobState]:
        # Newest first from each index, merged: at most offset+limit ids each.
        ranked: list[tuple[float, str]] = []
        for key in self._indexes(owner, status):
            ranked += [
                (score, job_id)
                for job_id, score in self.redis.zrange(
                    key, 0, offset + limit - 1, desc=True, withscores=True
                )
            ]
        ranked.sort(key=lambda pair: (-pair[0], pair[1]))
        ids = [job_id for _, job_id in ranked[offset : offset + limit]]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._job(job_id))
        return [self._state(f) for f in pipe.execute() if f.get("state")]

    @_unavailable
    def list_children(self, parent_id: str) -> list[JobState]:
        ids = self.redis.zrange(f"{self.prefix}:children:{parent_id}", 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._job(job_id))
        return [self._state(f) for f in pipe.execute() if f.get("state")]

    @_unavailable
    def count_jobs(self, owner=None, status=None) -> int:
        return sum(self.redis.zcard(key) for key in self._indexes(owner, status))

    @_unavailable
    def prune(self, finished_before: float) -> int:
        ids = self.redis.zrangebyscore(f"{self.prefix}:finished", "-inf", f"({finished_before}")
        for job_id in ids:
            self._delete(args=[self.prefix, job_id])
        return len(ids)

    @_unavailable
    def stalled(self, updated_before: float) -> list[str]:
        return self.redis.zrangebyscore(f"{self.prefix}:running", "-inf", f"({updated_before}")

    # ------------------------------------------------------------ run history

    def _history(self, kind: str) -> str:
        return f"{self.prefix}:history:{kind}"

    def _history_runs(self, kind: str) -> str:
        return f"{self.prefix}:history-runs:{kind}"

    @_unavailable
    def add_run(
        self, kind: str, run: Mapping[str, Any], keep: int, max_age: float | None = None
    ) -> None:
        job_id, finished_at = run_fields(kind, run)
        if keep <= 0:
            return
        ages: list[Any] = ["", ""]
        if max_age is not None:  # the oldest run kept, and the keys' TTL
            ages = [repr(finished_at - max_age), max(1, math.ceil(max_age * 1000))]
        self._add_run(
            args=[self.prefix, kind, job_id, repr(finished_at), dumps(dict(run)), int(keep), *ages]
        )

    @_unavailable
    def runs(self, kind: str, limit: int, since: float | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        records = self._runs(
            args=[self.prefix, kind, "-inf" if since is None else repr(float(since)), int(limit)]
        )
        return [loads(r) for r in records]

    @_unavailable
    def history_kinds(self) -> list[dict[str, Any]]:
        names = self.redis.zrange(f"{self.prefix}:history-kinds", 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for kind in names:
            pipe.zcard(self._history(kind))
            pipe.zrevrange(self._history(kind), 0, 0, withscores=True)
        answers = pipe.execute()
        kinds = []
        for kind, count, newest in zip(names, answers[::2], answers[1::2], strict=True):
            if count:
                kinds.append({"kind": kind, "runs": count, "last_finished_at": newest[0][1]})
            else:  # its keys expired (max_age): off the index too
                self._forget_expired_kind(args=[self.prefix, kind])
        return sorted(kinds, key=lambda entry: entry["kind"])

    @_unavailable
    def reset_history(self, kind: str | None = None) -> int:
        if kind == "":
            return 0
        return int(self._reset_history(args=[self.prefix, kind or ""]))

    @_unavailable
    def publish(self, channel: str, message: str) -> int:
        """``PUBLISH`` on this store's Redis; returns how many subscribers got it."""
        return self.redis.publish(channel, message)

    @_unavailable
    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()


def same_server(url: str, other: str) -> bool:
    """Whether two Redis URLs reach one Redis server as one user. The
    database number does not matter: pub/sub channels are server-wide. A URL
    redis-py cannot parse (a Sentinel's) is never the same."""

    def where(u: str) -> tuple | None:
        try:
            kw = redis.connection.parse_url(u)
        except ValueError:
            return None
        port = None if "path" in kw else kw.get("port", 6379)
        return (
            kw.get("connection_class"),
            kw.get("host"),
            port,
            kw.get("path"),
            kw.get("username"),
            kw.get("password"),
        )

    here = where(url)
    return here is not None and here == where(other)


class QueuePublisher:
    """A worker's emitter when the store and the message queue are one Redis
    server (:meth:`ProgressTracker.from_urls`): python-socketio's write-only
    ``RedisManager``, without its second round trip.

    The tracker hands it its writes: each update is stored and published by
    the store's append script (:meth:`RedisStore.append_publish`), in one
    round trip and one step, in the message format python-socketio's pub/sub
    listener reads (``PubSubManager._handle_emit``): ``{"method": "emit",
    "event", "data": [event], "binary": false, "namespace", "room",
    "skip_sid": null, "callback": null, "host_id"}`` as JSON on ``channel``.
    Other calls to :meth:`emit` publish one such message.
    """

    def __init__(self, store: RedisStore, channel: str = "flask-socketio") -> None:
        #: the store whose appends publish through this emitter
        self.store = store
        self.channel = channel
        # Like a write-only RedisManager: an id of its own, so no server
        # takes its messages for its own (PubSubManager drops those).
        self.host_id = uuid.uuid4().hex

    def tail(self, rooms: Any, namespace: str | None) -> str:
        """The message after its ``data``, for an emit to ``rooms`` (a room
        or a list of them) on ``namespace``; closes the JSON object."""
        return (
            f',"binary":false,"namespace":{dumps(namespace or "/")},"room":{dumps(rooms)}'
            f',"skip_sid":null,"callback":null,"host_id":"{self.host_id}"}}'
        )

    def emit(self, event: str, data: Any, *, to: Any = None, namespace: str | None = None) -> int:
        """Publish one emit of JSON ``data`` (no binary attachments), as
        python-socketio's ``emit(event, data, to=..., namespace=...)``."""
        args = list(data) if isinstance(data, tuple) else [data]
        message = f'{{"method":"emit","event":{dumps(event)},"data":{dumps(args)}'
        return self.store.publish(self.channel, message + self.tail(to, namespace))
