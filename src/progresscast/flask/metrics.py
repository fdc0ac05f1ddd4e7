"""Prometheus metrics of one app, served at ``<prefix>/metrics``.

Every app gets its own ``CollectorRegistry`` (:attr:`Metrics.registry`),
never prometheus-client's global one, so two apps in one process (tests, an
app factory) keep their numbers apart, and an app with an exporter of its
own can serve ours beside it (``generate_latest(progress.metrics.registry)``).

What is measured, and where:

- connections, connects, refusals and disconnects by reason, socket
  requests by name and result: the ``/progress`` namespace (sockets.py);
- REST requests by endpoint and status: the API's blueprints (api.py);
- events stored, tracker update, store append and emit durations: the
  tracker, through its observer hook (:class:`~progresscast.tracker.TrackerObserver`);
- deliveries and message queue publish failures: our client manager
  (batching.py);
- jobs by status, current connections by transport: read at scrape time.

Safe by default (:func:`check_scraper`): ``/metrics`` answers a request from
this host's loopback that no proxy forwarded, or one that brings
``METRICS_TOKEN`` as a bearer token; anything else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, abort, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from progresscast import Forbidden, JobStatus, Unauthorized
from progresscast.protocol import NAMESPACE

from .context import current_progress
from .errors import register_http_errors

if TYPE_CHECKING:
    from .extension import AppProgress

log = logging.getLogger(__name__)

#: python-engineio's disconnect reasons → our ``reason`` label
ENGINEIO_REASONS = {
    "client disconnect": "client",
    "transport close": "transport_close",
    "transport error": "transport_error",
    "ping timeout": "ping_timeout",
    "server disconnect": "server",
}
#: every ``reason`` of ``progresscast_disconnects_total``: python-engineio's
#: (above), and the server's own cuts (sockets.py, transport/connection.py, batching.py)
DISCONNECT_REASONS = (
    *ENGINEIO_REASONS.values(),
    "slow_reader",  # its unread backlog passed WEBSOCKET_MAX_BACKLOG
    "too_large",  # a message over MAX_HTTP_BUFFER_SIZE
    "expired",  # its token expired
    "flood",  # too many refused requests
    "admin",  # POST /api/admin/disconnect
    "queue_lost",  # the message queue subscription was lost and restored
    "other",
)
TRANSPORTS = ("websocket", "polling")
#: seconds; stores answer in well under a millisecond to tens of milliseconds
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
#: request headers a proxy adds: a request that has one came from elsewhere,
#: whatever its remote address (behind nginx every request comes from 127.0.0.1)
PROXY_HEADERS = (
    "X-Forwarded-For",
    "X-Real-IP",
    "Forwarded",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "Via",
    "X-Envoy-External-Address",
    "CF-Connecting-IP",
    "True-Client-IP",
)


class Metrics:
    """The metrics of one app (``current_progress().metrics``), in
    :attr:`registry`. It is the tracker's observer, and the namespace, the
    API and the client manager report to it."""

    def __init__(self, progress: AppProgress) -> None:
        self.progress = progress
        self._request_children: dict[tuple[str, str], Any] = {}
        self.registry = registry = CollectorRegistry()
        self.connects = Counter(
            "progresscast_connects",
            "Socket.IO connections accepted on /progress",
            registry=registry,
        )
        self.connect_refusals = Counter(
            "progresscast_connect_refusals",
            "Socket.IO connections refused on /progress, by error code",
            ["code"],
            registry=registry,
        )
        self.disconnects = Counter(
            "progresscast_disconnects",
            "Socket.IO connections on /progress that ended, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in DISCONNECT_REASONS:
            self.disconnects.labels(reason)
        self.socket_requests = Counter(
            "progresscast_socket_requests",
            "Socket.IO requests on /progress, by name and result (ok or the error code)",
            ["request", "result"],
            registry=registry,
        )
        self.http_requests = Counter(
            "progresscast_http_requests",
            "REST API requests, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.events_stored = Counter(
            "progresscast_events_stored",
            "Job events this process stored, by type",
            ["type"],
            registry=registry,
        )
        self.emits = Counter(
            "progresscast_emits",
            "Job events this process emitted (each once, to all its rooms)",
            registry=registry,
        )
        self.emit_failures = Counter(
            "progresscast_emit_failures",
            "Job events this process stored but could not emit (clients get them on resume)",
            registry=registry,
        )
        self.deliveries = Counter(
            "progresscast_deliveries",
            "Messages sent to this server's /progress connections (an event to a room of"
            " 10 counts 10), from this process, workers and other instances alike",
            registry=registry,
        )
        self.queue_publish_failures = Counter(
            "progresscast_queue_publish_failures",
            "Messages this server could not publish on the message queue",
            registry=registry,
        )
        self.update_seconds = Histogram(
            "progresscast_tracker_update_seconds",
            "Time to apply one request to a job: state machine, store append and emit",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.append_seconds = Histogram(
            "progresscast_store_append_seconds",
            "Time to append a request's events and the job's state to the store",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.emit_seconds = Histogram(
            "progresscast_emit_seconds",
            "Time to emit a request's events (to this server's rooms, or to the message queue)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        #: SSE streams open (issue 15's SSE endpoints move it; 0 until then)
        self.sse_streams = Gauge(
            "progresscast_sse_streams", "Server-Sent Events streams open", registry=registry
        )
        registry.register(_ScrapeTime(progress))

    # ------------------------------------------------ the tracker's observer

    def applied(self, kind: str, seconds: float) -> None:
        self.update_seconds.observe(seconds)

    def stored(self, events: list[dict[str, Any]], seconds: float) -> None:
        self.append_seconds.observe(seconds)
        for event in events:
            self.events_stored.labels(event["type"]).inc()

    def published(self, events: list[dict[str, Any]], seconds: float, failed: int) -> None:
        self.emit_seconds.observe(seconds)
        self.emits.inc(len(events) - failed)
        if failed:
            self.emit_failures.inc(failed)

    # ------------------------------------------------ the namespace and the API

    def connected(self) -> None:
        self.connects.inc()

    def refused(self, code: str) -> None:
        self.connect_refusals.labels(code).inc()

    def disconnected(self, reason: str) -> None:
        self.disconnects.labels(reason if reason in DISCONNECT_REASONS else "other").inc()

    def socket_request(self, name: str, result: str) -> None:
        # labels() takes a lock and builds a key each time: keep the children
        # (a bounded set: request names and error codes are the protocol's)
        child = self._request_children.get((name, result))
        if child is None:
            child = self._request_children[name, result] = self.socket_requests.labels(name, result)
        child.inc()

    def http_request(self, endpoint: str | None, status: int) -> None:
        self.http_requests.labels(endpoint or "unknown", str(status)).inc()

    # ------------------------------------------------ the client manager

    def delivered(self, count: int) -> None:
        if count:
            self.deliveries.inc(count)

    def publish_failed(self) -> None:
        self.queue_publish_failures.inc()


class _ScrapeTime:
    """What is cheaper to read when scraped than to keep up to date:
    connections by transport, users connected, jobs by status, the queue's
    subscription."""

    def __init__(self, progress: AppProgress) -> None:
        self.progress = progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        progress = self.progress
        connections = GaugeMetricFamily(
            "progresscast_connections",
            "Socket.IO connections open on /progress, by transport",
            labels=["transport"],
        )
        by_transport = dict.fromkeys(TRANSPORTS, 0)
        namespace = progress.namespace
        server = progress.socketio.server
        if namespace is not None:
            for sid in list(namespace.connections):
                by_transport[transport(server, sid)] += 1
        for name, count in by_transport.items():
            connections.add_metric([name], count)
        yield connections
        yield GaugeMetricFamily(
            "progresscast_connected_users",
            "Distinct users with a connection open on /progress",
            value=len(namespace.per_user) if namespace is not None else 0,
        )
        jobs = GaugeMetricFamily(
            "progresscast_jobs", "Jobs in the store, by status", labels=["status"]
        )
        try:
            for status in JobStatus:
                jobs.add_metric([status.value], progress.tracker.count_jobs(None, [status]))
        except Exception as exc:  # the store is down: the rest of the scrape still counts
            log.warning("metrics: jobs by status unavailable: %s", exc)
        else:
            yield jobs
        # Without a message queue every event is emitted here: nothing to wait for (1).
        subscribed = not progress.message_queue_url or getattr(server.manager, "subscribed", True)
        yield GaugeMetricFamily(
            "progresscast_queue_subscribed",
            "1 while this server is subscribed to the message queue (always 1 without one)",
            value=1 if subscribed else 0,
        )


def transport(server: Any, sid: str) -> str:
    """``websocket`` or ``polling``: how connection ``sid`` of ``/progress`` talks now."""
    eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
    sock = server.eio.sockets.get(eio_sid) if eio_sid is not None else None
    return "websocket" if sock is not None and sock.upgraded else "polling"


# --------------------------------------------------------------- the endpoint

pages = Blueprint("progresscast_metrics", __name__)
register_http_errors(pages)


def is_local(environ: dict[str, Any]) -> bool:
    """The request comes from this host's loopback and no proxy forwarded it
    (a proxy on this host connects from loopback too: its headers tell)."""
    if any("HTTP_" + h.upper().replace("-", "_") in environ for h in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(environ.get("REMOTE_ADDR") or "")
    except ValueError:  # a Unix socket, or nothing
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def check_scraper(environ: dict[str, Any], authorization: str | None, token: str | None) -> None:
    """Let a scraper in, or raise: a request bringing ``token`` as its
    bearer token, else one from this host (:func:`is_local`)."""
    if authorization is not None and token is not None:
        scheme, _, given = authorization.partition(" ")
        # bytes: compare_digest refuses non-ASCII str (a 500 for "Bearer é")
        expected = token.encode("utf-8")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), expected
        ):
            return
        raise Unauthorized("wrong metrics token")
    if not is_local(environ):
        raise Forbidden(
            "metrics are served to this host only, or with the metrics token"
            " (METRICS_TOKEN) as a bearer token"
        )


@pages.get("/metrics")
def metrics() -> Response:
    """The app's metrics in Prometheus' text format (OpenMetrics when asked)."""
    progress = current_progress()
    if progress.metrics is None:
        abort(404)
    check_scraper(
        request.environ, request.headers.get("Authorization"), progress.settings["METRICS_TOKEN"]
    )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encoder(progress.metrics.registry), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def register_metrics(app: Any, url_prefix: str) -> None:
    """``<url_prefix>/metrics``."""
    app.register_blueprint(pages, url_prefix=url_prefix)
