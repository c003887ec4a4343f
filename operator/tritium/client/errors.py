"""Typed errors of the SDK: one class per thing a caller can do something about.

Every error carries the gateway's own message, its stable ``code`` (``invalid_input``,
``triton_unavailable``...), the ``field`` at fault when the gateway names one, and the request id,
so that a log line is enough to find the request in the gateway's logs and metrics.

Example::

    try:
        client.invoke(model_id="add", inputs={"INPUT0": [1, 2]})
    except InvalidInputError as exc:
        print(exc.field, exc.message)      # inputs.INPUT1  input 'INPUT1' is required...
    except ServiceUnavailableError as exc:
        print("retry in", exc.retry_after)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "DeadlineExceededError",
    "InvalidInputError",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TritiumError",
    "error_from_payload",
]


class TritiumError(Exception):
    """Base of every SDK error.

    ``status_code`` is None for failures that never got an HTTP answer (connection refused,
    client-side deadline).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status_code, self.code) if p is not None)
        text = f"{head}: {self.message}" if head else self.message
        if self.field:
            text += f" (field {self.field})"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class APIConnectionError(TritiumError):
    """The gateway could not be reached, or the connection broke before an answer arrived."""


class AuthenticationError(TritiumError):
    """401: no API key, or one the server does not accept."""


class PermissionDeniedError(TritiumError):
    """403: the key is valid but may not call this model."""


class InvalidInputError(TritiumError):
    """400, 413 or 415: the request itself is wrong; ``field`` names the part at fault.

    Retrying the same request gives the same answer.
    """


class ModelNotFoundError(TritiumError):
    """404: the model (or version, or route) is not served by this endpoint."""


class RateLimitError(TritiumError):
    """429: refused for lack of capacity before running; ``retry_after`` is the server's hint in seconds."""


class ServiceUnavailableError(TritiumError):
    """503: Triton or a stage is down or restarting; ``field`` says which stage when it is one."""


class DeadlineExceededError(TritiumError):
    """504 from the gateway, or the call's own total timeout passed on the client side."""


class ServerError(TritiumError):
    """Any other 5xx: the model raised (500 ``model_error``), a stage failed (502 ``stage_error``)..."""


_BY_STATUS: dict[int, type[TritiumError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    413: InvalidInputError,
    415: InvalidInputError,
    422: InvalidInputError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: DeadlineExceededError,
}

# Codes an SSE `event: error` carries without a status line of its own.
_STATUS_BY_CODE = {
    "invalid_request": 400, "invalid_input": 400, "schema_violation": 400, "streaming_model": 400,
    "model_not_found": 404, "not_found": 404, "request_too_large": 413, "unsupported_media_type": 415,
    "overloaded": 429, "model_error": 500, "internal_error": 500, "stage_error": 502,
    "triton_unavailable": 503, "stage_unavailable": 503, "not_ready": 503, "model_not_ready": 503,
    "deadline_exceeded": 504,
}


def error_class(status: int) -> type[TritiumError]:
    """The exception class for an HTTP status (ServerError for other 5xx, TritiumError otherwise)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else TritiumError


def error_from_payload(
    status: int | None,
    payload: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    fallback: str = "",
) -> TritiumError:
    """Build the typed error for an answer.

    ``payload`` is the decoded body: the invoke shape ``{"error": {code, message, field, request_id}}``,
    the v2 shape ``{"error": "message", "code": ..., "field": ...}``, or anything else (a proxy's HTML
    page, None), in which case ``fallback`` (the raw text) becomes the message.
    """
    code = field = message = None
    rid = request_id
    if isinstance(payload, Mapping):
        err = payload.get("error")
        if isinstance(err, Mapping):
            code, message, field = err.get("code"), err.get("message"), err.get("field")
            rid = err.get("request_id") or rid
        elif err is not None:
            code, message, field = payload.get("code"), str(err), payload.get("field")
            rid = payload.get("request_id") or rid
    if status is None and isinstance(code, str):
        status = _STATUS_BY_CODE.get(code)
    if not message:
        message = fallback.strip()[:500] or (f"HTTP {status}" if status else "request failed")
    cls = error_class(status) if status is not None else TritiumError
    return cls(
        str(message),
        status_code=status,
        code=str(code) if code is not None else None,
        field=str(field) if field is not None else None,
        request_id=str(rid) if rid else None,
        retry_after=retry_after,
        body=payload,
    )
