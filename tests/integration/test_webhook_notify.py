"""WebhookNotifier against a real HTTP server on loopback: retries, refusals, hangs, overflow, close.

The server (aiohttp.web, on 127.0.0.1) records every request and answers per path: ``/ok`` 200,
``/flaky`` 500 twice then 200, ``/bad`` 400, ``/busy`` 429 with ``Retry-After: 5`` once then 200,
``/hang`` never answers, ``/gate`` answers once the test opens the gate. A closed port stands for a
webhook that refuses connections. Timeouts and backoffs are shrunk through the constructor.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from tritium.controller.notify import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AnalysisSummary,
    EventType,
    Notification,
    WebhookNotifier,
    verify_signature,
)

SECRET = b"webhook-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Webhook:
    base: str
    requests: list[Received] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    forever: asyncio.Event = field(default_factory=asyncio.Event)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, n: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.on(path)) < n:
            assert time.monotonic() < deadline, f"{path}: {len(self.on(path))} of {n} requests arrived"
            await asyncio.sleep(0.005)
        return self.on(path)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook(base="")

    async def handle(request: web.Request) -> web.Response:
        path = request.path
        hook.calls[path] += 1
        hook.requests.append(Received(path, dict(request.headers), await request.read(), time.monotonic()))
        if path == "/flaky" and hook.calls[path] <= 2:
            return web.Response(status=500, text="down")
        if path == "/busy" and hook.calls[path] == 1:
            return web.Response(status=429, headers={"Retry-After": "5"})
        if path == "/bad":
            return web.Response(status=400, text="no")
        if path == "/hang":
            await hook.forever.wait()
        if path == "/gate":
            await hook.gate.wait()
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hook.base = f"http://{host}:{port}"
    try:
        yield hook
    finally:
        hook.forever.set()
        hook.gate.set()
        await runner.cleanup()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens: connections are refused


def metric(result: str) -> float:
    return REGISTRY.get_sample_value("tritium_operator_webhook_deliveries_total", {"result": result}) or 0.0


def event(type_: EventType = EventType.CANARY_STARTED, message: str = "canary at 10%") -> Notification:
    return Notification(
        type=type_, namespace="prod", name="resnet", message=message, stable_revision="resnet-1",
        canary_revision="resnet-2", canary_weight=10, phase="Progressing",
        analysis=AnalysisSummary("Failed", error_ratio=0.05, p99_latency_ms=420.0, requests=300),
    )


def notifier(**kw: float) -> WebhookNotifier:
    settings: dict[str, float] = {"timeout_s": 0.5, "backoff_s": 0.02, "max_backoff_s": 0.1, "close_grace_s": 0.5}
    return WebhookNotifier(**(settings | kw))  # type: ignore[arg-type]


async def test_body_headers_and_signature(webhook: Webhook) -> None:
    async with notifier() as n:
        sent = event(EventType.ANALYSIS_FAILED, "error ratio 5.00% (max 1.00%)")
        n.send(webhook.url("/ok"), sent, SECRET)
        n.send(webhook.url("/ok"), event(EventType.PROMOTED), None)
        signed, unsigned = await webhook.wait_for("/ok", 2)
    body = json.loads(signed.body)
    assert body == sent.to_dict()
    assert body["schemaVersion"] == 1 and body["type"] == "AnalysisFailed"
    assert body["inferenceService"] == {"namespace": "prod", "name": "resnet"}
    assert body["analysis"] == {"verdict": "Failed", "errorRatio": 0.05, "p99LatencyMs": 420.0, "requests": 300}
    assert signed.headers["Content-Type"] == "application/json"
    assert signed.headers[EVENT_HEADER] == "AnalysisFailed"
    ts, sig = signed.headers[TIMESTAMP_HEADER], signed.headers[SIGNATURE_HEADER]
    assert abs(int(ts) - time.time()) < 5
    assert verify_signature(SECRET, ts, signed.body, sig)
    assert not verify_signature(b"another-secret", ts, signed.body, sig)
    assert not verify_signature(SECRET, ts, signed.body.replace(b"resnet", b"resnex"), sig)
    assert not verify_signature(SECRET, int(ts) + 1, signed.body, sig)
    assert SIGNATURE_HEADER not in unsigned.headers and unsigned.headers[EVENT_HEADER] == "Promoted"
    assert n.counts["delivered"] == 2


async def test_retried_after_500s_and_delivered_exactly_once(webhook: Webhook) -> None:
    delivered = metric("delivered")
    async with notifier() as n:
        n.send(webhook.url("/flaky"), event(), SECRET)
        assert await n.join(timeout=5)
    attempts = webhook.on("/flaky")
    assert len(attempts) == 3  # 500, 500, 200 — and nothing after the 200
    assert len({r.body for r in attempts}) == 1  # the same event (same id) each time
    for r in attempts:  # each attempt is signed with its own timestamp
        assert verify_signature(SECRET, r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])
    assert attempts[1].at - attempts[0].at >= 0.015  # 0.02 s backoff
    assert attempts[2].at - attempts[1].at >= 0.035  # doubled
    assert n.counts == {"delivered": 1}
    assert metric("delivered") == delivered + 1


async def test_no_retry_on_400(webhook: Webhook) -> None:
    failed = metric("failed")
    async with notifier() as n:
        n.send(webhook.url("/bad"), event(), SECRET)
        assert await n.join(timeout=5)
        await asyncio.sleep(0.2)  # longer than any backoff: a retry would have arrived
    assert len(webhook.on("/bad")) == 1
    assert n.counts == {"failed": 1}
    assert metric("failed") == failed + 1


async def test_retry_after_is_honoured_up_to_its_cap(webhook: Webhook) -> None:
    async with notifier(retry_after_cap_s=0.3) as n:
        n.send(webhook.url("/busy"), event(), None)
        assert await n.join(timeout=5)
    first, second = webhook.on("/busy")
    assert 0.25 <= second.at - first.at < 2  # not the 0.02 s backoff, not the asked-for 5 s
    assert n.counts == {"delivered": 1}


async def test_a_refused_connection_is_retried_then_failed() -> None:
    async with notifier(max_attempts=3) as n:
        started = time.monotonic()
        n.send(closed_port_url(), event(), SECRET)
        assert await n.join(timeout=5)
    assert n.counts == {"failed": 1}
    assert time.monotonic() - started >= 0.02 + 0.04 - 0.01  # two backoffs between three attempts


async def test_a_hanging_webhook_blocks_neither_send_nor_other_urls(webhook: Webhook) -> None:
    async with notifier(timeout_s=3.0, max_attempts=2) as n:
        started = time.perf_counter()
        for i in range(100):
            n.send(webhook.url("/hang"), event(message=f"event {i}"), SECRET)
        assert time.perf_counter() - started < 0.05  # enqueued, not sent: no network wait in send()
        await webhook.wait_for("/hang", 1)
        healthy = time.monotonic()
        n.send(webhook.url("/ok"), event(EventType.PROMOTED), SECRET)
        n.send(closed_port_url(), event(EventType.PROMOTED), SECRET)
        (got,) = await webhook.wait_for("/ok", 1)
        assert got.at - healthy < 1.0  # well inside the hanging URL's 3 s timeout
        assert json.loads(got.body)["type"] == "Promoted"
        assert len(webhook.on("/hang")) == 1  # still on its first event
        assert n.pending >= 99


async def test_events_to_one_url_arrive_in_order_also_when_sent_from_another_thread(webhook: Webhook) -> None:
    async with notifier() as n:
        for i in range(5):
            n.send(webhook.url("/ok"), event(message=f"event {i}"), None)
        thread = threading.Thread(target=lambda: n.send(webhook.url("/ok"), event(message="event 5"), None))
        thread.start()
        thread.join()
        got = await webhook.wait_for("/ok", 6)
    assert [json.loads(r.body)["message"] for r in got] == [f"event {i}" for i in range(6)]


async def test_overflow_drops_the_oldest_and_counts_it(webhook: Webhook) -> None:
    dropped = metric("dropped")
    async with notifier(queue_size=3) as n:
        n.send(webhook.url("/gate"), event(message="first"), None)
        await webhook.wait_for("/gate", 1)  # in flight, held at the gate: no longer in the queue
        for i in range(10):
            n.send(webhook.url("/gate"), event(message=f"queued {i}"), None)
        assert n.pending == 3
        assert n.counts["dropped"] == 7
        assert metric("dropped") == dropped + 7
        webhook.gate.set()
        got = await webhook.wait_for("/gate", 4)
        assert await n.join(timeout=5)
    assert [json.loads(r.body)["message"] for r in got] == ["first", "queued 7", "queued 8", "queued 9"]
    assert n.counts == {"dropped": 7, "delivered": 4}


async def test_close_returns_within_its_grace_and_counts_what_it_gave_up(webhook: Webhook) -> None:
    n = notifier(timeout_s=5.0, close_grace_s=0.3)
    await n.start()
    for i in range(4):
        n.send(webhook.url("/hang"), event(message=f"event {i}"), None)
    await webhook.wait_for("/hang", 1)
    started = time.monotonic()
    await n.close()
    assert time.monotonic() - started < 0.8
    assert n.counts == {"dropped": 4}  # the one in flight and the three queued
    n.send(webhook.url("/ok"), event(), None)  # after close: dropped, never raised
    assert n.counts == {"dropped": 5}
    assert webhook.on("/ok") == []


async def test_close_lets_quick_deliveries_finish(webhook: Webhook) -> None:
    n = notifier(close_grace_s=2.0)
    await n.start()
    for i in range(3):
        n.send(webhook.url("/ok"), event(message=f"event {i}"), None)
    await n.close()
    assert len(webhook.on("/ok")) == 3
    assert n.counts == {"delivered": 3}
