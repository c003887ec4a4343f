"""A Kubernetes API emulator for operator tests, built on kmock's KubernetesEmulator.

kmock stores objects and streams watch events but knows nothing of server-side apply, generations
or uids. The few behaviours the operator relies on are added here, close to what kube-apiserver
does: a server-side apply PATCH creates a missing object; metadata.generation starts at 1 and
grows when the spec changes (never for status); every object gets a uid, a creationTimestamp and
a growing resourceVersion, and a create with only generateName a name. Nothing else (no field
ownership, no schema, no garbage collector): what kmock cannot check is checked by the render
tests and the strict schema validation.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock
import yaml
from kmock._internal import enums

from tritium.api.resource import GROUP, KIND, PLURAL, SINGULAR, VERSION

VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


def _info(kind: str, namespaced: bool = True, subresources: frozenset[str] = frozenset()) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=VERBS,
                              subresources=set(subresources))


RESOURCES = {
    f"{GROUP}/{VERSION}/{PLURAL}": kmock.ResourceInfo(
        kind=KIND, singular=SINGULAR, namespaced=True, subresources={"status", "scale"}, verbs=VERBS,
    ),
    "apps/v1/deployments": _info("Deployment", subresources=frozenset({"status", "scale"})),
    "v1/services": _info("Service"),
    "networking.k8s.io/v1/networkpolicies": _info("NetworkPolicy"),
    "autoscaling/v2/horizontalpodautoscalers": _info("HorizontalPodAutoscaler", subresources=frozenset({"status"})),
    "policy/v1/poddisruptionbudgets": _info("PodDisruptionBudget", subresources=frozenset({"status"})),
    "v1/configmaps": _info("ConfigMap"),
    "v1/serviceaccounts": _info("ServiceAccount"),
    "v1/secrets": _info("Secret"),
    "v1/pods": _info("Pod"),
    "v1/events": _info("Event"),
    "v1/namespaces": _info("Namespace", namespaced=False),
}


class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock plus server-side-apply creation, generations, uids and resourceVersions."""

    _versions = itertools.count(1)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            await self._prepare(request)
        return await super()._handle(request)

    async def _prepare(self, request: kmock.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {}) if request.subresource is None else None
        if request.action == enums.action.CREATE and meta is not None:
            self._stamp_new(meta)
        elif request.action == enums.action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                exists = key in self.objects and not self.objects[key].deleted
                current = dict(self.objects[key].raw) if exists else None
            if current is None and "apply-patch" in request.headers.get("Content-Type", ""):
                # Server-side apply of a missing object creates it.
                assert meta is not None
                meta.setdefault("name", request.name)
                meta.setdefault("namespace", request.namespace)
                self._stamp_new(meta)
                async with self._lock:
                    self.objects[key] = json.loads(json.dumps(data))
                    await self._buses[request.resource].put({"type": "ADDED", "object": self.objects[key].raw})
                return
            if current is not None:
                cmeta = current.get("metadata") or {}
                if meta is None:  # a subresource (status): the spec and generation stay
                    data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
                    return
                meta["resourceVersion"] = str(next(self._versions))
                if "spec" in data and _merged(current.get("spec"), data["spec"]) != current.get("spec"):
                    meta["generation"] = int(cmeta.get("generation") or 1) + 1

    def _stamp_new(self, meta: dict[str, Any]) -> None:
        if not meta.get("name") and meta.get("generateName"):  # as the API server names Events
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(next(self._versions))


def _merged(base: Any, patch: Any) -> Any:
    """What a merge of ``patch`` into ``base`` gives (to tell whether the spec really changed)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merged(base.get(k), v)
        return out
    return patch


def register_resources(emulator: ClusterEmulator) -> None:
    for key, info in RESOURCES.items():
        emulator.resources[key] = info


@contextlib.asynccontextmanager
async def running_emulator(
    port: int | None = None, cls: type[ClusterEmulator] = ClusterEmulator
) -> AsyncIterator[tuple[ClusterEmulator, str]]:
    """An emulator serving on 127.0.0.1 (a free port unless given); yields it and its URL."""
    async with cls() as emulator:
        register_resources(emulator)
        kwargs = {"port": port} if port else {}
        async with kmock.Server(emulator, **kwargs) as server:
            yield emulator, str(server.url).rstrip("/")


@contextlib.contextmanager
def kubeconfig_for(url: str) -> Iterator[str]:
    """A temporary KUBECONFIG pointing at ``url``, set in the environment while in use."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                       "namespace": "default"}}],
        "current-context": "emulator",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as f:
        yaml.safe_dump(config, f)
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = f.name
    try:
        yield f.name
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
        os.unlink(f.name)
