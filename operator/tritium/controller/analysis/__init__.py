"""Measuring a canary revision: the providers that do the I/O for rollout/analysis.py's judge().

Two providers answer the same question (how many requests, how many 5xx, what p99, over the
last window) from different places: ``builtin`` scrapes the canary pods' gateway metrics itself
and needs nothing installed, ``prometheus`` asks a Prometheus that already scrapes them. Both
count only inference endpoints: health and metadata calls are cheap and plentiful, and would
dilute the error ratio and the p99 of what users actually call.

A provider never raises because it could not measure: it returns a Measurement with ``error``
set, which judge() turns into Inconclusive, so one unreachable Prometheus or pod delays a
rollout instead of crashing the operator's analysis loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tritium.rollout.analysis import Measurement

# Values of the gateway's `endpoint` metrics label that are inference (dataplane/gateway.py,
# _endpoint_label): "/infer", "/invoke" and "/stream" routes. Everything else (live, ready,
# model_ready, server, metadata, config, stats, other) is not what a canary is judged on.
INFERENCE_ENDPOINTS: tuple[str, ...] = ("infer", "invoke", "stream")


@dataclass(frozen=True)
class Target:
    """The canary revision to measure: its service, and the IPs of its pods (builtin scrapes
    those; prometheus selects by namespace, service and revision labels instead).

    ``metrics_endpoints`` are explicit ``IP:PORT`` metrics addresses for builtin, for gateways
    that do not listen on the pod layout's metrics port: local mode runs every revision's gateway
    on loopback with ports of its own.
    """

    namespace: str
    name: str
    revision: str
    pod_ips: tuple[str, ...] = ()
    metrics_endpoints: tuple[str, ...] = ()


class Provider(Protocol):
    async def measure(self, target: Target, window_seconds: float) -> Measurement:
        """The target's counts over the last ``window_seconds``; never raises on a measuring
        failure (the Measurement says why instead)."""
        ...


def unmeasured(source: str, window_seconds: float, error: str) -> Measurement:
    """The Measurement of a provider that could not measure: no requests, and the reason."""
    return Measurement(requests=0, errors=0, p99_ms=None, window_seconds=window_seconds, source=source, error=error)
