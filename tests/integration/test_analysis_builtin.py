"""The built-in analysis provider against real metrics endpoints: the gateway's own registry and
metrics route on the data plane's HTTP server, one 127.1.0.x address per simulated pod."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.support.prometheus import MetricsPod, free_shared_port
from tritium.controller.analysis import INFERENCE_ENDPOINTS, Target
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.dataplane import gateway
from tritium.dataplane.http.server import Router
from tritium.rollout.analysis import Thresholds, Verdict, judge

A, B, C, D = "127.1.0.11", "127.1.0.12", "127.1.0.13", "127.1.0.14"
NOBODY = "127.1.0.19"  # nothing listens there: connection refused
HANGING = "127.1.0.18"  # accepts, never answers
WINDOW = 30.0


@pytest.fixture
def port() -> int:
    return free_shared_port(A, B, C, D, NOBODY, HANGING)


@pytest.fixture
async def pods(port: int) -> AsyncIterator[dict[str, MetricsPod]]:
    started = {ip: await MetricsPod(ip, port).start() for ip in (A, B, C, D)}
    try:
        yield started
    finally:
        for pod in started.values():
            await pod.stop()


def provider_for_test(port: int, timeout: float = 2.0) -> BuiltinProvider:
    return BuiltinProvider(port=port, timeout_seconds=timeout)


def assert_loopback_urls(provider: BuiltinProvider, target: Target) -> None:
    """Every URL the provider dials for `target` is a pod's loopback address: nothing else."""
    for ip in target.pod_ips:
        url = provider.url_for(ip)
        assert url is not None
        parts = urlsplit(url)
        assert ipaddress.ip_address(parts.hostname or "") in ipaddress.ip_network("127.0.0.0/8"), url
        assert (parts.hostname, parts.port, parts.path) == (ip, provider.port, "/metrics")


def target(revision: str, *ips: str) -> Target:
    return Target(namespace="ns", name="svc", revision=revision, pod_ips=ips)


async def test_sums_are_request_weighted_and_p99_comes_from_the_merged_buckets(pods: dict[str, MetricsPod],
                                                                                port: int) -> None:
    pods[A].traffic(900)  # 3 ms each
    pods[A].traffic(80, endpoint="invoke")
    pods[B].traffic(20, error_every=2, seconds=0.7, endpoint="stream")
    # Health and metadata calls, slow and failing, are not what a canary is judged on.
    for _ in range(50):
        pods[B].metrics.observe("add", "ready", 500, 5.0)
        pods[B].metrics.observe("add", "metadata", 503, 20.0)
    provider, canary = provider_for_test(port), target("rev1", A, B)
    assert_loopback_urls(provider, canary)

    m = await provider.measure(canary, WINDOW)

    assert m.error is None, m
    assert (m.requests, m.errors) == (1000, 10)
    # Request-weighted: 10/1000 = 1 %, where the mean of the pods' ratios (0 % and 50 %) is 25 %.
    assert m.error_ratio == pytest.approx(0.01)
    # Merged: 980 below 5 ms, 20 in (0.5 s, 1 s]; rank 990 is half-way into that bucket: 750 ms.
    # (B's own p99 is ~995 ms; the mean of per-pod p99s would be ~500 ms.)
    assert m.p99_ms == pytest.approx(750.0)
    assert m.window_seconds == WINDOW and "2 pod(s)" in m.source and "unreachable" not in m.source
    assert pods[A].scrapes == ["/metrics"] and pods[B].scrapes == ["/metrics"]
    assert pods[C].scrapes == [] and pods[D].scrapes == []


async def test_a_healthy_revision_passes_and_a_failing_one_fails(pods: dict[str, MetricsPod], port: int) -> None:
    for ip in (A, B):
        pods[ip].traffic(200, seconds=0.004)
    for ip in (C, D):
        pods[ip].traffic(200, error_every=10, seconds=1.5, error_seconds=0.2)  # 10 % 500s, slow
    provider, thresholds = provider_for_test(port), Thresholds(max_error_ratio=0.01, max_p99_latency_ms=1000)
    good, bad = target("good", A, B), target("bad", C, D)

    healthy, failing = await asyncio.gather(provider.measure(good, WINDOW), provider.measure(bad, WINDOW))

    assert (healthy.requests, healthy.errors) == (400, 0) and healthy.p99_ms is not None and healthy.p99_ms <= 5
    assert judge(healthy, thresholds).verdict is Verdict.PASSED
    assert (failing.requests, failing.errors) == (400, 40) and failing.p99_ms is not None and failing.p99_ms > 1000
    verdict = judge(failing, thresholds)
    assert verdict.verdict is Verdict.FAILED and "10.00%" in verdict.message, verdict


