"""Judging one measurement of a canary revision (pure: the providers that take it do the I/O).

A measurement is request-weighted: the counts of one analysis window summed over every pod of
the canary revision, and the p99 of their merged latency histogram. No data, or too few
requests, is Inconclusive — never a pass: a canary nobody called has proven nothing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class Measurement:
    """What a provider measured of one revision over one window.

    ``requests`` and ``errors`` are counts in the window (errors: answers with a 5xx status; a
    4xx is the client's fault, not the revision's). ``p99_ms`` is None when nothing was timed.
    ``error`` is set when the provider could not measure at all (Prometheus down, no pod
    reachable): the result is then Inconclusive and says why.
    """

    requests: float
    errors: float
    p99_ms: float | None
    window_seconds: float
    source: str
    error: str | None = None

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float = 0.01
    max_p99_latency_ms: float = 1000.0
    min_requests: int = 20


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    message: str


def judge(m: Measurement, t: Thresholds) -> Judgement:
    """Passed, Failed or Inconclusive, with a message that gives the figures against the limits."""
    if m.error is not None:
        return Judgement(Verdict.INCONCLUSIVE, f"no measurement ({m.source}): {m.error}")
    if m.requests < t.min_requests:
        return Judgement(Verdict.INCONCLUSIVE, f"{m.requests:.0f} request(s) in {m.window_seconds:.0f} s, "
                         f"fewer than the {t.min_requests} needed to judge")
    ratio = m.error_ratio or 0.0
    parts = [f"error ratio {ratio:.2%} (max {t.max_error_ratio:.2%})"]
    failed = ratio > t.max_error_ratio
    if m.p99_ms is None:
        parts.append("p99 unknown")
    else:
        parts.append(f"p99 {m.p99_ms:.0f} ms (max {t.max_p99_latency_ms:.0f} ms)")
        failed = failed or m.p99_ms > t.max_p99_latency_ms
    text = f"{', '.join(parts)} over {m.requests:.0f} request(s)"
    return Judgement(Verdict.FAILED if failed else Verdict.PASSED, text)


def quantile_from_buckets(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated within its
    bucket as Prometheus' histogram_quantile does; None without observations.

    Used by the built-in provider, which merges the buckets of every canary pod: the p99 of the
    whole revision, request-weighted, not an average of per-pod p99s.
    """
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # in the open-ended bucket: the highest finite bound, as Prometheus
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def merge_buckets(histograms: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Sum cumulative histograms with the same bounds (a bound one lacks counts as 0 there)."""
    out: dict[float, float] = {}
    for histogram in histograms:
        for bound, count in histogram.items():
            out[bound] = out.get(bound, 0.0) + count
    return out
