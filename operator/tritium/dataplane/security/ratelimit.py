"""Rate limits per API key or client address, on the `limits` library.

`limits` has no token bucket, so a bucket of rate R and burst B is bounded the way it bounds
traffic: at most R + B requests in any second and 60*R + B in any minute (two sliding-window
counters, O(1) memory per client). A burst of B above the rate passes at once, the long-run rate
is R, and a client that keeps sending faster is held to R within a minute. Rates below 1/s are
held by the minute window alone.

Counts live in this process (each replica limits on its own) unless a Redis URL is given; then
every replica shares one count. When Redis cannot be reached the request is let through and the
failure logged: a broken limiter must not take the service down with it (fail open).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger("tritium.gateway.ratelimit")


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


class RateLimiter:
    """Token-bucket-shaped limits for one service; ``check(identity)`` counts one request."""

    def __init__(self, requests_per_second: float, burst: int, redis_url: str | None = None,
                 namespace: str = "tritium") -> None:
        self.storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            self.storage = RedisStorage(uri, implementation="redispy", key_prefix=f"{namespace}/ratelimit")
        else:
            self.storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.items: list[RateLimitItem] = []
        if requests_per_second >= 1:
            self.items.append(RateLimitItemPerSecond(math.ceil(requests_per_second) + burst, 1))
        self.items.append(RateLimitItemPerMinute(math.ceil(requests_per_second * 60) + burst, 1))
        self.remote = bool(redis_url)
        self._failing = False

    async def check(self, identity: str) -> Verdict | None:
        """Count one request of ``identity``: None when it may pass, else the refusal (for the 429's headers).

        Allowed requests carry no RateLimit-* headers: working them out costs a storage read per
        window on every request, and only a refused client needs to know when to come back.
        """
        try:
            return await self._check(identity)
        except Exception as exc:
            if not self.remote:
                raise
            if not self._failing:
                log.warning("rate limit storage unreachable (%s): requests pass unlimited until it is back", exc)
                self._failing = True
            return None

    async def _check(self, identity: str) -> Verdict | None:
        # hit() counts nothing when its window is full; a request the minute window then refuses
        # has been counted in the second window only, which errs on the strict side by one.
        for item in self.items:
            if not await self.limiter.hit(item, identity):
                stats = await self.limiter.get_window_stats(item, identity)
                return Verdict(False, item.amount, 0, math.ceil(max(0.0, stats.reset_time - time.time())))
        if self._failing:
            log.info("rate limit storage reachable again")
            self._failing = False
        return None
