"""The operator owns its children: each hand edit is put back within seconds, and never passes as Ready."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.operator_runner import eventually
from tests.support.operator_scenarios import (
    READY_TIMEOUT,
    children,
    create,
    make_isvc,
    ready,
    wait_children,
    wait_event,
    wait_status,
)
from tritium.controller.kube import KubeClient
from tritium.render.metadata import LABEL_REVISION

PUT_BACK_WITHIN = 15  # seconds; usually well under one on an idle machine


async def merge_patch(api: KubeClient, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    from tritium.controller.kube import object_path

    await api._request("PATCH", object_path(kind, namespace, name), body=patch,
                       content_type="application/merge-patch+json")


async def strategic_patch(api: KubeClient, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """As `kubectl patch` / `kubectl set image` do (strategic merge, list items merged by name)."""
    from tritium.controller.kube import object_path

    await api._request("PATCH", object_path(kind, namespace, name), body=patch,
                       content_type="application/strategic-merge-patch+json")


@contextlib.asynccontextmanager
async def watching_status(api: KubeClient, namespace: str, name: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every status the service had while the block ran: a watch (`kubectl get -w`) sees each
    version the API server stored, however briefly it lasted."""
    seen: list[dict[str, Any]] = []
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "get", "inferenceservice", name, "-n", namespace, "--watch", "--output-watch-events", "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1)  # the watch is established
    try:
        yield seen
        await asyncio.sleep(1)  # the last events arrive
    finally:
        proc.terminate()
        out, _ = await proc.communicate()
        decoder, text, pos = json.JSONDecoder(), out.decode(), 0
        while pos < len(text.rstrip()):
            event, pos = decoder.raw_decode(text, pos)
            pos += len(text[pos:]) - len(text[pos:].lstrip())
            status = (event.get("object") or {}).get("status") or {}
            if not seen or seen[-1] != status:
                seen.append(status)


@pytest.fixture
async def serving(api: KubeClient, namespace: str, operator: None) -> dict[str, Any]:
    """A Ready service with one stable revision; returns its children by kind."""
    created = await create(api, make_isvc("owned", namespace))
    await wait_children(api, namespace, "owned", created["metadata"]["uid"])
    await wait_status(api, namespace, "owned", ready, timeout=READY_TIMEOUT)
    return {k: (await children(api, namespace, "owned", k))[0] for k in ("Deployment", "ConfigMap", "Service")}


def _ready_reason(status: dict[str, Any]) -> str:
    return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Ready"), "")


def _triton_image(deployment: dict[str, Any]) -> str:
    return next(c["image"] for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton")


async def _put_back(check: Callable[[], Awaitable[bool]]) -> None:
    await eventually(check, timeout=PUT_BACK_WITHIN)


async def test_image_changed_by_hand_is_put_back(api: KubeClient, namespace: str, serving: dict[str, Any]) -> None:
    dep = serving["Deployment"]
    name, image = dep["metadata"]["name"], _triton_image(dep)
    async with watching_status(api, namespace, "owned") as statuses:
        await strategic_patch(api, "Deployment", namespace, name, {"spec": {"template": {"spec": {"containers": [
            {"name": "triton", "image": "evil.example/triton:hacked"}]}}}})

        async def restored() -> bool:
            live = await api.get("Deployment", namespace, name)
            return live is not None and _triton_image(live) == image

        await _put_back(restored)
        obj = await wait_status(api, namespace, "owned", ready, timeout=READY_TIMEOUT)
    assert obj["status"]["stableRevision"] == dep["metadata"]["labels"][LABEL_REVISION]
    assert all(s.get("stableRevision") for s in statuses), "the stable revision was never forgotten"
    # While the hacked template was being undone, the service did not claim to be Ready.
    reasons = [_ready_reason(s) for s in statuses]
    assert "DriftCorrected" in reasons, reasons
    first = reasons.index("DriftCorrected")
    back = reasons.index("Serving", first)
    assert all(r in ("DriftCorrected", "PodsReplaced") for r in reasons[first:back]), reasons
    event = await wait_event(api, namespace, "owned", "DriftCorrected")
    assert "containers[triton].image" in event["message"]


async def test_deleted_service_is_recreated(api: KubeClient, namespace: str, serving: dict[str, Any]) -> None:
    old = serving["Service"]
    await api.delete("Service", namespace, old["metadata"]["name"])

    async def recreated() -> bool:
        live = await api.get("Service", namespace, old["metadata"]["name"])
        return live is not None and live["metadata"]["uid"] != old["metadata"]["uid"]

    await _put_back(recreated)


async def test_edited_config_is_put_back(api: KubeClient, namespace: str, serving: dict[str, Any]) -> None:
    cm = serving["ConfigMap"]
    original = cm["data"]["config.pbtxt"]
    await merge_patch(api, "ConfigMap", namespace, cm["metadata"]["name"],
                      {"data": {"config.pbtxt": original.replace("max_batch_size: 8", "max_batch_size: 1024")}})

    async def restored() -> bool:
        live = await api.get("ConfigMap", namespace, cm["metadata"]["name"])
        return live is not None and live["data"]["config.pbtxt"] == original

    await _put_back(restored)


async def test_changed_and_removed_labels_are_put_back(
    api: KubeClient, namespace: str, serving: dict[str, Any]
) -> None:
    svc, dep = serving["Service"], serving["Deployment"]
    await merge_patch(api, "Service", namespace, svc["metadata"]["name"], {"metadata": {"labels": {
        "app.kubernetes.io/part-of": "something-else", "serving.tritium.dev/inferenceservice": None}}})
    async with watching_status(api, namespace, "owned") as statuses:
        await merge_patch(api, "Deployment", namespace, dep["metadata"]["name"],
                          {"metadata": {"labels": {LABEL_REVISION: "0000000000"}}})

        async def restored() -> bool:
            live_svc = await api.get("Service", namespace, svc["metadata"]["name"])
            live_dep = await api.get("Deployment", namespace, dep["metadata"]["name"])
            return (live_svc is not None and live_dep is not None
                    and live_svc["metadata"]["labels"] == svc["metadata"]["labels"]
                    and live_dep["metadata"]["labels"] == dep["metadata"]["labels"])

        await _put_back(restored)
        await asyncio.sleep(1)
    # A wrong revision label never made the service forget its stable revision or its ready pods.
    assert statuses, "the status was read"
    assert all(s.get("stableRevision") == dep["metadata"]["labels"][LABEL_REVISION] for s in statuses), statuses
    assert all(s.get("readyReplicas") == 1 for s in statuses), [s.get("readyReplicas") for s in statuses]
    assert len(await children(api, namespace, "owned", "Deployment")) == 1, "nothing was pruned or duplicated"
