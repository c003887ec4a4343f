"""Rollout notifications to ``spec.monitoring.webhook``: signed JSON events that never block a rollout.

A notification is a courtesy, like a Kubernetes Event: the reconcile calls ``send()``, which only
enqueues and returns, and background tasks deliver. Each URL has its own queue and worker, so
events to one URL arrive in order, and a URL that hangs or refuses connections delays nothing but
its own backlog. Every failure ends as a count in
``tritium_operator_webhook_deliveries_total{result=...}`` and a log line, never as an exception in
the caller. The body schema, headers and signature are documented in docs/notifications.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import email.utils
import enum
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
import uuid
from typing import Any

import aiohttp

from tritium.controller.metrics import WEBHOOK_DELIVERIES
from tritium.version import __version__

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Tritium-Signature"
TIMESTAMP_HEADER = "X-Tritium-Timestamp"
EVENT_HEADER = "X-Tritium-Event"
DELIVERED, FAILED, DROPPED = "delivered", "failed", "dropped"

log = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    """What happened to the rollout; the ``type`` field and the ``X-Tritium-Event`` header."""

    ROLLOUT_STARTED = "RolloutStarted"
    CANARY_STARTED = "CanaryStarted"
    ANALYSIS_FAILED = "AnalysisFailed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclasses.dataclass(frozen=True)
class AnalysisSummary:
    """The last analysis of the canary, so a receiver can show why without querying Prometheus."""

    verdict: str  # Passed, Failed or Inconclusive
    error_ratio: float | None = None
    p99_latency_ms: float | None = None
    requests: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "errorRatio": self.error_ratio,
            "p99LatencyMs": self.p99_latency_ms,
            # A count over the window; Prometheus' extrapolation can make it fractional.
            "requests": None if self.requests is None else round(self.requests),
        }


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def rfc3339(t: datetime.datetime) -> str:
    """UTC with milliseconds and a ``Z``: events of one reconcile often share a second."""
    if t.tzinfo is None:
        raise ValueError("notification time must be timezone-aware")
    t = t.astimezone(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True)
class Notification:
    """One rollout event. ``id`` is unique per event and repeated on retries, so receivers can dedupe."""

    type: EventType
    namespace: str
    name: str
    message: str
    stable_revision: str | None = None
    canary_revision: str | None = None
    canary_weight: int = 0
    phase: str | None = None
    analysis: AnalysisSummary | None = None
    time: datetime.datetime = dataclasses.field(default_factory=_utcnow)
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "id": self.id,
            "type": str(EventType(self.type)),  # an unknown type fails here, not at the receiver
            "time": rfc3339(self.time),
            "inferenceService": {"namespace": self.namespace, "name": self.name},
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "canaryWeight": int(self.canary_weight),
            "phase": self.phase,
            "message": self.message,
        }
        if self.analysis is not None:
            body["analysis"] = self.analysis.to_dict()
        return body

    def to_json(self) -> bytes:
        """The exact bytes that are POSTed and signed (compact UTF-8 JSON)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 over ``b"{timestamp}." + body``.

    The timestamp is signed with the body so a captured request cannot be replayed later with a
    fresh timestamp; the receiver rejects timestamps that are too old.
    """
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, timestamp: str | int, body: bytes, header: str,
    *, max_age_s: float | None = 300.0, now: float | None = None,
) -> bool:
    """Whether ``header`` (X-Tritium-Signature) signs ``body`` at ``timestamp`` (X-Tritium-Timestamp).

    Constant-time compare. With ``max_age_s`` (default 5 min, ``None`` to skip), a timestamp further
    than that from ``now`` (default: the clock) is rejected too: that is what stops replays.
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if max_age_s is not None and abs((time.time() if now is None else now) - ts) > max_age_s:
        return False
    expected = sign(secret, ts, body).encode()
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


def request_headers(notification: Notification, body: bytes, secret: bytes | None, timestamp: int) -> dict[str, str]:
    """The headers of one delivery attempt (each attempt is signed with its own timestamp)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"tritium-operator/{__version__}",
        EVENT_HEADER: str(EventType(notification.type)),
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


def redact(url: str) -> str:
    """scheme://host[:port] only: webhook URLs (Slack's, for one) carry their secret in the path."""
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<invalid URL>"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclasses.dataclass(frozen=True)
class _Item:
    notification: Notification
    body: bytes
    secret: bytes | None


