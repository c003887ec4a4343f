"""A reconcile that fails is retried by the operator (kopf retries none of its event handlers).
The failure is injected with a stand-in reconcile: a real API server fails on demand only under
load."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from tritium.controller import handlers
from tritium.controller.kube import ApiError


async def _settled() -> None:
    for _ in range(200):
        if not handlers._retries:
            return
        await asyncio.sleep(0.01)


async def test_a_failed_reconcile_is_retried_until_it_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    async def flaky(key: tuple[str, str], **_: Any) -> None:
        calls.append(key)
        if len(calls) < 8:
            raise ApiError(0, "request to the Kubernetes API timed out")

    monkeypatch.setattr(handlers.reconciler, "reconcile_later", flaky)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.001, 0.002, 0.005))
    await handlers._reconcile_owner(("ns", "m"), "a Service change", logging.getLogger("test"), {})
    await _settled()
    assert calls == [("ns", "m")] * 8, "retried past the last delay, at that delay, until it succeeded"
    assert not handlers._pending_retries


async def test_one_waiting_retry_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    async def broken_twice(key: tuple[str, str], **_: Any) -> None:
        calls.append(key)
        if len(calls) <= 3:
            raise ApiError(503, "down")

    monkeypatch.setattr(handlers.reconciler, "reconcile_later", broken_twice)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.05,))
    for _ in range(3):  # three triggers fail while the first retry waits
        await handlers._reconcile_owner(("ns", "m"), "a Service change", logging.getLogger("test"), {})
    assert len(handlers._pending_retries) == 1
    await _settled()
    assert len(calls) == 4, "three failed triggers, then one retry that succeeded"


async def test_the_errors_own_delay_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(key: tuple[str, str], **_: Any) -> None:
        raise kopf.TemporaryError("Kubernetes API refused a write: 422", delay=60)

    monkeypatch.setattr(handlers.reconciler, "reconcile_later", refused)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.01,))
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(3600)

    monkeypatch.setattr(handlers.asyncio, "sleep", recording_sleep)
    await handlers._reconcile_owner(("ns", "m"), "a Service change", logging.getLogger("test"), {})
    await real_sleep(0.01)
    assert slept == [60.0]
    handlers._forget(("ns", "m"))  # the service is deleted: its retry goes with it
    await real_sleep(0.01)
    assert not handlers._pending_retries and not handlers._retries
