"""When to retry, and how long to wait: pure functions, shared by the sync and async clients.

The rule (also in docs/sdk.md), because an inference may cost money or GPU time and a caller
must be able to reason about how many times it ran:

* Reads (``GET``: health, metadata) are retried on 429, 502, 503, 504 and on any transport
  failure: reading twice changes nothing.
* ``invoke`` and the opening of a ``stream`` are retried only when the request provably did not
  run a model:

  - the connection was never established (connect error or timeout, no free pooled connection):
    nothing was sent;
  - 429: the request was refused before it ran (Triton's "no resources" or a rate limiter);
  - 503 with ``Retry-After``, except ``stage_unavailable`` of the ``post`` stage. The gateway answers
    503 + Retry-After when Triton or the pre stage could not take the request (``triton_unavailable``,
    ``stage_unavailable`` with ``field: pre``); a load balancer answers it when it has no backend.
    A down *post* stage means the model already ran, so that one is not retried.

  Never on 500, 502, 504, a read timeout or a connection dropped after the request was sent:
  the model may have run. ``RetryPolicy(idempotent=True)`` says "my models are pure functions"
  and retries invoke like a read.
* A stream is never retried once its first event has arrived.
* Nothing is retried when the server's TLS certificate is not trusted: the next attempt would
  meet the same certificate.

Waiting: exponential backoff with full jitter (``uniform(0, min(cap, base * 2**attempt))``, which
spreads a crowd of clients that failed together), but never less than the server's
``Retry-After``; a ``Retry-After`` longer than ``max_retry_after``, or a wait that would pass the
call's total timeout, ends the retries and raises the last error instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

__all__ = ["RetryPolicy", "Timeout", "backoff_delay", "parse_retry_after", "retry_delay", "should_retry"]

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

#: How a transport failure happened: "connect" (nothing was sent), "sent" (the request may have
#: reached the server) or "certificate" (the server's TLS certificate is not trusted: nothing was
#: sent, and asking again gets the same certificate, so it is never retried).
TransportFailure = Literal["connect", "sent", "certificate"]


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry.

    ``max_retries`` counts retries, not attempts: 3 means up to 4 attempts.

    Example::

        InferenceClient(retries=RetryPolicy(max_retries=5, backoff_base=0.2))
        InferenceClient(retries=0)        # never retry
    """

    max_retries: int = 3
    backoff_base: float = 0.1
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ValueError("backoff_base, backoff_max and max_retry_after must be >= 0")


@dataclass(frozen=True)
class Timeout:
    """Client-side time limits in seconds.

    ``connect``: to open a TCP/TLS connection; ``read``: the longest silence while waiting for
    (part of) an answer; ``write``: to send the body; ``pool``: to get a pooled connection;
    ``total``: the whole call, retries and waits included. ``total`` is also sent to the gateway as
    ``X-Request-Timeout`` so that the server stops working on a request nobody waits for any more;
    None leaves the deadline to the gateway's ``requestTimeoutSeconds``.

    Example::

        InferenceClient(timeout=Timeout(connect=2, read=30, total=10))
        InferenceClient(timeout=10)       # shorthand for Timeout(total=10)
    """

    connect: float | None = 5.0
    read: float | None = 60.0
    write: float | None = 60.0
    pool: float | None = 10.0
    total: float | None = None


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (0-based)."""
    cap = min(policy.backoff_max, policy.backoff_base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds ("1", leniently "0.5") or an HTTP date; None if absent or bad.

    ``now`` is the current Unix time (for dates); defaults to the clock.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        import time

        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN, inf
        return None
    return max(0.0, seconds)


def should_retry(
    *,
    idempotent: bool,
    status: int | None = None,
    code: str | None = None,
    field: str | None = None,
    retry_after: float | None = None,
    transport: TransportFailure | None = None,
) -> bool:
    """Whether a failed attempt may be retried (see the module docstring for the rule).

    Give either ``transport`` (no HTTP answer) or ``status`` (with the error's ``code``, ``field`` and
    the parsed ``Retry-After``). ``idempotent`` is True for reads and for invoke under
    ``RetryPolicy(idempotent=True)``.
    """
    if transport is not None:
        return transport == "connect" or (transport == "sent" and idempotent)
    if status is None or status not in RETRYABLE_STATUSES:
        return False
    if idempotent:
        return True
    if status == 429:
        return True
    if status == 503:
        if code == "stage_unavailable" and field == "post":
            return False
        return retry_after is not None
    return False


def retry_delay(
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None,
    remaining: float | None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retry ``attempt`` (0-based), or None when no retry should happen.

    None when the retries are used up, when the server asks for longer than ``max_retry_after``, or
    when the wait would not leave time for another attempt within ``remaining`` (the call's total
    timeout, None for no limit).
    """
    if attempt >= policy.max_retries:
        return None
    if retry_after is not None and retry_after > policy.max_retry_after:
        return None
    delay = backoff_delay(attempt, policy, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if remaining is not None and delay >= remaining:
        return None
    return delay