class _Retry(Exception):
    """A retriable answer (429, 5xx), with the delay the server asked for, if any."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class WebhookNotifier:
    """Delivers notifications in the background: one queue and one worker task per URL.

    ``send()`` never waits on the network and never raises. A worker POSTs with a total timeout,
    retries connection errors, timeouts, 429 and 5xx with exponential backoff (``backoff_s`` doubled
    each time, at most ``max_backoff_s``; a Retry-After is honoured up to ``retry_after_cap_s``), and
    gives up after ``max_attempts``; other answers below 200 or from 300 up fail at once (redirects
    are not followed). A URL keeps at most ``queue_size`` pending events (the oldest is dropped
    when full) and at most ``max_urls`` URLs have a backlog at once, which bounds memory and tasks.
    A worker ends when its queue is empty. Call ``send()`` on the notifier's event loop or from any
    thread.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        queue_size: int = 1000,
        max_urls: int = 256,
        close_grace_s: float = 2.0,
    ) -> None:
        if max_attempts < 1 or queue_size < 1 or max_urls < 1:
            raise ValueError("max_attempts, queue_size and max_urls must be at least 1")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retry_after_cap_s = retry_after_cap_s
        self.queue_size = queue_size
        self.max_urls = max_urls
        self.close_grace_s = close_grace_s
        self._queues: dict[str, collections.deque[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.counts: collections.Counter[str] = collections.Counter()  # this notifier's share of the metric

    async def start(self) -> None:
        """Bind to the running loop and open the HTTP session."""
        if self._session is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closed = False
        # No connection limit: concurrency is already bounded by max_urls workers, and a shared
        # limit would let hanging URLs hold every connection slot.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )

    async def __aenter__(self) -> WebhookNotifier:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by a worker."""
        return sum(len(q) for q in self._queues.values())

    def send(self, url: str, notification: Notification, secret: bytes | None = None) -> None:
        """Queue ``notification`` for ``url`` (signed with ``secret`` when given) and return at once."""
        try:
            body = notification.to_json()
        except (TypeError, ValueError):  # a malformed notification must not fail the reconcile
            log.exception("cannot serialize a webhook notification for %s", redact(url))
            self._count(FAILED)
            return
        item = _Item(notification, body, secret)
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop and not loop.is_closed():
            loop.call_soon_threadsafe(self._enqueue, url, item)
        else:
            self._enqueue(url, item)

    def _count(self, result: str, n: int = 1) -> None:
        if n:
            self.counts[result] += n
            WEBHOOK_DELIVERIES.labels(result).inc(n)

    def _enqueue(self, url: str, item: _Item) -> None:
        what = f"{item.notification.type} for {item.notification.namespace}/{item.notification.name}"
        if self._session is None or self._closed:
            log.warning("webhook notifier not running: %s to %s dropped", what, redact(url))
            self._count(DROPPED)
            return
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            log.warning("webhook URL is not http(s): %s to %s not sent", what, redact(url))
            self._count(FAILED)
            return
        queue = self._queues.get(url)
        if queue is None:
            if len(self._queues) >= self.max_urls:
                log.warning("%d webhook URLs have a backlog: %s to %s dropped", self.max_urls, what, redact(url))
                self._count(DROPPED)
                return
            queue = self._queues[url] = collections.deque()
            self._workers[url] = asyncio.get_running_loop().create_task(self._work(url, queue))
        if len(queue) >= self.queue_size:
            old = queue.popleft()
            log.warning("webhook backlog of %s full: dropped the oldest event, %s", redact(url), old.notification.type)
            self._count(DROPPED)
        queue.append(item)

    async def _work(self, url: str, queue: collections.deque[_Item]) -> None:
        """Deliver ``url``'s queue in order; end (and forget the URL) when it is empty."""
        while True:
            if not queue:  # no await between this check and forgetting the URL: send() cannot slip in
                del self._queues[url]
                del self._workers[url]
                return
            item = queue.popleft()
            try:
                result = await self._deliver(url, item)
            except asyncio.CancelledError:
                self._count(DROPPED)  # close() gave up on it
                raise
            except Exception:
                log.exception("webhook delivery to %s failed unexpectedly", redact(url))
                result = FAILED
            self._count(result)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_s)
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    async def _deliver(self, url: str, item: _Item) -> str:
        assert self._session is not None
        what = f"{item.notification.type} for {item.notification.namespace}/{item.notification.name}"
        for attempt in range(1, self.max_attempts + 1):
            headers = request_headers(item.notification, item.body, item.secret, int(time.time()))
            try:
                async with self._session.post(url, data=item.body, headers=headers, allow_redirects=False) as resp:
                    if 200 <= resp.status < 300:
                        log.debug("webhook %s delivered to %s", what, redact(url))
                        return DELIVERED
                    if resp.status == 429 or resp.status >= 500:
                        raise _Retry(f"HTTP {resp.status}", retry_after_seconds(resp.headers.get("Retry-After")))
                    log.warning("webhook %s to %s refused: HTTP %d (not retried)", what, redact(url), resp.status)
                    return FAILED
            except aiohttp.InvalidURL as exc:
                log.warning("webhook %s not sent: invalid URL %s (%s)", what, redact(url), exc)
                return FAILED
            except (_Retry, aiohttp.ClientError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                retry_after = exc.after if isinstance(exc, _Retry) else None
            if attempt == self.max_attempts:
                log.warning("webhook %s to %s failed after %d attempts: %s", what, redact(url), attempt, reason)
                return FAILED
            delay = self._backoff(attempt, retry_after)
            log.info("webhook %s to %s: %s, retry %d in %.1f s", what, redact(url), reason, attempt, delay)
            await asyncio.sleep(delay)
        return FAILED  # unreachable: the loop returns on its last attempt

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until every queue is empty; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._workers:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(list(self._workers.values()), timeout=left)
        return True

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking events, give pending deliveries ``grace_s`` (default ``close_grace_s``), then give up.

        What is still queued or in flight then is counted as dropped.
        """
        if self._closed:
            return
        self._closed = True
        grace = self.close_grace_s if grace_s is None else grace_s
        tasks = list(self._workers.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            if late:
                self._count(DROPPED, self.pending)
                self._queues.clear()
                for task in late:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*late, return_exceptions=True)
        self._queues.clear()
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
