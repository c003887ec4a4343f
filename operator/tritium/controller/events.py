"""Kubernetes Events about an InferenceService: what `kubectl describe` and `kubectl get events` show.

Posted by the operator itself (core v1 Events, which `kubectl get events` lists), not left to
kopf's log-to-event bridge, so each reason is posted exactly when its transition happens. An
Event is a courtesy: a failure to post one is logged and never fails or delays the reconcile
beyond one request. While other services wait for their reconciles (hundreds created at once),
an Event is not even that: it is posted in the background once that work is through (at most
``defer_seconds`` later), so the writes people wait for go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from tritium.api.resource import API_VERSION, KIND
from tritium.controller.kube import ApiError, KubeClient

COMPONENT = "tritium-operator"
_REMEMBERED = 4096  # (uid, reason, message) already posted by this process; bounded

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(involved: dict[str, Any], type_: str, reason: str, message: str, now: str) -> dict[str, Any]:
    """A core v1 Event about ``involved`` (an InferenceService body)."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'inferenceservice')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": API_VERSION, "kind": KIND, "name": meta.get("name", ""), "namespace": namespace,
            "uid": meta.get("uid", ""), "resourceVersion": str(meta.get("resourceVersion", "")),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME") or socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._posted: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        # Set by the Reconciler: whether other reconciles wait, and a wait until none does.
        self.busy: Callable[[], bool] = lambda: False
        self.idle: Callable[[], Awaitable[Any]] = asyncio.sleep
        self.defer_seconds = 5.0
        self._later: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        self._posted.clear()
        for task in self._later:
            task.cancel()
        self._later.clear()

    async def post(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post once per (object, reason, message) in this process; never raise."""
        uid = str((involved.get("metadata") or {}).get("uid", ""))
        key = (uid, reason, message)
        if key in self._posted:
            return
        self._posted[key] = None
        while len(self._posted) > _REMEMBERED:
            self._posted.popitem(last=False)
        now = _now()
        if self.busy():
            task = asyncio.create_task(self._post_when_idle(involved, type_, reason, message, now))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return
        await self._create(involved, type_, reason, message, now)

    async def _post_when_idle(self, involved: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), self.defer_seconds)
        await self._create(involved, type_, reason, message, now)

    async def _create(self, involved: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        try:
            await self.client.create(event_body(involved, type_, reason, message, now))
        except ApiError as exc:
            log.warning("could not post the %s event: %s", reason, exc)
