"""The audit log (spec.security.audit): one JSON object per line for every metadata and inference call.

It writes bare JSON lines to stdout, apart from the gateway's prose log on stderr, so a log
collector can parse each line without picking records out of it; with ``file`` set each record
is appended there too. Records are written directly, not through `logging` (whose record
objects, handler locks and formatting cost more than the rest of the record), and in batches:
those of the last FLUSH_SECONDS go out in one write, at the latest that long after the call was
answered, and at shutdown. A write per record was most of the audit's cost in a busy gateway.

A record says who (key id, client address), what (endpoint, model, version, revision), when,
the outcome (status, latency, cache) and a SHA-256 of the request body: enough to match a
complaint to a request, never the payload. Keys and Authorization values are never read here,
only the key id the API-key layer resolved. Health probes are not audited (kubelet's, every few
seconds, carrying nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from tritium.api.spec import AuditSpec
from tritium.dataplane.errors import REQUEST_ID_HEADER
from tritium.dataplane.http.server import Request

FLUSH_SECONDS = 0.05


def body_digest(body: bytes) -> str | None:
    """SHA-256 of the request body (None when empty): proves which payload was sent, reveals none of it."""
    return hashlib.sha256(body).hexdigest() if body else None


class Clock:
    """UTC timestamps to the millisecond ("2026-12-03T14:05:09.123Z"), the date and time of day
    formatted once per second: the record's time was the dearest part of it (datetime.isoformat)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{min(999, int((now - second) * 1000)):03d}Z"


class AuditLog:
    """Writes one record per call to its streams (stdout, and the file it opens and closes)."""

    def __init__(self, spec: AuditSpec, revision: str, stream: IO[str] | None = None) -> None:
        self.revision = revision
        self.streams: list[IO[str]] = [stream or sys.stdout]
        self._owned: list[IO[str]] = []
        if spec.file:
            self._owned.append(open(spec.file, "a", encoding="utf-8"))  # noqa: SIM115 - closed by close()
        self.streams += self._owned
        self.redact: Callable[[str], str] | None = None
        self._lines: list[str] = []
        self._clock = Clock()

    def redact_with(self, redactor: Callable[[str], str]) -> None:
        """Pass every line through ``redactor`` before it is written (dataplane/security/redact.py)."""
        self.redact = redactor

    def record(self, request: Request, *, endpoint: str, model: str, status: int, seconds: float,
               key_id: str | None, client: str | None, cache: str | None) -> dict[str, Any]:
        """Write and return the record of one answered call."""
        entry: dict[str, Any] = {
            "time": self._clock.now(),
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
        line = orjson.dumps(entry).decode()
        if self.redact is not None:
            line = self.redact(line)
        self._lines.append(line + "\n")
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no event loop (a synchronous caller): write through
                self.flush()
        return entry

    def flush(self) -> None:
        """Write the records not yet written, in one piece per stream."""
        if not self._lines:
            return
        text, self._lines = "".join(self._lines), []
        for stream in self.streams:
            stream.write(text)
            stream.flush()

    def close(self) -> None:
        self.flush()
        for stream in self._owned:
            stream.close()
        self._owned.clear()
        self.streams = self.streams[:1]
