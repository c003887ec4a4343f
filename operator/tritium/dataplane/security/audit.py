"""The audit log (spec.security.audit): one JSON object per line for every metadata and inference call.

It is its own logger ("tritium.audit", not propagated) writing bare JSON to stdout, so a log
collector can parse each line without picking records out of the gateway's prose log on
stderr; with ``file`` set each record is appended there too. A record says who (key id, client
address), what (endpoint, model, version, revision), when, the outcome (status, latency, cache)
and a SHA-256 of the request body: enough to match a complaint to a request, never the payload.
Keys and Authorization values are never read here, only the key id the API-key layer resolved.
Health probes are not audited (kubelet's, every few seconds, carrying nothing).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from tritium.api.spec import AuditSpec
from tritium.dataplane.errors import REQUEST_ID_HEADER
from tritium.dataplane.http.server import Request

LOGGER = "tritium.audit"
UNAUDITED = frozenset(("live", "ready"))


def body_digest(body: bytes) -> str | None:
    """SHA-256 of the request body (None when empty): proves which payload was sent, reveals none of it."""
    return hashlib.sha256(body).hexdigest() if body else None


class AuditLog:
    """Writes one record per call. Handlers are owned here, and closed by ``close``."""

    def __init__(self, spec: AuditSpec, revision: str, stream: IO[str] | None = None) -> None:
        self.revision = revision
        self.logger = logging.getLogger(LOGGER)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # never mixed into the prose log on stderr
        self.handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
        if spec.file:
            self.handlers.append(logging.FileHandler(spec.file, encoding="utf-8"))
        for handler in self.handlers:
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def add_filter(self, flt: logging.Filter) -> None:
        """A filter on every output of the audit log (redaction: dataplane/security/redact.py)."""
        for handler in self.handlers:
            handler.addFilter(flt)

    def record(self, request: Request, *, endpoint: str, model: str, status: int, seconds: float,
               key_id: str | None, client: str | None, cache: str | None) -> dict[str, Any]:
        """Write and return the record of one answered call."""
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": request.state.get(REQUEST_ID_HEADER),
            "key_id": key_id,
            "client": client,
            "method": request.method,
            "endpoint": endpoint,
            "model": model or None,
            "version": request.match_info.get("version") or request.query.get("version") or None,
            "revision": self.revision,
            "status": status,
            "latency_ms": round(seconds * 1000.0, 3),
            "request_sha256": body_digest(request.body),
            "request_bytes": len(request.body),
            "cache": cache,
        }
        self.logger.info("%s", orjson.dumps(entry).decode())
        return entry

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
