"""marshmallow schemas: every payload that enters is validated here, and the
REST API's OpenAPI document is generated from the same classes."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from progresscast.groups import MAX_CHILDREN, MAX_WEIGHT
from progresscast.protocol import JOB_ID_RE
from progresscast.state import MAX_UNIT, WEIGHT_MODES, EventType, JobStatus
from progresscast.tokens import USER_ID_RE

MAX_NAME = 200
MAX_MESSAGE = 2000
MAX_REASON = 500

JobId = fields.String(
    required=True,
    validate=validate.Regexp(JOB_ID_RE, error="1-128 letters, digits, '_', '.', '-'"),
    metadata={"example": "a3f9c2"},
)


MAX_SEQ = 2**63 - 1  # SQLite's INTEGER range


class StrictFloat(fields.Float):
    """A JSON number: no strings like "50", no booleans, nothing non-finite."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: no "yes", no 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# --------------------------------------------------------------- socket requests


class JoinJobSchema(StrictSchema):
    job_id = fields.String(required=True, validate=JobId.validate)
    since = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=MAX_SEQ), allow_none=True
    )


class JobRefSchema(StrictSchema):
    job_id = fields.String(required=True, validate=JobId.validate)


class EmptySchema(StrictSchema):
    pass


class WatchJobsSchema(StrictSchema):
    all = StrictBoolean(metadata={"description": "admins only: every user's jobs"})
    batch = StrictBoolean(
        metadata={
            "description": "get job_events frames every BATCH_INTERVAL instead of"
            " each event on its own"
        }
    )


# ------------------------------------------------------------------ REST inputs


