"""The built-in analysis provider: scrapes the canary pods' gateway metrics itself, no Prometheus.

Every pod's gateway exposes its own counters (dataplane/metrics.py) on the metrics port. A
measurement scrapes every canary pod at once, and counts what each did since this provider's
previous scrape of it: the provider keeps the last snapshot per (namespace, service, revision,
pod IP) in memory. Sums over pods are request-weighted, and the p99 is taken from the merged
histogram, so a pod with few requests weighs little.

What a delta means in the corner cases:

- A pod seen for the first time contributes everything it counted since it started. For a new
  canary that is its whole life so far, which is right; after an operator restart (the
  snapshots are only in memory) the first measurement of a running canary also covers its whole
  life rather than one interval: a longer window, never a wrong one.
- A series that went down, or vanished, means the pod's process restarted: its current values
  are the delta (what it counted since the restart), as Prometheus' increase() does.
- An unreachable pod keeps its snapshot: its next successful scrape counts the gap too.

Measurements of one target must not run concurrently (the analysis loop measures one
interval at a time): two scrapes of a pod finishing out of order would look like a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tritium import pod_layout
from tritium.controller.analysis import INFERENCE_ENDPOINTS, Target, unmeasured
from tritium.rollout.analysis import Measurement, merge_buckets, quantile_from_buckets

REQUESTS_FAMILY = "tritium_gateway_requests"  # the counter; its samples are named ..._total
LATENCY_FAMILY = "tritium_gateway_request_duration_seconds"
SCRAPE_TIMEOUT_SECONDS = 2.0
MAX_METRICS_BYTES = 16 << 20  # far above a gateway's few hundred series; a bound, not a budget

SeriesKey = tuple[str, ...]


@dataclass(frozen=True)
class PodCounts:
    """One pod's inference counters: requests by (model, endpoint, code), and the cumulative
    latency buckets by (model, endpoint, upper bound)."""

    requests: dict[SeriesKey, float] = field(default_factory=dict)
    buckets: dict[tuple[str, str, float], float] = field(default_factory=dict)

    def restarted_since(self, previous: PodCounts) -> bool:
        """True when a counter went down or disappeared: only a new process does that."""
        for now, before in ((self.requests, previous.requests), (self.buckets, previous.buckets)):
            for key, value in before.items():
                if now.get(key, -1.0) < value:
                    return True
        return False

    def since(self, previous: PodCounts | None) -> PodCounts:
        """What was counted after `previous` (all of it for a new pod or a restarted one)."""
        if previous is None or self.restarted_since(previous):
            return self
        return PodCounts(
            {key: value - previous.requests.get(key, 0.0) for key, value in self.requests.items()},
            {key: value - previous.buckets.get(key, 0.0) for key, value in self.buckets.items()},
        )


def parse_counts(text: str) -> PodCounts:
    """The inference series of one scrape (Prometheus text format); ValueError when unparsable."""
    counts = PodCounts()
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS_FAMILY:
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels.get("endpoint") in INFERENCE_ENDPOINTS:
                    key = (labels.get("model", ""), labels["endpoint"], labels.get("code", ""))
                    counts.requests[key] = sample.value
        elif family.name == LATENCY_FAMILY:
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_bucket") and labels.get("endpoint") in INFERENCE_ENDPOINTS:
                    bucket = (labels.get("model", ""), labels["endpoint"], float(labels["le"]))
                    counts.buckets[bucket] = sample.value
    return counts


def summarize(deltas: list[PodCounts]) -> tuple[float, float, float | None]:
    """Requests, 5xx errors and p99 (ms) of the pods' deltas together."""
    requests = sum(v for d in deltas for v in d.requests.values())
    errors = sum(v for d in deltas for (_, _, code), v in d.requests.items() if code.startswith("5"))
    histograms: dict[tuple[int, str, str], dict[float, float]] = {}
    for pod, d in enumerate(deltas):
        for (model, endpoint, bound), count in d.buckets.items():
            histograms.setdefault((pod, model, endpoint), {})[bound] = count
    p99 = quantile_from_buckets(0.99, merge_buckets(histograms.values()))
    return requests, errors, None if p99 is None else p99 * 1000.0


