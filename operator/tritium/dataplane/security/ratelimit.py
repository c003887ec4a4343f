"""Rate limits per API key or client address: a token bucket of size ``burst`` refilled at ``rate``.

The bucket is kept in its GCRA form (the generic cell rate algorithm): per client one number, the
time at which its bucket would be full again ("theoretical arrival time"). A request takes one
token: it passes when, after taking it, the bucket would be full again within ``burst / rate``
seconds. So ``burst`` requests pass at once, the long-run rate is ``rate``, and in any window of
``w`` seconds at most ``burst + rate * w`` pass (``rate + burst`` in any second, ``60 * rate +
burst`` in any minute). A client absent from the store has a full bucket, so entries whose bucket
has refilled are dropped and memory stays bounded by the clients seen in the last ``burst / rate``
seconds.

`limits`, the library this started on, has no token bucket (fixed, moving and sliding windows
only); approximating one by two of its sliding windows cost 13-21 us per request in the gateway,
where this arithmetic is lost in the benchmark's noise, and let ``rate + burst`` through at once.

Counts live in this process (each replica limits on its own) unless a Redis URL is given; then
every replica shares one bucket per client, taken by one Lua script (atomic, on the Redis
server's clock, so replicas' clocks need not agree). When Redis cannot be reached the request is
let through (fail open: a broken limiter must not take the service down with it), or, when the
spec says failurePolicy: closed, refused with StorageUnavailable (no request passes uncounted);
either way the outage is logged once and each request it touched reported to ``on_failure``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tritium.gateway.ratelimit")

# Float slack when comparing times: a request exactly on the refill boundary passes.
EPSILON = 1e-9
# The in-memory store is swept of refilled buckets when it grows past this many clients.
SWEEP_AT = 4096


class StorageUnavailable(Exception):
    """Redis could not be reached and the limit fails closed: the request must not pass."""


@dataclass(frozen=True)
class Verdict:
    """A refused request: what the RateLimit-* headers tell the client."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit/-Remaining/-Reset (IETF draft), plus Retry-After on a refusal."""
        h = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
             "RateLimit-Reset": str(self.reset_seconds)}
        if not self.allowed:
            h["Retry-After"] = str(max(1, self.reset_seconds))
        return h


@dataclass(frozen=True)
class Bucket:
    """The arithmetic of one bucket shape (pure): ``take`` is one request at time ``now``."""

    rate: float  # tokens per second, > 0
    burst: int  # tokens at most, >= 1

    @property
    def interval(self) -> float:
        """Seconds one token takes to come back."""
        return 1.0 / self.rate

    @property
    def span(self) -> float:
        """Seconds an empty bucket takes to fill."""
        return self.burst / self.rate

    def take(self, full_at: float, now: float) -> tuple[bool, float]:
        """(passed, the new full-at time); ``full_at`` is when the bucket is full again (<= now: full).

        A refused request changes nothing; its retry time is ``retry_after(full_at, now)``.
        """
        after = max(full_at, now) + self.interval
        if after - now > self.span + EPSILON:
            return False, full_at
        return True, after

    def retry_after(self, full_at: float, now: float) -> float:
        """Seconds until one token is back (0 when one is there now)."""
        return max(0.0, max(full_at, now) + self.interval - self.span - now)


# KEYS[1]: the client's bucket; ARGV: seconds per token, seconds to fill. Answers {1} when the
# request passes, else {0, seconds until a token is back}, as strings (Lua numbers would be cut
# to integers on the way out).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local full_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if full_at < now then full_at = now end
local after = full_at + interval
if after - now > span + 1e-9 then
  return {'0', tostring(after - span - now)}
end
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000))
return {'1'}
"""


class RateLimiter:
    """Token buckets for one service; ``check(identity)`` takes one token from ``identity``'s."""

    def __init__(self, requests_per_second: float, burst: int, redis_url: str | None = None,
                 namespace: str = "tritium", fail_closed: bool = False,
                 on_failure: Callable[[bool], None] | None = None) -> None:
        """``fail_closed``: refuse (StorageUnavailable) rather than pass while Redis is unreachable;
        ``on_failure(refused)`` is told of every request decided without Redis."""
        self.bucket = Bucket(requests_per_second, burst)
        self.fail_closed = fail_closed
        self._on_failure = on_failure
        self._full_at: dict[str, float] = {}
        self._prefix = f"{namespace}/ratelimit/"
        self._redis: Any = None
        self._take: Any = None
        if redis_url:
            import redis.asyncio as aioredis  # only gateways that share a limit talk to Redis

            self._redis = aioredis.Redis.from_url(redis_url.removeprefix("async+"), socket_timeout=1.0,
                                                  socket_connect_timeout=1.0)
            self._take = self._redis.register_script(_TAKE)
        self._failing = False

    async def check(self, identity: str) -> Verdict | None:
        """Take one token of ``identity``: None when the request may pass, else the refusal (for the
        429's headers). Allowed requests carry no RateLimit-* headers: only a refused client needs
        to know when to come back."""
        if self._redis is None:
            return self._check_here(identity, time.monotonic())
        try:
            answer = await self._take(keys=[self._prefix + identity],
                                      args=[repr(self.bucket.interval), repr(self.bucket.span)])
        except Exception as exc:
            if not self._failing:
                log.warning("rate limit storage unreachable (%s): requests %s until it is back", exc,
                            "are refused (failurePolicy closed)" if self.fail_closed else "pass unlimited")
                self._failing = True
            if self._on_failure is not None:
                self._on_failure(self.fail_closed)
            if self.fail_closed:
                raise StorageUnavailable(str(exc) or type(exc).__name__) from None
            return None
        if self._failing:
            log.info("rate limit storage reachable again")
            self._failing = False
        if int(answer[0]):
            return None
        return self._refusal(float(answer[1]))

    def _check_here(self, identity: str, now: float) -> Verdict | None:
        passed, full_at = self.bucket.take(self._full_at.get(identity, 0.0), now)
        if not passed:
            return self._refusal(self.bucket.retry_after(full_at, now))
        if identity not in self._full_at and len(self._full_at) >= SWEEP_AT:
            self._sweep(now)
        self._full_at[identity] = full_at
        return None

    def _sweep(self, now: float) -> None:
        """Forget the clients whose bucket is full again (absent means full: nothing is lost)."""
        self._full_at = {k: v for k, v in self._full_at.items() if v > now}

    def _refusal(self, retry_after: float) -> Verdict:
        return Verdict(False, self.bucket.burst, 0, math.ceil(retry_after - EPSILON))

    async def reset(self) -> None:
        """Forget every count (full buckets for everyone), here or in Redis under this service's prefix."""
        self._full_at.clear()
        if self._redis is not None:
            async for key in self._redis.scan_iter(match=self._prefix + "*"):
                await self._redis.delete(key)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
