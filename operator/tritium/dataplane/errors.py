"""Errors the data plane answers with: one exception type that knows its HTTP status.

Every failure a client can see is raised as :class:`ApiError` somewhere close to its cause, so
the handlers never guess a status code and nothing reaches the client as a bare 500.
"""

from __future__ import annotations

from typing import Any

import orjson

REQUEST_ID_HEADER = "X-Request-Id"
TIMEOUT_HEADER = "X-Request-Timeout"
REVISION_HEADER = "X-Tritium-Revision"
CACHE_HEADER = "X-Tritium-Cache"
STAGE_ERROR_HEADER = "X-Tritium-Stage-Error"  # set by a stage on its own error answers


class ApiError(Exception):
    """A failure with the HTTP status, a stable code, a message and optionally the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def payload(self, request_id: str | None = None) -> dict[str, Any]:
        """The Tritium error envelope: {"error": {code, message, field?, request_id}}."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        if request_id:
            err["request_id"] = request_id
        return {"error": err}

    def v2_payload(self, request_id: str | None = None) -> dict[str, Any]:
        """The KServe v2 error shape ({"error": "<message>"}) that Triton clients parse, plus our details."""
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        if request_id:
            body["request_id"] = request_id
        return body

    def to_json(self, request_id: str | None = None, *, v2: bool = False) -> bytes:
        return orjson.dumps(self.v2_payload(request_id) if v2 else self.payload(request_id))

    @classmethod
    def from_payload(cls, status: int, payload: Any, default_code: str = "error") -> ApiError:
        """Rebuild an error a stage answered with (its envelope), keeping status, code and field."""
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            return cls(status, str(err.get("code", default_code)), str(err.get("message", "")), field=err.get("field"))
        return cls(status, default_code, str(err if err is not None else payload))


def bad_request(message: str, field: str | None = None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message, field=field)


# orjson reads JSON up to 1024 levels deep but writes at most 254: a body it parsed can be too deep
# for the cache key or a stage message built from it. Such a body is the client's problem (no model
# takes tensors nested that deep: numpy stops at 32 dimensions), so it gets a 400, not a 500.
_TOO_DEEP = "Recursion limit reached"


def refuse_if_too_deep(exc: orjson.JSONEncodeError) -> None:
    """Raise the 400 when orjson could not write a request's JSON for its nesting; else return."""
    if str(exc) == _TOO_DEEP:
        raise bad_request("the body nests lists or objects too deeply (more than 250 levels)", "body") from None


def dumps_request_json(value: Any, option: int = 0) -> bytes:
    """orjson.dumps of what a client sent, with nesting beyond orjson's limit answered as a 400."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        refuse_if_too_deep(exc)
        raise
