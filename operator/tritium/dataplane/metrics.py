"""Prometheus metrics of the gateway and the stages (one registry per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series double the scrape size and nothing here reads them.
disable_created_metrics()

# Sub-millisecond buckets: the gateway's own overhead is what these histograms are for.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "tritium_gateway_requests", "Requests answered by the gateway.",
            ["model", "endpoint", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "tritium_gateway_request_duration_seconds", "Time from request to response in the gateway.",
            ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.cache = Counter(
            "tritium_gateway_cache", "Response cache lookups by result (hit or miss).",
            ["model", "result"], registry=self.registry,
        )
        # Requests this (stable) gateway sent to the canary revision. They are not counted in
        # tritium_gateway_requests/_duration, which measure this revision: the canary's own
        # gateway counts them there. code: the canary's HTTP status; "fallback": the canary
        # could not be reached and the request was served here (and counted as this revision's);
        # "deadline": no answer before the request's deadline (the client got 504 from here);
        # "broken": the canary's stream ended mid-way (the client got an error event).
        self.forwarded = Counter(
            "tritium_gateway_forwarded_requests", "Inference requests forwarded to the canary revision.",
            ["revision", "code"], registry=self.registry,
        )
        # The share of inference requests this (stable) gateway forwards, labelled with the canary
        # revision: the only place a dashboard can read the weight under `traffic.router: gateway`.
        # A series exists only while forwarding; it is removed when the weight drops to 0 or the
        # canary changes, so a finished rollout leaves no stale canary behind.
        self.canary_weight = Gauge(
            "tritium_gateway_canary_weight_percent",
            "Percent of inference requests forwarded to the canary revision (no series: none forwarded).",
            ["canary"], registry=self.registry,
        )
        self._canary: str | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._forwarded: dict[tuple[str, str], Any] = {}

    def observe(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """Count and time one request (label children are looked up once, then kept)."""
        key = (model, endpoint, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(model, endpoint, str(status)), self.latency.labels(model, endpoint))
            if len(self._children) < 10_000:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def forwarded_to(self, revision: str, code: str) -> None:
        """Count one request forwarded to the canary `revision` (see `forwarded` for the codes)."""
        key = (revision, code)
        child = self._forwarded.get(key)
        if child is None:
            child = self.forwarded.labels(revision, code)
            if len(self._forwarded) < 1_000:
                self._forwarded[key] = child
        child.inc()

    def set_canary_weight(self, canary: str | None, weight: int) -> None:
        """Record the split after a change: `weight` percent to `canary` (None or 0: nothing forwarded).

        Called on a change only, never per request, so removing and setting children is cheap.
        """
        forwarding = canary if canary is not None and weight > 0 else None
        if self._canary is not None and self._canary != forwarding:
            self.canary_weight.remove(self._canary)
        if forwarding is not None:
            self.canary_weight.labels(forwarding).set(weight)
        self._canary = forwarding


class StageMetrics:
    def __init__(self, stage: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "tritium_stage_requests", "Requests processed by the stage.", ["stage", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "tritium_stage_duration_seconds", "Processing time in the stage.", ["stage"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stage = stage


def metrics_route(registry: CollectorRegistry):  # type: ignore[no-untyped-def]
    """The metrics port's one route, GET /metrics, on the data plane's HTTP server."""
    from tritium.dataplane.http.server import Request, Response

    async def handler(request: Request) -> Response:
        if request.path != "/metrics":
            return Response(404, b"not found\n", {"Content-Type": "text/plain"})
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"", {"Allow": "GET"})
        return Response(200, generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST})

    return handler