class StageField(fields.Field):
    """A stage: a name (weight 1) or ``{name, weight}``."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"name", "weight"}
            if unknown:
                raise ValidationError(f"unknown keys: {', '.join(sorted(unknown))}")
            if not isinstance(value.get("name"), str):
                raise ValidationError("'name' must be a string")
            weight = value.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValidationError("'weight' must be a number")
            return {"name": value["name"], "weight": weight}
        raise ValidationError("a stage is a name or {name, weight}")


KIND_DOC = "the pipeline this job is a run of, for the ETA's history (default: the name)"

STAGE_DOC = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": 100},
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "weight": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
    ]
}


class ChildCreateSchema(StrictSchema):
    """One child of a group created with ``POST /api/jobs``."""

    name = fields.String(required=True, validate=validate.Length(1, MAX_NAME))
    stages = fields.List(
        StageField(metadata=STAGE_DOC), required=True, validate=validate.Length(1, 100)
    )
    job_id = fields.String(validate=JobId.validate)
    weight = StrictFloat(
        allow_nan=False,
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_WEIGHT),
        load_default=1.0,
        metadata={"description": "its weight in the parent's progress"},
    )
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    kind = fields.String(validate=validate.Length(1, MAX_NAME), metadata={"description": KIND_DOC})


class JobCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(1, MAX_NAME))
    stages = fields.List(StageField(metadata=STAGE_DOC), validate=validate.Length(1, 100))
    children = fields.List(
        fields.Nested(ChildCreateSchema),
        validate=validate.Length(1, MAX_CHILDREN),
        metadata={"description": "a group: the parent and these children, all queued"},
    )
    job_id = fields.String(validate=JobId.validate)
    owner = fields.String(
        validate=validate.Regexp(USER_ID_RE, error="invalid user id"),
        metadata={"description": "service tokens only: create the job for this user"},
    )
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    start = StrictBoolean(
        load_default=False,
        metadata={"description": "emit job_started at once instead of job_queued"},
    )
    kind = fields.String(validate=validate.Length(1, MAX_NAME), metadata={"description": KIND_DOC})
    weights = fields.String(
        validate=validate.OneOf(WEIGHT_MODES),
        load_default="declared",
        metadata={"description": '"auto": stage weights learned from the kind\'s history at start'},
    )

    @validates_schema
    def _stages_or_children(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("stages" in data) == ("children" in data):
            raise ValidationError("give stages (a job) or children (a group)", "_schema")
        if "children" in data and data["start"]:
            raise ValidationError("a group starts with its first child", "start")
        if "children" in data and ("kind" in data or data["weights"] != "declared"):
            raise ValidationError(
                "a group's parent has no kind or weights; its children may", "kind"
            )


class JobListQuerySchema(StrictSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in JobStatus])),
        metadata={"description": "repeat to filter by several statuses"},
    )


class EventsQuerySchema(StrictSchema):
    since = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_SEQ))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=1000))


INGESTIBLE = [e.value for e in EventType if e is not EventType.JOB_QUEUED]


class IngestEventSchema(StrictSchema):
    """One event posted by a pipeline over HTTP; the tracker fills in the rest."""

    type = fields.String(required=True, validate=validate.OneOf(INGESTIBLE))
    stage = fields.String(validate=validate.Length(1, 100), allow_none=True)
    next_stage = fields.String(validate=validate.Length(1, 100), allow_none=True)
    stage_progress = StrictFloat(
        allow_nan=False,
        validate=validate.Range(0, 100),
        allow_none=True,
        metadata={"description": "percent of the current stage, 0-100"},
    )
    message = fields.String(validate=validate.Length(max=MAX_MESSAGE), allow_none=True)
    result = fields.Raw(allow_none=True, metadata={"description": "any JSON value"})
    error = fields.Raw(
        allow_none=True,
        metadata={
            "description": "a message, or {message, type}",
            "oneOf": [{"type": "string"}, {"type": "object"}],
        },
    )
    reason = fields.String(validate=validate.Length(max=MAX_REASON), allow_none=True)
    n = StrictFloat(
        allow_nan=False,
        validate=validate.Range(min=0),
        allow_none=True,
        metadata={"description": "units done in the current stage"},
    )
    total = StrictFloat(
        allow_nan=False,
        validate=validate.Range(min=0, min_inclusive=False),
        allow_none=True,
        metadata={"description": "units in the current stage; null: indeterminate"},
    )
    unit = fields.String(
        validate=validate.Length(1, MAX_UNIT), allow_none=True, metadata={"example": "rows"}
    )


# ----------------------------------------------------------------- REST outputs


class StageStateSchema(Schema):
    name = fields.String()
    weight = fields.Float()
    status = fields.String()
    progress = fields.Float()


class ErrorInfoSchema(Schema):
    message = fields.String()
    stage = fields.String(allow_none=True)
    type = fields.String()


class JobSnapshotSchema(Schema):
    job_id = fields.String()
    name = fields.String()
    owner = fields.String()
    status = fields.String(validate=validate.OneOf([s.value for s in JobStatus]))
    stages = fields.List(fields.Nested(StageStateSchema))
    stage = fields.String(allow_none=True)
    progress = fields.Float()
    stage_progress = fields.Float()
    message = fields.String(allow_none=True)
    eta_seconds = fields.Float(allow_none=True)
    eta_low = fields.Float(allow_none=True, metadata={"description": "a range, from history"})
    eta_high = fields.Float(allow_none=True)
    elapsed_seconds = fields.Float(allow_none=True)
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    error = fields.Nested(ErrorInfoSchema, allow_none=True)
    metadata = fields.Dict()
    seq = fields.Integer()
    cancel_requested = fields.String(
        allow_none=True, metadata={"description": "reason of a pending cancellation request"}
    )
    n = fields.Float(allow_none=True, metadata={"description": "the current stage's count"})
    total = fields.Float(allow_none=True)
    unit = fields.String(allow_none=True)
    rate = fields.Float(allow_none=True, metadata={"description": "units per second, smoothed"})
    parent_id = fields.String(allow_none=True, metadata={"description": "a child's parent"})
    children = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        allow_none=True,
        metadata={"description": "a parent's children by status, and their total"},
    )
    kind = fields.String(metadata={"description": KIND_DOC})
    weights = fields.String(
        validate=validate.OneOf(["declared", "learned"]),
        metadata={"description": '"learned" when history set the stage weights'},
    )


class CancelSchema(StrictSchema):
    reason = fields.String(validate=validate.Length(max=MAX_REASON), allow_none=True)


class CancelJobSchema(StrictSchema):
    job_id = fields.String(required=True, validate=JobId.validate)
    reason = fields.String(validate=validate.Length(max=MAX_REASON), allow_none=True)


class EventSchema(Schema):
    """A job event; type-specific fields as in docs/protocol.md."""

    class Meta:
        unknown = RAISE

    job_id = fields.String()
    seq = fields.Integer()
    type = fields.String(validate=validate.OneOf([e.value for e in EventType]))
    ts = fields.String()


class EventPageSchema(Schema):
    job_id = fields.String()
    seq = fields.Integer(metadata={"description": "the job's latest seq"})
    events = fields.List(fields.Dict(), metadata={"description": "events, ascending seq"})
    truncated = fields.Boolean(
        metadata={"description": "history no longer reaches back to `since`"}
    )


class IngestResultSchema(Schema):
    events = fields.List(fields.Dict())
    job = fields.Nested(JobSnapshotSchema)


class ErrorSchema(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Raw()
