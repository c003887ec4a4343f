"""A re-reconcile that fails after a child event is retried by the operator (kopf retries only
its own handlers). The failure is injected with a stand-in reconcile: a real API server fails on
demand only under load."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tritium.controller import handlers
from tritium.controller.kube import ApiError


async def test_a_failed_re_reconcile_is_retried_until_it_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    async def flaky(key: tuple[str, str], **_: Any) -> None:
        calls.append(key)
        if len(calls) < 3:
            raise ApiError(0, "request to the Kubernetes API timed out")

    monkeypatch.setattr(handlers.reconciler, "reconcile_later", flaky)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    await handlers._reconcile_owner(("ns", "m"), "a Service change", logging.getLogger("test"), {})
    for _ in range(100):
        if len(calls) >= 3 and not handlers._retries:
            break
        await asyncio.sleep(0.01)
    assert calls == [("ns", "m")] * 3


async def test_retries_end(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    async def broken(key: tuple[str, str], **_: Any) -> None:
        calls.append(key)
        raise ApiError(503, "down")

    monkeypatch.setattr(handlers.reconciler, "reconcile_later", broken)
    monkeypatch.setattr(handlers, "RETRY_DELAYS", (0.01, 0.01))
    await handlers._reconcile_owner(("ns", "m"), "a Service change", logging.getLogger("test"), {})
    for _ in range(100):
        if not handlers._retries:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(calls) == 3, "the first try and one per delay, then it gives up"
