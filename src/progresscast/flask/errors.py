"""Errors → error acks and HTTP responses, in one place.

Socket handlers wrapped in :func:`socket_request` ack
``{ok: false, error: {code, message, details?}}``; HTTP errors are JSON
``{code, message, details?}``. Bad input never becomes a 500, and an
unexpected exception is logged and answered ``internal`` without details.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import Blueprint, Flask, jsonify
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

from progresscast import InvalidPayload, ProgressCastError

log = logging.getLogger(__name__)

#: HTTP status → protocol code for errors raised by Flask, webargs and werkzeug.
HTTP_CODES = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "invalid_payload",
    422: "invalid_payload",
    429: "rate_limited",
}


def invalid(err: ValidationError) -> InvalidPayload:
    """A marshmallow error as :class:`InvalidPayload` with per-field details."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    fields = ", ".join(sorted(messages))
    return InvalidPayload(f"invalid payload: check {fields}", details=messages)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data`` against ``schema`` or raise :class:`InvalidPayload`."""
    try:
        return schema.load(data)
    except ValidationError as err:
        raise invalid(err) from None


def error_ack(exc: ProgressCastError) -> dict[str, Any]:
    return {"ok": False, "error": exc.to_dict()}


def socket_request(schema: Schema):
    """Decorate a namespace handler ``fn(self, sid, principal, payload)``,
    called as ``handler(sid, *args)`` (sockets.py, without a Flask context).

    Validates the single payload argument with ``schema`` and turns every
    error into an error ack, so a bad message never drops the connection.
    """

    # A schema with no required field takes an empty payload as it is: no
    # marshmallow run for the commonest request (ping {}).
    try:
        empty_ok = schema.load({}) == {}
    except ValidationError:
        empty_ok = False

    def decorate(fn):
        @functools.wraps(fn)
        def handler(self, sid, *args):
            try:
                if len(args) > 1:
                    raise InvalidPayload(
                        "send one payload object",
                        details={"_schema": [f"expected 1 argument, got {len(args)}"]},
                    )
                data = args[0] if args and args[0] is not None else {}
                payload = {} if empty_ok and data == {} else load(schema, data)
                return fn(self, sid, self.principal(sid), payload)
            except ProgressCastError as exc:
                return error_ack(exc)
            except Exception:
                log.exception("socket handler %s failed", fn.__name__)
                return {"ok": False, "error": {"code": "internal", "message": "internal error"}}

        return handler

    return decorate


def register_http_errors(scope: Flask | Blueprint) -> None:
    """JSON ``{code, message, details?}`` for every HTTP error of ``scope``:
    a blueprint, or the whole app when it is all ours (the standalone server)."""

    @scope.errorhandler(ProgressCastError)
    def _library_error(exc: ProgressCastError):
        return jsonify(exc.to_dict()), exc.http_status

    @scope.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        body: dict[str, Any] = {
            "code": HTTP_CODES.get(status, "internal" if status >= 500 else "error"),
            "message": exc.description or exc.name,
        }
        # webargs puts field errors in exc.data["messages"]: {location: {field: [...]}}
        messages = (getattr(exc, "data", None) or {}).get("messages")
        if messages:
            body["details"] = messages
            fields = sorted(
                f"{loc}.{name}" if isinstance(errs, dict) else loc
                for loc, errs in messages.items()
                for name in (errs if isinstance(errs, dict) else [None])
            )
            body["message"] = f"invalid request: check {', '.join(fields)}"
        return jsonify(body), status

    @scope.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error")
        return jsonify({"code": "internal", "message": "internal error"}), 500
