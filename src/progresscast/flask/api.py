"""REST API under ``<prefix>/api`` (DESIGN §5), documented by flask-smorest
at ``<prefix>/api/openapi.json``."""

from __future__ import annotations

import flask_smorest
from flask import Flask, Response, request
from flask.views import MethodView
from flask_smorest import Api

from progresscast import JobStatus, ProgressCastError, RateLimited

from .access import cancellable_job, job_owner, readable_job, writable_job
from .auth import http_principal
from .context import current_progress, get_tracker
from .errors import register_http_errors
from .jsonutil import StrictParser
from .origin import check_cookie_write
from .schemas import (
    CancelSchema,
    ErrorSchema,
    EventPageSchema,
    EventsQuerySchema,
    IngestEventSchema,
    IngestResultSchema,
    JobCreateSchema,
    JobListQuerySchema,
    JobSnapshotSchema,
)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()


blp = Blueprint("jobs", __name__, description="Jobs and their events")
# Every error under the API answers {code, message, details?}, whatever
# handlers the app has for its own pages.
register_http_errors(blp)


class ProgressApi(Api):
    """flask-smorest's Api with our error body ``{code, message, details?}``,
    and its error handlers on our blueprint only: flask-smorest puts them on
    the whole app, which would turn the app's own error pages into JSON."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        pass


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobSnapshotSchema(many=True))
    @blp.paginate(page_size=50, max_page_size=200)
    def get(self, query, pagination_parameters):
        """The caller's jobs, newest first. Filter with ``status``."""
        principal = http_principal(request)
        tracker = get_tracker()
        status = [JobStatus(s) for s in query.get("status", [])] or None
        total = tracker.count_jobs(principal.user_id, status)
        pagination_parameters.item_count = total
        if pagination_parameters.first_item >= total:
            return []  # past the end (also keeps absurd page numbers away from the store)
        jobs = tracker.list_jobs(
            principal.user_id,
            status,
            limit=pagination_parameters.page_size,
            offset=pagination_parameters.first_item,
        )
        now = tracker.clock()
        return [job.snapshot(now) for job in jobs]

    @blp.arguments(JobCreateSchema)
    @blp.response(201, JobSnapshotSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="job_id already taken")
    def post(self, body):
        """Create a job owned by the caller (``job_queued``, or ``job_started``
        with ``start: true``); with ``children``, a group: the parent (the
        answer) and its queued children."""
        principal = http_principal(request)
        tracker = get_tracker()
        if "children" in body:
            state, _ = tracker.group(
                body["name"],
                body["children"],
                owner=job_owner(principal, body.get("owner")),
                job_id=body.get("job_id"),
                metadata=body["metadata"],
            )
            return state.snapshot(tracker.clock())
        state = tracker.create_job(
            body["name"],
            body["stages"],
            owner=job_owner(principal, body.get("owner")),
            job_id=body.get("job_id"),
            metadata=body["metadata"],
            start=body["start"],
            kind=body.get("kind"),
            weights=body["weights"],
        )
        return state.snapshot(tracker.clock())


