"""API errors as the Kubernetes API server reports them: a metav1 Status with reason, code and causes.

`Cause` is one field error (upstream's `field.Error`); `APIError` is a Status error. Messages are
worded as upstream's `apimachinery/pkg/api/errors` and `util/validation/field` word them, so a
user reading kubectl's output sees what they would see against a real cluster.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_FOUND = "FieldValueNotFound"
UNKNOWN = "FieldValueUnknown"

_TYPE_WORDS = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    TYPE_INVALID: "Invalid value",
    NOT_FOUND: "Not found",
}


def format_value(value) -> str:
    """A bad value as Go's field errors print it: strings quoted, numbers and booleans bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Cause:
    """One field error: `type` is a metav1 CauseType, `message` the error body without the field."""

    type: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict:
        return {"reason": self.type, "message": self.message, "field": self.field}

    @classmethod
    def _body(cls, type_: str, field: str, value=None, detail: str = "", show_value=True) -> "Cause":
        words = _TYPE_WORDS[type_]
        body = f"{words}: {format_value(value)}" if show_value else words
        if detail:
            body += f": {detail}"
        return cls(type_, field, body)

    @classmethod
    def required(cls, field: str, detail: str = "") -> "Cause":
        return cls._body(REQUIRED, field, detail=detail, show_value=False)

    @classmethod
    def invalid(cls, field: str, value, detail: str = "") -> "Cause":
        return cls._body(INVALID, field, value, detail)

    @classmethod
    def not_supported(cls, field: str, value, supported) -> "Cause":
        detail = ""
        if supported:
            detail = "supported values: " + ", ".join(json.dumps(v) for v in supported)
        return cls._body(NOT_SUPPORTED, field, value, detail)

    @classmethod
    def duplicate(cls, field: str, value) -> "Cause":
        return cls._body(DUPLICATE, field, value)

    @classmethod
    def forbidden(cls, field: str, detail: str) -> "Cause":
        return cls._body(FORBIDDEN, field, detail=detail, show_value=False)

    @classmethod
    def too_long(cls, field: str, max_length: int) -> "Cause":
        return cls._body(TOO_LONG, field, detail=f"may not be more than {max_length} bytes",
                         show_value=False)

    @classmethod
    def too_many(cls, field: str, actual: int, max_items: int) -> "Cause":
        return cls._body(TOO_MANY, field, actual, f"must have at most {max_items} items")

    @classmethod
    def type_invalid(cls, field: str, value, detail: str) -> "Cause":
        return cls._body(TYPE_INVALID, field, value, detail)

    @classmethod
    def not_found(cls, field: str, value) -> "Cause":
        return cls._body(NOT_FOUND, field, value)

    @classmethod
    def unknown(cls, field: str) -> "Cause":
        """A field the schema does not know, as strict decoding reports it."""
        return cls(UNKNOWN, field, f"unknown field {json.dumps(field)}")


def _group_resource(gr) -> tuple[str, str]:
    if gr is None:
        return "", ""
    if isinstance(gr, tuple):
        return gr[0], gr[1]
    return gr.group, gr.plural


def _qualified(group: str, name: str) -> str:
    """GroupResource/GroupKind String(): `pods`, `deployments.apps`."""
    return f"{name}.{group}" if group else name


class APIError(Exception):
    """A failed API call, carried to the client as a metav1 Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    @property
    def causes(self) -> list[dict]:
        return self.details.get("causes", [])

    def __repr__(self) -> str:
        return f"APIError({self.code}, {self.reason!r}, {self.message!r})"


def _details(group: str, kind: str, name: str, causes: list[dict] | None = None) -> dict:
    details = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = causes
    return details


def not_found(gr, name: str) -> APIError:
    group, resource = _group_resource(gr)
    return APIError(404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
                    _details(group, resource, name))


def already_exists(gr, name: str) -> APIError:
    group, resource = _group_resource(gr)
    return APIError(409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
                    _details(group, resource, name))


def conflict(gr, name: str, message: str) -> APIError:
    group, resource = _group_resource(gr)
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {message}',
                    _details(group, resource, name))


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> APIError:
    """422 Invalid; the message aggregates the distinct field errors as upstream's ToAggregate does."""
    texts = list(dict.fromkeys(str(c) for c in causes))
    message = f'{_qualified(group, kind)} "{name}" is invalid'
    if len(texts) == 1:
        message += f": {texts[0]}"
    elif texts:
        message += ": [" + ", ".join(texts) + "]"
    return APIError(422, "Invalid", message,
                    _details(group, kind, name, [c.to_dict() for c in causes]) or {})


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def forbidden(gr, name: str, message: str) -> APIError:
    group, resource = _group_resource(gr)
    if not resource:
        text = f"forbidden: {message}"
    elif not name:
        text = f"{_qualified(group, resource)} is forbidden: {message}"
    else:
        text = f'{_qualified(group, resource)} "{name}" is forbidden: {message}'
    return APIError(403, "Forbidden", text, _details(group, resource, name))


def unauthorized(message: str = "Unauthorized") -> APIError:
    return APIError(401, "Unauthorized", message)


def method_not_supported(gr, action: str) -> APIError:
    group, resource = _group_resource(gr)
    return APIError(405, "MethodNotAllowed",
                    f'{action} is not supported on resources of kind "{_qualified(group, resource)}"',
                    _details(group, resource, ""))


def gone(message: str) -> APIError:
    """410 Expired: a watch or list asked for a resourceVersion older than the compacted history."""
    return APIError(410, "Expired", message)


ACCEPTED_MEDIA_TYPES = ("application/json", "application/merge-patch+json",
                        "application/strategic-merge-patch+json", "application/json-patch+json")


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({content_type or 'none'})"
                    " - accepted media types include: " + ", ".join(ACCEPTED_MEDIA_TYPES))


def not_acceptable(accept: str) -> APIError:
    return APIError(406, "NotAcceptable",
                    f"the requested media type {accept!r} is not served;"
                    " only the following media types are accepted: application/json")


def unprocessable(message: str) -> APIError:
    return APIError(422, "Invalid", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def too_many_requests(message: str) -> APIError:
    return APIError(429, "TooManyRequests", message)


def timeout(message: str) -> APIError:
    return APIError(504, "Timeout", message)
