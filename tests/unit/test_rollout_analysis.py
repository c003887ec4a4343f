"""judge(), quantile_from_buckets() and merge_buckets(): the pure side of canary analysis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritium.rollout.analysis import (
    Measurement,
    Thresholds,
    Verdict,
    judge,
    merge_buckets,
    quantile_from_buckets,
)

INF = math.inf


def measured(requests: float, errors: float = 0, p99_ms: float | None = 10.0, error: str | None = None) -> Measurement:
    return Measurement(requests=requests, errors=errors, p99_ms=p99_ms, window_seconds=30, source="test", error=error)


# --- judge ----------------------------------------------------------------------------------------


def test_a_provider_error_is_inconclusive_and_says_why() -> None:
    j = judge(measured(0, p99_ms=None, error="connection refused"), Thresholds())
    assert j.verdict is Verdict.INCONCLUSIVE and "test" in j.message and "connection refused" in j.message


def test_too_few_requests_is_inconclusive_never_a_pass() -> None:
    j = judge(measured(19, p99_ms=1.0), Thresholds(min_requests=20))
    assert j.verdict is Verdict.INCONCLUSIVE and "19 request(s)" in j.message and "20" in j.message
    assert judge(measured(0, p99_ms=None), Thresholds()).verdict is Verdict.INCONCLUSIVE


def test_within_both_limits_passes() -> None:
    j = judge(measured(1000, errors=10, p99_ms=999), Thresholds(max_error_ratio=0.01, max_p99_latency_ms=1000))
    assert j.verdict is Verdict.PASSED  # the limits themselves are allowed
    assert "1.00%" in j.message and "999 ms" in j.message and "1000 request(s)" in j.message


@pytest.mark.parametrize(("errors", "p99_ms", "shown"), [(11, 10.0, "1.10%"), (0, 1001.0, "1001 ms")])
def test_over_either_limit_fails(errors: float, p99_ms: float, shown: str) -> None:
    j = judge(measured(1000, errors=errors, p99_ms=p99_ms), Thresholds(max_error_ratio=0.01, max_p99_latency_ms=1000))
    assert j.verdict is Verdict.FAILED and shown in j.message


def test_an_unknown_p99_is_judged_on_the_error_ratio_alone() -> None:
    assert judge(measured(100, p99_ms=None), Thresholds()).verdict is Verdict.PASSED
    failed = judge(measured(100, errors=50, p99_ms=None), Thresholds())
    assert failed.verdict is Verdict.FAILED and "p99 unknown" in failed.message


def test_error_ratio() -> None:
    assert measured(200, errors=5).error_ratio == 0.025
    assert measured(0).error_ratio is None


# --- quantile_from_buckets ------------------------------------------------------------------------


def test_no_quantile_without_observations_or_without_the_open_bucket() -> None:
    assert quantile_from_buckets(0.99, {}) is None
    assert quantile_from_buckets(0.99, {0.1: 0, 1: 0, INF: 0}) is None
    assert quantile_from_buckets(0.99, {0.1: 5, 1: 10}) is None  # not a complete histogram


def test_quantile_interpolates_within_its_bucket_like_prometheus() -> None:
    buckets = {0.1: 50, 0.5: 90, 1: 100, INF: 100}
    assert quantile_from_buckets(0.5, buckets) == pytest.approx(0.1)
    assert quantile_from_buckets(0.7, buckets) == pytest.approx(0.3)  # rank 70: half-way into (0.1, 0.5]
    assert quantile_from_buckets(0.99, buckets) == pytest.approx(0.95)
    assert quantile_from_buckets(0.25, buckets) == pytest.approx(0.05)  # the first bucket starts at 0


def test_a_quantile_in_the_open_bucket_is_the_highest_finite_bound() -> None:
    assert quantile_from_buckets(0.99, {0.1: 10, 1: 50, INF: 100}) == 1


def test_merged_buckets_weigh_each_pod_by_its_requests() -> None:
    busy = {0.005: 980, 0.5: 980, 1: 980, INF: 980}
    quiet = {0.005: 0, 0.5: 0, 1: 20, INF: 20}
    merged = merge_buckets([busy, quiet])
    assert merged == {0.005: 980, 0.5: 980, 1: 1000, INF: 1000}
    assert quantile_from_buckets(0.99, merged) == pytest.approx(0.75)


def test_merge_counts_a_missing_bound_as_zero() -> None:
    assert merge_buckets([{1: 2, INF: 3}, {0.5: 1, INF: 1}]) == {1: 2, INF: 4, 0.5: 1}
    assert merge_buckets([]) == {}


# --- properties -----------------------------------------------------------------------------------


@st.composite
def histograms(draw: st.DrawFn, bounds: list[float] | None = None) -> dict[float, float]:
    """A cumulative histogram {upper bound: count} with at least one observation."""
    if bounds is None:
        bounds = sorted(draw(st.sets(st.floats(1e-4, 100, allow_nan=False), min_size=0, max_size=8)))
    counts = draw(st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    if sum(counts) == 0:
        counts[draw(st.integers(0, len(counts) - 1))] = 1
    cumulative, out = 0, {}
    for bound, count in zip([*bounds, INF], counts, strict=True):
        cumulative += count
        out[bound] = float(cumulative)
    return out


quantiles = st.floats(0, 1, allow_nan=False)


@given(histograms(), quantiles, quantiles)
def test_quantile_is_monotone_in_q(buckets: dict[float, float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    a, b = quantile_from_buckets(low, buckets), quantile_from_buckets(high, buckets)
    assert a is not None and b is not None
    assert a <= b + 1e-9 * max(1.0, abs(b))


@given(histograms(), quantiles)
def test_quantile_lies_within_the_bucket_that_holds_its_rank(buckets: dict[float, float], q: float) -> None:
    value = quantile_from_buckets(q, buckets)
    assert value is not None
    bounds = sorted(buckets)
    finite = [b for b in bounds if not math.isinf(b)]
    assert 0 <= value <= (finite[-1] if finite else 0)
    rank = q * buckets[INF]
    index = next(i for i, bound in enumerate(bounds) if buckets[bound] >= rank)
    lower = bounds[index - 1] if index > 0 else 0.0
    upper = bounds[index] if not math.isinf(bounds[index]) else lower
    assert lower - 1e-9 <= value <= upper + 1e-9


@given(st.data())
def test_the_merged_quantile_lies_between_the_pods_quantiles(data: st.DataObject) -> None:
    bounds = sorted(data.draw(st.sets(st.floats(1e-3, 100, allow_nan=False), min_size=1, max_size=6)))
    pods = data.draw(st.lists(histograms(bounds), min_size=1, max_size=4))
    q = data.draw(quantiles)
    each = [quantile_from_buckets(q, pod) for pod in pods]
    merged = quantile_from_buckets(q, merge_buckets(pods))
    assert merged is not None and all(v is not None for v in each)
    values = [v for v in each if v is not None]
    assert min(values) - 1e-6 <= merged <= max(values) + 1e-6
