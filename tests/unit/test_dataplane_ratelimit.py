"""The token bucket's arithmetic (pure) and the in-memory limiter, on a clock the test moves.

The property: over any sequence of request times, in every window of w seconds at most
burst + rate * w requests pass, a client that waits long enough always gets one through, and a
refused request's retry time is when the next one passes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tritium.dataplane.security.ratelimit import SWEEP_AT, Bucket, RateLimiter


def test_burst_passes_at_once_then_the_rate() -> None:
    bucket, full_at, passed = Bucket(rate=2.0, burst=3), 0.0, []
    for now in (10.0, 10.0, 10.0, 10.0, 10.4, 10.5, 10.6, 11.0):
        ok, full_at = bucket.take(full_at, now)
        passed.append(ok)
    # 3 at once, the 4th refused; one token back every 0.5 s (at 10.5 and 11.0).
    assert passed == [True, True, True, False, False, True, False, True]


def test_retry_after_is_when_the_next_passes() -> None:
    bucket, full_at = Bucket(rate=4.0, burst=1), 0.0
    _, full_at = bucket.take(full_at, 100.0)
    ok, _ = bucket.take(full_at, 100.1)
    assert not ok
    wait = bucket.retry_after(full_at, 100.1)
    assert abs(wait - 0.15) < 1e-9
    assert not bucket.take(full_at, 100.1 + wait - 0.01)[0]
    assert bucket.take(full_at, 100.1 + wait)[0]


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0.1, 50), burst=st.integers(1, 20),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200), window=st.floats(0.01, 10))
def test_never_more_than_burst_plus_rate_times_window(rate: float, burst: int, gaps: list[float],
                                                      window: float) -> None:
    bucket, full_at, now, passed = Bucket(rate, burst), 0.0, 1000.0, []
    for gap in gaps:
        now += gap
        ok, full_at = bucket.take(full_at, now)
        if ok:
            passed.append(now)
    for i, start in enumerate(passed):
        inside = sum(1 for t in passed[i:] if t <= start + window)
        assert inside <= burst + rate * window + 1e-6
    assert bucket.take(full_at, now + burst / rate)[0]  # a full bucket after waiting it out


async def test_limiter_refusal_headers_and_clients_apart() -> None:
    limiter = RateLimiter(1.0, 2)
    assert limiter._check_here("a", 5.0) is None
    assert limiter._check_here("a", 5.0) is None
    refused = limiter._check_here("a", 5.0)
    assert refused is not None and refused.headers() == {
        "RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "1", "Retry-After": "1"}
    assert limiter._check_here("b", 5.0) is None  # another client, its own bucket
    assert limiter._check_here("a", 6.0) is None  # a token back after 1 s


async def test_memory_is_swept_of_refilled_buckets() -> None:
    limiter = RateLimiter(10.0, 1)
    for i in range(SWEEP_AT):
        limiter._check_here(f"c{i}", 0.0)
    assert len(limiter._full_at) == SWEEP_AT
    limiter._check_here("new", 1.0)  # every earlier bucket is full again by now: forgotten
    assert set(limiter._full_at) == {"new"}
    assert await limiter.check("x") is None