@blp.route("/<job_id>")
class Job(MethodView):
    @blp.response(200, JobSnapshotSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such job, or not yours")
    def get(self, job_id):
        """One job's snapshot."""
        tracker = get_tracker()
        state = readable_job(tracker, http_principal(request), job_id)
        return state.snapshot(tracker.clock())


@blp.route("/<job_id>/children")
class JobChildren(MethodView):
    @blp.response(200, JobSnapshotSchema(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="no such job, or not yours")
    def get(self, job_id):
        """A group's children, in the order they were created (none for other jobs)."""
        tracker = get_tracker()
        readable_job(tracker, http_principal(request), job_id)
        now = tracker.clock()
        return [child.snapshot(now) for child in tracker.children(job_id)]


@blp.route("/<job_id>/events")
class JobEvents(MethodView):
    @blp.arguments(EventsQuerySchema, location="query")
    @blp.response(200, EventPageSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such job, or not yours")
    def get(self, query, job_id):
        """Stored events with ``seq > since``, ascending, at most ``limit``."""
        tracker = get_tracker()
        readable_job(tracker, http_principal(request), job_id)
        page = tracker.events_page(job_id, query["since"], query["limit"])
        return {
            "job_id": job_id,
            "seq": page.seq,
            "events": page.events,
            "truncated": page.truncated,
        }

    @blp.arguments(IngestEventSchema)
    @blp.response(201, IngestResultSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such job, or not yours")
    @blp.alt_response(409, schema=ErrorSchema, description="illegal transition")
    def post(self, body, job_id):
        """Report progress over HTTP, for pipelines in any language.

        The tracker applies the same state machine as the Python emitter and
        fills in ``seq``, ``ts``, overall ``progress``, ETA and elapsed time.
        A ``progress_update`` naming a later stage completes the current one.
        """
        tracker = get_tracker()
        principal = http_principal(request)
        writable_job(tracker, principal, job_id)
        kind = body.pop("type")
        # Only a service or admin token speaks for every user of a pipeline:
        # another caller's completion does not teach its kind's ETA history.
        teach = principal.service or principal.admin
        events, state = tracker.apply(job_id, kind, teach=teach, **body)
        return {"events": events, "job": state.snapshot(tracker.clock())}


@blp.route("/<job_id>/cancel")
class JobCancel(MethodView):
    @blp.arguments(CancelSchema)
    @blp.response(202, JobSnapshotSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such job, or not yours")
    @blp.alt_response(409, schema=ErrorSchema, description="the job has already ended")
    def post(self, body, job_id):
        """Ask for the job to be cancelled.

        A queued job is cancelled at once. A running one gets the request
        (``cancel_requested`` in the snapshot); ``job_cancelled`` follows once
        its pipeline stops.
        """
        tracker = get_tracker()
        cancellable_job(tracker, http_principal(request), job_id)
        state = tracker.request_cancel(job_id, body.get("reason"))
        return state.snapshot(tracker.clock())


def guard() -> None:
    """Rate limit per user (per address for calls without identity), 429
    beyond it; cross-site writes refused for callers signed in by cookie.
    Runs before every request of the API's blueprints."""
    progress = current_progress()
    try:  # bucket keys (not Socket.IO rooms)
        principal = http_principal(request)
        key = "user:" + principal.user_id
    except ProgressCastError:
        principal = None
        key = "addr:" + (request.remote_addr or "?")  # the view answers the 401
    if not progress.http_buckets.take(key):
        raise RateLimited(f"more than {progress.settings['HTTP_RATE']} requests per second")
    if principal is not None and principal.session:
        check_cookie_write(
            request.environ, request.method, progress.settings["CORS_ALLOWED_ORIGINS"]
        )


def count_request(response: Response) -> Response:
    """Count the request in the app's metrics, by endpoint and status
    (after every request of the API's blueprints)."""
    metrics = current_progress().metrics
    if metrics is not None:
        metrics.http_request(request.endpoint, response.status_code)
    return response


blp.before_request(guard)
blp.after_request(count_request)


#: flask-smorest's settings, given to it with the extension's config prefix
#: unless the app set them
API_DEFAULTS = {
    "API_TITLE": "progresscast",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_JSON_PATH": "openapi.json",
    "API_SPEC_OPTIONS": {
        "info": {"description": "Live progress for long-running jobs. See docs/protocol.md."},
        "security": [{"bearer": []}],
    },
}


def register_api(app: Flask, url_prefix: str, config_prefix: str) -> ProgressApi:
    """The REST API at ``<url_prefix>/api``, its OpenAPI document at
    ``<url_prefix>/api/openapi.json``."""
    for key, value in {**API_DEFAULTS, "OPENAPI_URL_PREFIX": url_prefix + "/api"}.items():
        app.config.setdefault(config_prefix + key, value)
    api = ProgressApi(app, config_prefix=config_prefix)
    # Every endpoint takes the bearer token (API_SPEC_OPTIONS sets it globally).
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    # "jobs" names the API's tag and endpoints, unless the app has a "jobs" of its own.
    name = "jobs" if "jobs" not in app.blueprints else "progresscast_jobs"
    api.register_blueprint(blp, name=name, url_prefix=url_prefix + "/api/jobs")
    return api
