"""The Prometheus analysis provider: three instant queries over the analysis window.

The gateway's series carry no namespace, service or revision of their own: scraping attaches
them. The service's PodMonitor (render/podmonitor.py) relabels the pod label
serving.tritium.dev/revision to ``revision`` and sets ``inferenceservice`` to the service's
name; Prometheus' pod discovery gives ``namespace``. The revision is a hash of the pod spec
only, so two services with equal specs in one namespace share it: the service label keeps
their canaries apart.

The Prometheus Operator also sets an ``endpoint`` target label (the scraped port's name), and
with honorLabels off Prometheus renames the gateway's own ``endpoint`` label to
``exported_endpoint``. Each query therefore selects inference endpoints under either name
(``A or B``: B only counts when A found nothing), so it works behind the Operator and with a
plain scrape config alike.

The caller picks the window: whole seconds, and at least twice Prometheus' scrape interval
(the PodMonitor scrapes every 15 s), or increase() and rate() see fewer than two samples and
the window measures nothing. increase() extrapolates to the window's edges, so the counts are
estimates (99.8 requests); the ratios are what is judged. A series' very first value is not
an increase to Prometheus: the requests a gateway answered before its first scrape of a label
combination are not counted, which the analysis' minimum request count absorbs.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp

from tritium.controller.analysis import INFERENCE_ENDPOINTS, Target, unmeasured
from tritium.render.podmonitor import SERIES_LABEL_REVISION, SERIES_LABEL_SERVICE
from tritium.rollout.analysis import Measurement

QUERY_TIMEOUT_SECONDS = 5.0
REQUESTS_METRIC = "tritium_gateway_requests_total"
LATENCY_BUCKET_METRIC = "tritium_gateway_request_duration_seconds_bucket"
ENDPOINT_LABELS = ("endpoint", "exported_endpoint")


class QueryError(Exception):
    """Prometheus answered, but not with a result (bad query, overloaded, not Prometheus)."""


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal of `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(target: Target, endpoint_label: str, *extra: str) -> str:
    """The label matchers of the target's inference series, with the endpoint under `endpoint_label`."""
    matchers = [
        f"namespace={promql_string(target.namespace)}",
        f"{SERIES_LABEL_SERVICE}={promql_string(target.name)}",
        f"{SERIES_LABEL_REVISION}={promql_string(target.revision)}",
        f"{endpoint_label}=~{promql_string('|'.join(INFERENCE_ENDPOINTS))}",
        *extra,
    ]
    return "{" + ", ".join(matchers) + "}"


def queries(target: Target, window: int) -> dict[str, str]:
    """The PromQL of requests, errors and p99 (ms) of the target over the last `window` seconds."""

    def either(build: Any) -> str:
        return " or ".join(f"({build(label)})" for label in ENDPOINT_LABELS)

    def increase(label: str, *extra: str) -> str:
        return f"sum(increase({REQUESTS_METRIC}{selector(target, label, *extra)}[{window}s]))"

    def buckets(label: str) -> str:
        return f"sum by (le) (rate({LATENCY_BUCKET_METRIC}{selector(target, label)}[{window}s]))"

    return {
        "requests": either(increase),
        "errors": either(lambda label: increase(label, 'code=~"5.."')),
        "p99_ms": f"histogram_quantile(0.99, {either(buckets)}) * 1000",
    }


def scalar_of(data: Any) -> float | None:
    """The one value of an instant vector answer; None for an empty vector (no such series)."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise QueryError(f"expected a vector result, got {data!r:.200}")
    result = data["result"]
    if not result:
        return None
    return float(result[0]["value"][1])  # Prometheus sends numbers as strings: "NaN", "+Inf" included


class PrometheusProvider:
    """Asks the Prometheus HTTP API at `url` (``http(s)://host:port``, optionally with a path prefix)."""

    def __init__(self, url: str, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the Prometheus URL must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    async def measure(self, target: Target, window_seconds: float) -> Measurement:
        window = max(1, round(window_seconds))
        source = f"prometheus {self.url}, revision {target.revision}"
        exprs = queries(target, window)
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            answers = await asyncio.gather(*(self._query(session, expr) for expr in exprs.values()),
                                           return_exceptions=True)
        values: list[float | None] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                return unmeasured(source, window, self._describe(answer))
            values.append(answer)
        requests, errors, p99 = values
        return Measurement(
            requests=requests if requests is not None and math.isfinite(requests) else 0.0,
            errors=errors if errors is not None and math.isfinite(errors) else 0.0,
            # NaN: no request in the window. +Inf stays: every request beyond the last bound fails the limit.
            p99_ms=None if p99 is None or math.isnan(p99) else p99,
            window_seconds=window,
            source=source,
        )

    def _describe(self, exc: BaseException) -> str:
        """Why a query gave no value; anything unexpected is re-raised (a bug, not a measurement)."""
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout_seconds:g} s"
        if isinstance(exc, aiohttp.ClientError | OSError):
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, QueryError | ValueError | KeyError | IndexError | TypeError):
            return f"unexpected answer: {exc}"
        raise exc

    async def _query(self, session: aiohttp.ClientSession, expr: str) -> float | None:
        async with session.get(f"{self.url}/api/v1/query", params={"query": expr}, allow_redirects=False) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                raise QueryError(f"HTTP {response.status}, not a JSON answer") from None
        if not isinstance(body, dict):
            raise QueryError(f"HTTP {response.status}, not a Prometheus answer")
        if body.get("status") != "success":
            raise QueryError(f"HTTP {response.status}, {body.get('errorType', 'error')}: {body.get('error', '')}")
        return scalar_of(body.get("data"))
