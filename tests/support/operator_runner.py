"""Run the real kopf operator loop in the test's event loop, against KUBECONFIG.

The same runner serves the API emulator (integration tests) and a real cluster (e2e tests): both
are reached through a kubeconfig, so the operator code path is identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import kopf

from tritium.controller.kube import KubeClient


@contextlib.asynccontextmanager
async def running_operator(namespaces: list[str] | None = None) -> AsyncIterator[None]:
    """Start `tritium operator`'s kopf loop (standalone) in its own thread and event loop.

    Its own loop, as `tritium operator` has in production and as kopf requires: on exit kopf
    cancels every task of its loop, which would take the API emulator's tasks down with it.
    """
    import tritium.controller.handlers  # noqa: F401 - registers the handlers

    stop = threading.Event()
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=not namespaces, namespaces=namespaces or (), standalone=True,
                    stop_flag=stop, ready_flag=ready,
                )
            )
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30), "the operator did not start within 30 s"
        assert not errors, f"the operator failed: {errors[0]!r}"
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive(), "the operator did not stop within 30 s"
    assert not errors, f"the operator failed: {errors[0]!r}"


def api_client() -> KubeClient:
    """A client on the same credentials the operator uses (the current KUBECONFIG)."""
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None, "KUBECONFIG does not point at a cluster"
    client = KubeClient()
    client.set_credentials(info)
    return client


async def eventually(check, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll an async ``check`` until it returns a truthy value; fail with its last error otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError as exc:
            last = exc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {last}")
        await asyncio.sleep(interval)
