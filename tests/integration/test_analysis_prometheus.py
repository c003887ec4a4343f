"""The Prometheus analysis provider against a real Prometheus scraping real gateway metrics endpoints.

Two revisions of one service, one pod each on loopback. "good" is scraped with a plain static
config; "bad" the way the Prometheus Operator scrapes a PodMonitor, with an ``endpoint`` target
label (the port's name), which makes Prometheus rename the gateway's own label to
``exported_endpoint``: the provider must find the inference series under either name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.prometheus import MetricsPod, Prometheus, free_shared_port, running_prometheus
from tritium.controller.analysis import Target
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.controller.analysis.choose import provider_for
from tritium.controller.analysis.prometheus import PrometheusProvider, queries
from tritium.local.tritonserver import free_port
from tritium.rollout.analysis import Thresholds, Verdict, judge

GOOD, BAD = "127.1.0.21", "127.1.0.22"
GOOD_TARGET = Target(namespace="ns", name="svc", revision="good", pod_ips=(GOOD,))
BAD_TARGET = Target(namespace="ns", name="svc", revision="bad", pod_ips=(BAD,))
WINDOW = 20.0


def job(name: str, address: str, port: int, **labels: str) -> dict[str, object]:
    series = {"namespace": "ns", "inferenceservice": "svc", **labels}
    return {"job_name": name, "static_configs": [{"targets": [f"{address}:{port}"], "labels": series}]}


@pytest.fixture
async def scraped() -> AsyncIterator[tuple[Prometheus, MetricsPod, MetricsPod]]:
    port = free_shared_port(GOOD, BAD)
    good, bad = await MetricsPod(GOOD, port).start(), await MetricsPod(BAD, port).start()
    jobs = [job("good", GOOD, port, revision="good"),
            job("bad", BAD, port, revision="bad", endpoint="metrics")]
    try:
        async with running_prometheus(jobs) as prometheus:
            yield prometheus, good, bad
    finally:
        await good.stop()
        await bad.stop()


async def test_the_good_revision_passes_and_the_bad_one_fails(
        scraped: tuple[Prometheus, MetricsPod, MetricsPod]) -> None:
    prometheus, good, bad = scraped
    # A first request of each series, scraped before the traffic that is measured: to
    # increase(), a series' first value is where it starts, not an increase.
    good.traffic(1)
    bad.traffic(10, error_every=10)
    bad.metrics.observe("add", "ready", 500, 5.0)  # health checks: never counted
    await prometheus.wait_until('count(tritium_gateway_requests_total{namespace="ns"})', lambda r: bool(r)
                                and float(r[0]["value"][1]) == 4)
    for _ in range(4):  # traffic over a few scrapes
        good.traffic(50, seconds=0.004)
        bad.traffic(50, error_every=10, seconds=1.5, error_seconds=0.3)
        for _ in range(20):
            bad.metrics.observe("add", "ready", 500, 5.0)
        await asyncio.sleep(1.1)
    await prometheus.wait_until('sum(tritium_gateway_requests_total{revision="bad", exported_endpoint="infer"})',
                                lambda r: bool(r) and float(r[0]["value"][1]) == 210)
    await prometheus.wait_until('sum(tritium_gateway_requests_total{revision="good", endpoint="infer"})',
                                lambda r: bool(r) and float(r[0]["value"][1]) == 201)

    provider, thresholds = PrometheusProvider(prometheus.url), Thresholds()
    healthy = await provider.measure(GOOD_TARGET, WINDOW)
    failing = await provider.measure(BAD_TARGET, WINDOW)

    assert healthy.error is None and failing.error is None, (healthy, failing)
    assert healthy.window_seconds == 20 and prometheus.url in healthy.source
    # increase() extrapolates to the window's edges: about the 200 measured requests.
    assert 180 <= healthy.requests <= 300 and healthy.errors == 0, healthy
    assert healthy.p99_ms is not None and healthy.p99_ms <= 5, healthy
    assert judge(healthy, thresholds).verdict is Verdict.PASSED
    assert 180 <= failing.requests <= 300, failing  # found under exported_endpoint; the health checks left out
    assert failing.error_ratio == pytest.approx(0.1, abs=0.03), failing
    assert failing.p99_ms is not None and failing.p99_ms > 1000, failing
    assert judge(failing, thresholds).verdict is Verdict.FAILED

    # Once the traffic stopped, a window without requests: rate() is 0 in every bucket and
    # histogram_quantile() NaN, which is no p99 rather than a number.
    await asyncio.sleep(3)
    quiet = await provider.measure(GOOD_TARGET, 2)
    raw = await prometheus.query(queries(GOOD_TARGET, 2)["p99_ms"])
    assert [sample["value"][1] for sample in raw] == ["NaN"], raw
    assert (quiet.requests, quiet.errors, quiet.p99_ms, quiet.error) == (0, 0, None, None), quiet
    assert judge(quiet, thresholds).verdict is Verdict.INCONCLUSIVE

    # A revision nobody scraped: an empty vector is 0 requests and no p99, not an error.
    nothing = await provider.measure(Target("ns", "svc", "absent"), WINDOW)
    assert (nothing.requests, nothing.errors, nothing.p99_ms, nothing.error) == (0, 0, None, None)
    assert judge(nothing, thresholds).verdict is Verdict.INCONCLUSIVE


async def test_an_unreachable_prometheus_is_an_error_measurement() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
    m = await provider.measure(GOOD_TARGET, 29.6)
    assert (m.requests, m.errors, m.p99_ms, m.window_seconds) == (0, 0, None, 30)
    assert m.error is not None and "Connect" in m.error, m
    assert judge(m, Thresholds()).verdict is Verdict.INCONCLUSIVE


async def test_a_server_that_is_not_prometheus_is_an_error_measurement() -> None:
    port = free_shared_port(GOOD)
    pod = await MetricsPod(GOOD, port).start()  # a real HTTP server that answers 404 off /metrics
    try:
        m = await PrometheusProvider(f"http://{GOOD}:{port}").measure(GOOD_TARGET, WINDOW)
    finally:
        await pod.stop()
    assert m.error is not None and "HTTP 404, not a JSON answer" in m.error, m
    assert pod.scrapes == ["/api/v1/query"] * 3


def test_queries_select_the_service_revision_and_inference_endpoints() -> None:
    q = queries(Target("ns", 'we"ird', "abc123"), 30)
    for expr in q.values():
        assert 'namespace="ns"' in expr and 'inferenceservice="we\\"ird"' in expr and 'revision="abc123"' in expr
        assert 'endpoint=~"infer|invoke|stream"' in expr and 'exported_endpoint=~"infer|invoke|stream"' in expr
        assert "[30s]" in expr
    assert 'code=~"5.."' in q["errors"] and 'code=~"5.."' not in q["requests"]
    assert q["p99_ms"].startswith("histogram_quantile(0.99, ") and q["p99_ms"].endswith(" * 1000")


def test_provider_by_name() -> None:
    assert isinstance(provider_for("builtin", None), BuiltinProvider)
    chosen = provider_for("prometheus", "http://prometheus.monitoring:9090/")
    assert isinstance(chosen, PrometheusProvider) and chosen.url == "http://prometheus.monitoring:9090"
    with pytest.raises(ValueError, match="needs a Prometheus URL"):
        provider_for("prometheus", None)
    with pytest.raises(ValueError, match="unknown analysis provider 'datadog'"):
        provider_for("datadog", "http://x")
    with pytest.raises(ValueError, match="http:// or https://"):
        PrometheusProvider("prometheus:9090")
