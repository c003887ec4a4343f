"""What the sync and async clients share: configuration, request building and answer checking.

Kept free of I/O so that both clients run exactly the same rules; only the loop that sends,
sleeps and retries is written twice (once blocking, once with ``await``).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tritium.client.errors import APIConnectionError, DeadlineExceededError, TritiumError, error_from_payload
from tritium.client.response import Response, encode_inputs, loads
from tritium.client.retry import RetryPolicy, Timeout, TransportFailure, parse_retry_after, retry_delay, should_retry
from tritium.version import __version__

ENDPOINT_ENV = "TRITIUM_ENDPOINT"
API_KEY_ENV = "TRITIUM_API_KEY"
REQUEST_ID_HEADER = "X-Request-Id"
TIMEOUT_HEADER = "X-Request-Timeout"
USER_AGENT = f"tritium-python/{__version__}"
# Time the client waits beyond the deadline it sent to the gateway: the gateway's own 504 (with its
# message and request id) is more useful than a client-side read timeout.
DEADLINE_GRACE = 1.0

VerifyTypes = bool | str | os.PathLike[str] | ssl.SSLContext
CertTypes = str | os.PathLike[str] | tuple[str, str] | tuple[str, str, str]


def resolve_endpoint(endpoint: str | None) -> str:
    """The base URL from the argument or TRITIUM_ENDPOINT, checked so a typo fails at construction."""
    url = (endpoint or os.environ.get(ENDPOINT_ENV) or "").strip()
    if not url:
        raise ValueError(f"no endpoint: pass endpoint='https://...' or set {ENDPOINT_ENV}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)


def resolve_timeout(timeout: float | Timeout | None) -> Timeout:
    if timeout is None:
        return Timeout()
    if isinstance(timeout, Timeout):
        return timeout
    return Timeout(total=float(timeout))


def resolve_retries(retries: int | RetryPolicy | None) -> RetryPolicy:
    if retries is None:
        return RetryPolicy()
    if isinstance(retries, RetryPolicy):
        return retries
    return RetryPolicy(max_retries=int(retries))


def ssl_verify(verify: VerifyTypes, cert: CertTypes | None) -> bool | ssl.SSLContext:
    """httpx's ``verify`` for a CA bundle path and/or a client certificate (built here, without deprecated args)."""
    if cert is None and isinstance(verify, bool | ssl.SSLContext):
        return verify
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is True:
        ctx = httpx.create_ssl_context()
    elif verify is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ValueError(f"verify: CA bundle {path!r} does not exist")
        is_dir = os.path.isdir(path)
        ctx = ssl.create_default_context(capath=path if is_dir else None, cafile=None if is_dir else path)
    if cert is not None:
        if isinstance(cert, tuple):
            ctx.load_cert_chain(*cert)
        else:
            ctx.load_cert_chain(os.fspath(cert))
    return ctx