async def test_a_measurement_counts_only_what_happened_since_the_previous_one(pods: dict[str, MetricsPod],
                                                                              port: int) -> None:
    provider, canary = provider_for_test(port), target("rev1", A, B)
    pods[A].traffic(100)
    pods[B].traffic(50, error_every=5)
    first = await provider.measure(canary, WINDOW)
    assert (first.requests, first.errors) == (150, 10)  # pods seen first: all they counted since start

    pods[A].traffic(30, seconds=0.2)
    pods[B].traffic(10, error_every=10, seconds=0.2)
    second = await provider.measure(canary, WINDOW)
    assert (second.requests, second.errors) == (40, 1)
    assert second.p99_ms is not None and 100 < second.p99_ms <= 250  # only the new, slower requests

    idle = await provider.measure(canary, WINDOW)
    assert (idle.requests, idle.errors, idle.p99_ms, idle.error) == (0, 0, None, None)
    assert judge(idle, Thresholds()).verdict is Verdict.INCONCLUSIVE

    provider.forget("ns", "svc")  # as after an operator restart: every pod is new again
    assert (await provider.measure(canary, WINDOW)).requests == 190


async def test_a_restarted_pod_counts_what_it_did_since_the_restart(pods: dict[str, MetricsPod], port: int) -> None:
    provider, canary = provider_for_test(port), target("rev1", A, B)
    pods[A].traffic(100)
    pods[B].traffic(100)
    await provider.measure(canary, WINDOW)

    await pods[B].restart()  # counters back at 0
    pods[B].traffic(5, error_every=5)
    pods[A].traffic(10)
    m = await provider.measure(canary, WINDOW)

    assert (m.requests, m.errors) == (15, 1), m  # not 10 + (5 - 100)
    assert m.p99_ms is not None and m.p99_ms > 0


async def test_unreachable_pods_are_skipped_and_named(pods: dict[str, MetricsPod], port: int) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    hanging = await asyncio.start_server(never_answer, HANGING, port)
    try:
        pods[A].traffic(60)
        provider, canary = provider_for_test(port, timeout=0.5), target("rev1", A, NOBODY, HANGING)
        assert_loopback_urls(provider, canary)
        m = await asyncio.wait_for(provider.measure(canary, WINDOW), timeout=5)
    finally:
        hanging.close()
    assert m.error is None, m
    assert m.requests == 60
    assert "2 unreachable" in m.source and NOBODY in m.source and HANGING in m.source, m.source
    assert f"{HANGING} (no answer within 0.5 s)" in m.source, m.source


async def test_no_reachable_pod_is_an_error_measurement(port: int) -> None:
    provider = provider_for_test(port, timeout=0.5)
    m = await provider.measure(target("rev1", NOBODY, "metrics.example.com"), WINDOW)
    assert (m.requests, m.errors, m.p99_ms) == (0, 0, None)
    assert m.error is not None and m.error.startswith("no canary pod reachable"), m
    assert NOBODY in m.error and "metrics.example.com (not an IP address)" in m.error, m.error
    assert judge(m, Thresholds()).verdict is Verdict.INCONCLUSIVE

    empty = await provider.measure(target("rev1"), WINDOW)
    assert empty.error is not None and "no pod" in empty.error


def test_urls_name_only_the_pod_ip_and_the_metrics_port() -> None:
    provider = BuiltinProvider()
    assert provider.url_for("10.1.2.3") == "http://10.1.2.3:9090/metrics"
    assert provider.url_for("fd00::1") == "http://[fd00::1]:9090/metrics"
    assert provider.url_for("evil.example.com") is None
    assert provider.url_for("10.1.2.3/../x") is None


def test_the_inference_endpoint_labels_are_the_gateways() -> None:
    """The gateway's POST inference routes get exactly the labels the providers count (a renamed
    label would otherwise silently count nothing)."""
    router = gateway.build_router(_AnyHandler())  # type: ignore[arg-type]
    labels: dict[str, set[str]] = {}
    for routes in router._routes.values():
        for _, pattern, methods in routes:
            labels.setdefault(gateway._endpoint_label(pattern), set()).update(methods)
    inference = {label for label, methods in labels.items() if label in INFERENCE_ENDPOINTS}
    assert inference == set(INFERENCE_ENDPOINTS)
    assert all(labels[label] == {"POST"} for label in inference)
    assert {"live", "ready", "model_ready", "metadata"} <= set(labels) - inference
    assert isinstance(router, Router)


class _AnyHandler:
    """Stands in for a Gateway when only the routes are wanted."""

    def __getattr__(self, name: str) -> object:
        return object()
