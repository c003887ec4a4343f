"""Nothing changes, nothing is written; an operator restarted in the middle of a change finishes it."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prometheus_client import REGISTRY

from tests.support.operator_runner import eventually, running_operator
from tests.support.operator_scenarios import (
    CHILD_KINDS,
    READY_TIMEOUT,
    condition,
    create,
    get_isvc,
    make_isvc,
    operator_writes,
    patch_spec,
    ready,
    revisions,
    settled,
    versions,
    wait_status,
)
from tritium.controller.kube import KubeClient

# The figure is 60 s; TRITIUM_E2E_STEADY_SECONDS shortens it for a quick local run.
STEADY_SECONDS = float(os.environ.get("TRITIUM_E2E_STEADY_SECONDS", "60"))


async def test_steady_state_writes_nothing(api: KubeClient, namespace: str, operator: None) -> None:
    for name in ("steady-a", "steady-b"):
        await create(api, make_isvc(name, namespace))
    for name in ("steady-a", "steady-b"):
        await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
    for name in ("steady-a", "steady-b"):
        await settled(api, namespace, name)
    before = {n: await versions(api, namespace, n) for n in ("steady-a", "steady-b")}
    writes = operator_writes()
    assert writes > 0, "the metric counts the operator's writes"
    await asyncio.sleep(STEADY_SECONDS)
    after = {n: await versions(api, namespace, n) for n in ("steady-a", "steady-b")}
    changed = sorted(k for n in before for k in before[n] if after[n].get(k) != before[n][k])
    assert not changed, f"changed while nothing was asked of the operator: {changed}"
    assert operator_writes() == writes, "the operator wrote while nothing changed"


async def test_restart_in_the_middle_of_a_change(api: KubeClient, namespace: str) -> None:
    """Stopped while a new revision cannot start, restarted: it resumes where it was, writing nothing;
    the next change completes as if it had never stopped."""
    name = "restarted"
    async with running_operator(namespaces=[namespace]):
        await create(api, make_isvc(name, namespace))
        first_obj = await wait_status(api, namespace, name, ready, timeout=READY_TIMEOUT)
        first = first_obj["status"]["stableRevision"]
        # A revision whose image cannot be pulled: it starts beside the stable one and never gets ready.
        await patch_spec(api, namespace, name, {"runtime": {"image": "registry.invalid/triton:never"}})
        mid = await wait_status(api, namespace, name, lambda o: o["status"].get("canaryRevision"), timeout=30)
        assert len(await revisions(api, namespace, name)) == 2
        await settled(api, namespace, name)
    stopped: dict[str, Any] = await versions(api, namespace, name)

    async with running_operator(namespaces=[namespace]):
        writes = operator_writes()
        await asyncio.sleep(5)
        now = await versions(api, namespace, name)
        assert now == stopped, f"rewritten after the restart: {sorted(k for k in now if now[k] != stopped.get(k))}"
        assert operator_writes() == writes
        obj = await get_isvc(api, namespace, name)
        assert obj is not None
        assert obj["status"]["stableRevision"] == first
        assert obj["status"]["canaryRevision"] == mid["status"]["canaryRevision"]
        assert condition(obj, "Ready")["reason"] == "StableServing"

        # A fixed image: the new revision becomes ready and replaces the stable one.
        await patch_spec(api, namespace, name, {"runtime": {"image": "nvcr.io/nvidia/tritonserver:24.10-py3"}})

        async def replaced() -> bool:
            revs = await revisions(api, namespace, name)
            current = await get_isvc(api, namespace, name)
            return (len(revs) == 1 and revs[0] not in (first, mid["status"]["canaryRevision"])
                    and current is not None and ready(current))

        await eventually(replaced, timeout=READY_TIMEOUT)


def writes_by_kind() -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "tritium_operator_api_writes":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    key = f"{s.labels['verb']} {s.labels['kind']}"
                    out[key] = out.get(key, 0.0) + s.value
    return out


async def test_a_new_service_writes_each_child_once(api: KubeClient, namespace: str, operator: None) -> None:
    await asyncio.sleep(1)
    before = writes_by_kind()
    await create(api, make_isvc("once", namespace))
    await wait_status(api, namespace, "once", ready, timeout=READY_TIMEOUT)
    await asyncio.sleep(3)
    after = writes_by_kind()
    made = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    # Two ConfigMaps (the revision's, the traffic split) and one Service (a revision serving alone
    # needs no Service of its own): each object written once.
    per_kind = {"ConfigMap": 2, "Service": 1}
    for kind in CHILD_KINDS:
        want = per_kind.get(kind, 1)
        assert made.get(f"patch {kind}") == want, f"{kind} written {made.get(f'patch {kind}', 0)} times: {made}"
