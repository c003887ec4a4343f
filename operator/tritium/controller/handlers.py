"""kopf handlers: tiny functions that hand the event to the Reconciler.

Children are seen through kopf indexes (watch-fed caches), so a reconcile reads nothing from the
API server to know what exists, and a steady state makes no API calls at all.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from tritium.api.resource import GROUP, PLURAL, VERSION
from tritium.controller.kube import ApiError, KubeClient
from tritium.controller.reconcile import ChildRef, Reconciler, child_key
from tritium.images import Images
from tritium.render.metadata import LABEL_ISVC

FINALIZER = "serving.tritium.dev/finalizer"
CHILD_KINDS = {
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
}
OWNED = {LABEL_ISVC: kopf.PRESENT}

client = KubeClient()
reconciler = Reconciler(client)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then KUBECONFIG; the operator's own client shares them."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        client.set_credentials(info)
    return info


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    images = Images.from_env(os.environ)
    reconciler.reset(images)
    logger.info(f"default images: tritium {images.stage}, triton {images.triton}")
    # GitOps: keep kopf's bookkeeping in status, so metadata holds only what users wrote
    # (plus our finalizer) and Argo CD / Flux see no drift.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.lastHandled")
    settings.posting.level = 30  # warnings and errors become Kubernetes events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    settings.execution.max_workers = 4


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    await client.close()


def _child_index(kind: str):  # type: ignore[no-untyped-def]
    group, version, plural = CHILD_KINDS[kind]

    def index(namespace: str, labels: dict[str, str], body: kopf.Body, **_: Any) -> dict[Any, ChildRef]:
        key = child_key(dict(labels), namespace)
        return {key: ChildRef.from_object(kind, dict(body))} if key else {}

    index.__name__ = f"children_{plural}"
    return kopf.index(group, version, plural, labels=OWNED, id=f"children_{plural}")(index)


CHILD_INDEXES = {kind: _child_index(kind) for kind in CHILD_KINDS}


def children_of(namespace: str, name: str, indexes: dict[str, Any]) -> list[ChildRef]:
    key = (namespace, name)
    found: list[ChildRef] = []
    for plural_index in (f"children_{p}" for _, _, p in CHILD_KINDS.values()):
        found.extend(indexes[plural_index].get(key, []))
    return found


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_isvc(body: kopf.Body, namespace: str, name: str, logger: kopf.Logger, **kw: Any) -> None:
    await reconciler.reconcile(dict(body), children_of(namespace, name, kw), logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_isvc(namespace: str, name: str, logger: kopf.Logger, **kw: Any) -> None:
    children = children_of(namespace, name, kw)
    try:
        await reconciler.delete_children(namespace, children)
    except ApiError as exc:
        raise kopf.TemporaryError(f"deleting children: {exc}", delay=5) from exc
    reconciler.forget(namespace, name)
    logger.info(f"deleted {len(children)} child object(s)")


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_changed(
    namespace: str, labels: kopf.Labels, type: str | None, logger: kopf.Logger, **kw: Any
) -> None:
    """A revision's pods came up or went away: re-plan (e.g. let the old revision go) and update status."""
    key = child_key(dict(labels), namespace)
    if key is None or type is None:  # type None: the initial listing, already covered by resume
        return
    try:
        body = await client.get("InferenceService", *key)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        await reconciler.reconcile(body, children_of(*key, kw), logger)
    except (ApiError, kopf.TemporaryError) as exc:
        # Event handlers are not retried by kopf; the next Deployment event or resume will be.
        logger.warning(f"reconcile after a Deployment change of {key[1]} failed: {exc}")