class BuiltinProvider:
    """Scrapes ``http://POD_IP:PORT/metrics`` of every canary pod, and ``http://IP:PORT/metrics`` of
    every explicit metrics endpoint of the target; only ever the addresses given, never a name."""

    def __init__(self, port: int = pod_layout.GATEWAY_METRICS_PORT,
                 timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self.port = port
        self.timeout_seconds = timeout_seconds
        self._snapshots: dict[tuple[str, str, str, str], PodCounts] = {}

    def url_for(self, pod_ip: str) -> str | None:
        """The metrics URL of a pod, or None when `pod_ip` is not an IP address (never a host
        name: nothing but the pod itself is ever dialed)."""
        try:
            address = ipaddress.ip_address(pod_ip)
        except ValueError:
            return None
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{host}:{self.port}/metrics"

    def url_for_endpoint(self, endpoint: str) -> str | None:
        """The metrics URL of an explicit ``IP:PORT`` (``[IPv6]:PORT``), or None when it is not
        one: as with pod IPs, a host name is never dialed."""
        host, sep, port = endpoint.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            return None
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{host}:{int(port)}/metrics"

    def forget(self, namespace: str, name: str) -> None:
        """Drop the snapshots of a service (its rollout ended): the memory stays bounded."""
        for key in [k for k in self._snapshots if k[0] == namespace and k[1] == name]:
            del self._snapshots[key]

    async def measure(self, target: Target, window_seconds: float) -> Measurement:
        # Each address is a key of its own: a pod IP at the layout's port, or an explicit endpoint.
        urls = {ip: self.url_for(ip) for ip in target.pod_ips}
        urls.update({ep: self.url_for_endpoint(ep) for ep in target.metrics_endpoints})
        pods = tuple(urls)
        source = f"builtin, {len(pods)} pod(s) of revision {target.revision}"
        if not pods:
            return unmeasured(source, window_seconds, "the canary revision has no pod with an IP yet")
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            results = await asyncio.gather(*(self._scrape(session, ip, urls[ip]) for ip in pods))
        deltas: list[PodCounts] = []
        failures: list[str] = []
        for ip, result in zip(pods, results, strict=True):
            if isinstance(result, str):
                failures.append(f"{ip} ({result})")
                continue
            key = (target.namespace, target.name, target.revision, ip)
            deltas.append(result.since(self._snapshots.get(key)))
            self._snapshots[key] = result
        self._drop_gone_pods(target, pods)
        if not deltas:
            return unmeasured(source, window_seconds, "no canary pod reachable: " + ", ".join(failures))
        requests, errors, p99_ms = summarize(deltas)
        if failures:
            source += f"; {len(failures)} unreachable, skipped: " + ", ".join(failures)
        return Measurement(requests=requests, errors=errors, p99_ms=p99_ms, window_seconds=window_seconds,
                           source=source)

    async def _scrape(self, session: aiohttp.ClientSession, pod_ip: str, url: str | None = None) -> PodCounts | str:
        """The pod's counts, or why there are none (a string: a pod failing is not an exception
        here, it is one line of the measurement's source)."""
        url = url if url is not None else self.url_for(pod_ip)
        if url is None:
            return "not an IP address"
        try:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    return f"HTTP {response.status}"
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > MAX_METRICS_BYTES:
                        return f"metrics larger than {MAX_METRICS_BYTES} bytes"
            counts = parse_counts(body.decode("utf-8", "replace"))
        except TimeoutError:
            return f"no answer within {self.timeout_seconds:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except (ValueError, KeyError, IndexError) as exc:
            return f"unparsable metrics ({exc})"
        if any(not math.isfinite(v) for v in (*counts.requests.values(), *counts.buckets.values())):
            return "unparsable metrics (a counter is not finite)"
        return counts

    def _drop_gone_pods(self, target: Target, pods: tuple[str, ...]) -> None:
        """Forget the pods of this revision that are no longer in it (replaced, scaled down)."""
        gone = [k for k in self._snapshots
                if k[:3] == (target.namespace, target.name, target.revision) and k[3] not in pods]
        for key in gone:
            del self._snapshots[key]