def _untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind an httpx error, if that is what it is (httpx
    wraps the ssl module's error in its own ConnectError)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Call:
    """One logical call, the same for every attempt (the request id too, so retries correlate in logs)."""

    __slots__ = ("content", "headers", "idempotent", "method", "params", "path", "started", "total")

    def __init__(self, method: str, path: str, params: dict[str, str] | None, content: bytes | None,
                 headers: dict[str, str], total: float | None, idempotent: bool, started: float) -> None:
        self.method = method
        self.path = path
        self.params = params
        self.content = content
        self.headers = headers
        self.total = total
        self.idempotent = idempotent
        self.started = started

    def remaining(self) -> float | None:
        if self.total is None:
            return None
        return self.total - (time.monotonic() - self.started)


class Core:
    """Configuration and the pure parts of sending a call."""

    def __init__(
        self,
        endpoint: str | None,
        api_key: str | None,
        timeout: float | Timeout | None,
        retries: int | RetryPolicy | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.endpoint = resolve_endpoint(endpoint)
        self.api_key = resolve_api_key(api_key)
        self.timeout = resolve_timeout(timeout)
        self.retries = resolve_retries(retries)
        base = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            base["Authorization"] = f"Bearer {self.api_key}"
        base.update(headers or {})
        self.headers = base
        t = self.timeout
        self.httpx_timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)

    def client_kwargs(self, verify: VerifyTypes, cert: CertTypes | None, max_connections: int,
                      http2: bool) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                              keepalive_expiry=30.0)
        if self.endpoint.startswith("http://") and verify is True and cert is None:
            # No TLS on this endpoint (and redirects are not followed): skip loading the CA bundle, which
            # costs ~0.1 s per client. The bare context still verifies, and trusts nothing, if ever used.
            tls: bool | ssl.SSLContext = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            tls = ssl_verify(verify, cert)
        return {"base_url": self.endpoint, "headers": self.headers, "timeout": self.httpx_timeout,
                "limits": limits, "verify": tls, "http2": http2}

    # -- building calls ----------------------------------------------------------------------
    def invoke_call(
        self,
        model_id: str,
        inputs: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        version: str | int | None,
        timeout: float | None,
        request_id: str | None,
        content: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
        endpoint: str = "invoke",
    ) -> Call:
        if not model_id or not isinstance(model_id, str):
            raise ValueError("model_id must be a non-empty string")
        params: dict[str, str] = {}
        if version is not None:
            params["version"] = str(version)
        h = {REQUEST_ID_HEADER: request_id or os.urandom(16).hex()}
        if content is not None:
            if inputs is not None:
                raise ValueError("give inputs or content, not both")
            # Raw payloads (XML, bytes...) are for a pre stage; parameters travel in the query string.
            body = bytes(content)
            h["Content-Type"] = content_type or "application/octet-stream"
            for key, value in (parameters or {}).items():
                params[str(key)] = value if isinstance(value, str) else loads_safe_dump(value)
        else:
            if inputs is None:
                raise ValueError("inputs is required (or content= for a raw payload)")
            body = encode_inputs(inputs, parameters)
            h["Content-Type"] = "application/json"
        if endpoint == "stream":
            h["Accept"] = "text/event-stream"
        if headers:
            h.update(headers)
        total = self.timeout.total if timeout is None else float(timeout)
        return Call("POST", f"/v1/models/{quote(model_id, safe='')}/{endpoint}", params or None, body, h, total,
                    self.retries.idempotent, time.monotonic())

    def get_call(self, path: str, timeout: float | None = None) -> Call:
        total = self.timeout.total if timeout is None else float(timeout)
        return Call("GET", path, None, None, {REQUEST_ID_HEADER: os.urandom(16).hex()}, total, True, time.monotonic())

    def attempt_headers(self, call: Call) -> tuple[dict[str, str], httpx.Timeout | None]:
        """Headers and timeouts of the next attempt: the remaining budget goes to the gateway as its deadline."""
        remaining = call.remaining()
        if remaining is None:
            return call.headers, None
        if remaining <= 0:
            raise self.deadline_error(call)
        # Microseconds: at three decimals a budget under 0.5 ms went out as "0.000", which the gateway refuses.
        headers = {**call.headers, TIMEOUT_HEADER: f"{max(remaining, 1e-6):.6f}"}
        read = remaining + DEADLINE_GRACE
        t = self.timeout
        timeout = httpx.Timeout(connect=min(t.connect or read, read), read=min(t.read or read, read),
                                write=min(t.write or read, read), pool=min(t.pool or read, read))
        return headers, timeout

    def deadline_error(self, call: Call) -> DeadlineExceededError:
        return DeadlineExceededError(f"the call's total timeout of {call.total:g}s passed",
                                     code="deadline_exceeded", request_id=call.headers.get(REQUEST_ID_HEADER))

    # -- answers -----------------------------------------------------------------------------
    @staticmethod
    def error_for(status: int, headers: httpx.Headers, content: bytes) -> TritiumError:
        retry_after = parse_retry_after(headers.get("retry-after"))
        try:
            payload = loads(content) if content else None
        except ValueError:
            payload = None
        return error_from_payload(status, payload, request_id=headers.get("x-request-id"), retry_after=retry_after,
                                  fallback=content.decode("utf-8", errors="replace") if payload is None else "")

    def transport_error(self, call: Call, exc: httpx.TransportError) -> tuple[TritiumError, TransportFailure]:
        """A transport failure as an SDK error, with whether the request may have been sent."""
        rid = call.headers.get(REQUEST_ID_HEADER)
        kind: TransportFailure = "connect" if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout
                                                            | httpx.PoolTimeout) else "sent"
        if isinstance(exc, httpx.TimeoutException) and kind == "sent":
            return DeadlineExceededError(f"no answer from {self.endpoint} in time ({type(exc).__name__})",
                                         request_id=rid), kind
        untrusted = _untrusted_certificate(exc)
        if untrusted is not None:
            why = untrusted.verify_message or str(untrusted)
            return APIConnectionError(
                f"cannot reach {self.endpoint}: its TLS certificate is not trusted ({why}; CERTIFICATE_VERIFY_FAILED); "
                "pass verify='ca.pem' (tritium invoke --cacert ca.pem) to trust its CA", request_id=rid), "certificate"
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return APIConnectionError(f"cannot reach {self.endpoint}: {what}", request_id=rid), kind

    def next_delay(self, call: Call, attempt: int, error: TritiumError, transport: TransportFailure | None) -> \
            float | None:
        """Seconds to wait before retrying ``error``, or None to raise it."""
        if transport is not None:
            ok = should_retry(idempotent=call.idempotent, transport=transport)
        else:
            ok = should_retry(idempotent=call.idempotent, status=error.status_code, code=error.code,
                              field=error.field, retry_after=error.retry_after)
        if not ok:
            return None
        return retry_delay(attempt, self.retries, error.retry_after, call.remaining())

    @staticmethod
    def response(status: int, headers: httpx.Headers, content: bytes, call: Call, attempts: int) -> Response:
        return Response(status, headers, content, (time.monotonic() - call.started) * 1000.0, attempts)


def loads_safe_dump(value: Any) -> str:
    """A parameter value for the query string: JSON for anything that is not a string."""
    import json

    return json.dumps(value, separators=(",", ":"))


def batch_kwargs(item: Any) -> dict[str, Any]:
    """One ``invoke_batch`` item -> ``invoke`` keyword arguments."""
    if isinstance(item, Mapping):
        kwargs = dict(item)
        if "model_id" not in kwargs:
            raise ValueError("each batch item needs model_id (or pass model_id= to invoke_batch)")
        return kwargs
    raise TypeError(f"a batch item must be a mapping of invoke arguments, not {type(item).__name__}")
