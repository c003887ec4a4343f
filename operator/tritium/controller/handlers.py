"""kopf handlers: tiny functions that hand the event to the Reconciler.

Level-triggered: kopf only delivers events (no change handlers, no diff base, no finalizer), and
an event of a service, of one of its children or of an object it refers to reconciles the
service as the watch shows it then. What a reconcile would not see differently (the echo of the
operator's own status write, a Deployment's timestamps) reconciles nothing.

Children are seen through kopf indexes (watch-fed caches), so a reconcile reads nothing from the
API server to know what exists, and a steady state makes no API calls at all. Every child kind is
watched: a hand edit or a deletion re-reconciles its owner, which puts it back. Secrets and
ConfigMaps a service refers to are watched too, so one created after the service is noticed.

Index functions are coroutines: kopf runs a plain function in its thread pool, and for the
thousands of events a mass creation brings that hand-off (and the GIL contention of the threads)
cost more than the functions themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from tritium.api.checks import references
from tritium.api.resource import GROUP, PLURAL, VERSION, SpecError, parse_inference_service
from tritium.controller.kopf_storage import NoDiffBaseStorage
from tritium.controller.kube import ApiError, KubeClient
from tritium.controller.reconcile import OPTIONAL_KINDS, ChildRef, Reconciler, owner_of
from tritium.images import Images

FINALIZER = "serving.tritium.dev/finalizer"
PROMETHEUS_URL_ENV = "TRITIUM_PROMETHEUS_URL"  # the prometheus analysis provider's default URL
IDLE_WORKER_SECONDS = 0.5  # kopf's per-object workers exit this soon after their last event (see configure)
CHILD_KINDS = {
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    # kopf watches these only while their CRDs exist (it notices CRDs created or deleted later).
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "PodMonitor": ("monitoring.coreos.com", "v1", "podmonitors"),
    "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules"),
    "AlertmanagerConfig": ("monitoring.coreos.com", "v1alpha1", "alertmanagerconfigs"),
    "ScaledObject": ("keda.sh", "v1alpha1", "scaledobjects"),
    "Certificate": ("cert-manager.io", "v1", "certificates"),
}
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
    reconciler.reset(images, prometheus_url=os.environ.get(PROMETHEUS_URL_ENV) or None)
    reconciler.schedule = _schedule
    _indexes.clear()
    _references.clear()
    _seen.clear()
    _pending_retries.clear()
    logger.info(f"default images: tritium {images.stage}, triton {images.triton}")
    # kopf's finalizer is the one earlier versions put on services: kopf removes it from each, as
    # no handler needs one (service_changed).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.diffbase_storage = NoDiffBaseStorage()  # no change handlers to compare for
    settings.posting.level = 30  # warnings and errors become Kubernetes events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    settings.execution.max_workers = 4
    # kopf runs one worker per object with events, and a worker waiting for the next event still
    # holds the last one it handled: a whole decoded body (a Deployment with its managedFields is
    # tens of KB). With kopf's 5 s, a burst (200 services created or rolled out at once) kept
    # every child's last body alive, about 50 MB at the operator's peak (tracemalloc).
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS


@kopf.on.startup()
async def start_notifier(**_: Any) -> None:
    await reconciler.rollouts.start()


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    for timer in _timers.values():
        timer.cancel()
    _timers.clear()
    for retry in _pending_retries.values():
        retry.cancel()
    _pending_retries.clear()
    await reconciler.rollouts.close()
    await client.close()


# Rollout timers: when time alone changes a decision (the next analysis, a deadline, the end of
# the scale-down delay), one reconcile is due then. Only the earliest per service is kept; any
# reconcile before it sets the next one. The indexes are those the latest handler call saw
# (kopf's index objects are live views of its caches).
_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
_indexes: dict[str, Any] = {}


def _remember(kw: dict[str, Any]) -> None:
    """Keep the indexes of the running operator (a restarted one in the same process has new ones)."""
    _indexes.update({k: v for k, v in kw.items() if k.startswith("children_") or k in ("references", "services")})


def _schedule(key: tuple[str, str], delay: float) -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + delay
    timer = _timers.get(key)
    if timer is not None and not timer.cancelled() and timer.when() <= when and timer.when() > loop.time():
        return
    if timer is not None:
        timer.cancel()

    def fire() -> None:
        _timers.pop(key, None)
        if not _indexes:
            return
        task = asyncio.ensure_future(_reconcile_owner(key, "a rollout timer", logging.getLogger("tritium"),
                                                      _indexes))
        _retries.add(task)
        task.add_done_callback(_retries.discard)

    _timers[key] = loop.call_at(when, fire)


def _owned(body: kopf.Body, namespace: str, **_: Any) -> bool:
    return owner_of(dict(body), namespace) is not None


def _not_owned(body: kopf.Body, namespace: str, **_: Any) -> bool:
    return owner_of(dict(body), namespace) is None


def _child_index(kind: str):  # type: ignore[no-untyped-def]
    group, version, plural = CHILD_KINDS[kind]

    async def index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, ChildRef]:
        key = owner_of(dict(body), namespace)
        return {key: ChildRef.from_object(kind, dict(body))} if key else {}

    index.__name__ = f"children_{plural}"
    return kopf.index(group, version, plural, when=_owned, id=f"children_{plural}")(index)


CHILD_INDEXES = {kind: _child_index(kind) for kind in CHILD_KINDS}


# (namespace, name) -> (uid, generation, the references): a service's references change only with
# its spec (its generation), and most of its events are status writes.
_references: dict[tuple[str, str], tuple[str, Any, dict[Any, tuple[str, str]]]] = {}


@kopf.index(GROUP, VERSION, PLURAL, id="references")
async def references_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, tuple[str, str]]:
    """(namespace, kind, name) of every Secret/ConfigMap a service needs -> that service."""
    meta = body.get("metadata") or {}
    uid, generation = meta.get("uid", ""), meta.get("generation")
    known = _references.get((namespace, name))
    if known is not None and known[:2] == (uid, generation):
        return known[2]
    try:
        isvc = parse_inference_service({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")})
    except SpecError:
        found: dict[Any, tuple[str, str]] = {}
    else:
        found = {(namespace, ref.kind, ref.name): (namespace, name) for ref in references(isvc)}
    _references[(namespace, name)] = (uid, generation, found)
    return found


@kopf.index(GROUP, VERSION, PLURAL, id="services")
async def services_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, dict[str, Any]]:
    """(namespace, name) -> the service as last seen by the watch, without managedFields.

    A reconcile after a child's change starts from it instead of reading the service from the API
    server: the watch delivers every change of the service before kopf runs its handlers for it, a
    status this process wrote later is known to the Reconciler by resourceVersion, and a deleted
    service is gone from the index.
    """
    slim = {k: v for k, v in body.items() if k != "metadata"}
    slim["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {(namespace, name): slim}


def latest_body(key: tuple[str, str], indexes: dict[str, Any]) -> dict[str, Any] | None:
    """The service ``key`` from the services index (read-only: a reconcile never changes its body);
    None when the watch saw it deleted (or never)."""
    for found in indexes.get("services", {}).get(key, []):
        return found  # type: ignore[no-any-return]
    return None


def children_of(namespace: str, name: str, indexes: dict[str, Any]) -> list[ChildRef]:
    key = (namespace, name)
    found: list[ChildRef] = []
    for plural_index in (f"children_{p}" for _, _, p in CHILD_KINDS.values()):
        found.extend(indexes[plural_index].get(key, []))
    return found


@kopf.on.event(GROUP, VERSION, PLURAL, id="services_changed")
async def service_changed(
    namespace: str, name: str, body: kopf.Body, type: str | None, logger: kopf.Logger, **kw: Any
) -> None:
    """Any event of a service: reconcile it if the event changed what a reconcile looks at.

    Level-triggered, with no kopf change handlers: kopf keeps no diff base or progress of its own
    in the object and adds no finalizer, so a service costs no write beyond the operator's own
    (its children and its status), and every decision is taken from what the watch shows now. The
    initial listing (type None) reconciles every service, as a resume after a restart. A deleted
    service's children go at once (those the watch shows owned by that very object, not by one
    created again under its name); they carry owner references, so the garbage collector removes
    them too when the operator is down. kopf removes the finalizer an earlier version of the
    operator put on a service (settings.persistence.finalizer), as no handler needs it any more.
    """
    key = (namespace, name)
    if type == "DELETED":
        _forget(key)
        uid = (body.get("metadata") or {}).get("uid")
        gone = [c for c in children_of(namespace, name, kw) if uid and c.owner_uid == uid]
        try:
            await reconciler.delete_children(namespace, gone)
        except ApiError as exc:
            logger.warning(f"deleting the children of {name} failed, the garbage collector removes them: {exc}")
        return
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # going away: nothing to apply to it
    _remember(kw)
    if type is not None and not reconciler.wants(dict(body)):
        return  # the echo of our own status write, or a change no reconcile looks at
    await _reconcile_owner(key, "a change of the service", logger, kw, settle=0.0)


def _forget(key: tuple[str, str]) -> None:
    """A service is gone: drop what this process remembers of it."""
    timer = _timers.pop(key, None)
    if timer is not None:
        timer.cancel()
    retry = _pending_retries.pop(key, None)
    if retry is not None:
        retry.cancel()
    reconciler.forget(*key)
    _references.pop(key, None)


# A reconcile that failed is tried again after these delays, then every RETRY_DELAYS[-1] seconds
# (or the error's own delay, if longer: 60 s for a write the API server refused) until it succeeds
# or the service is gone: kopf does not retry event handlers, and no later event may come.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A change of a child comes in bursts (a Deployment's status moves several times while its pods
# come up, an apply of nine children echoes nine events): a reconcile after one waits this long,
# and the triggers meanwhile collapse into it.
SETTLE_SECONDS = 0.5
_retries: set[asyncio.Task[None]] = set()
_pending_retries: dict[tuple[str, str], asyncio.Task[None]] = {}  # at most one waiting retry per service


async def _reconcile_owner(
    key: tuple[str, str], why: str, logger: Any, indexes: dict[str, Any], attempt: int = 0,
    settle: float = SETTLE_SECONDS, deferrable: bool = False,
) -> None:
    """Reconcile a service as the watch last saw it, after a change of it, of a child or of an
    object it refers to.

    A failure (an API timeout under load) is retried in the background with a growing delay; the
    retry reconciles the service as it is then, so one waiting retry per service is enough.
    """
    async def fetch() -> dict[str, Any] | None:
        return latest_body(key, indexes)

    try:
        await reconciler.reconcile_later(
            key,
            fetch=fetch,
            children=lambda: children_of(*key, indexes),
            logger=logger,
            settle=settle,
            deferrable=deferrable,
        )
    except (ApiError, kopf.TemporaryError) as exc:
        if key in _pending_retries:
            return  # a retry is already waiting; it reconciles what this one would
        delay = max(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)], float(getattr(exc, "delay", 0) or 0))
        logger.warning(f"reconcile of {key[1]} after {why} failed (try {attempt + 1}), retrying in {delay:.0f} s: "
                       f"{exc}")

        async def retry() -> None:
            await asyncio.sleep(delay)
            _pending_retries.pop(key, None)
            await _reconcile_owner(key, why, logger, indexes, attempt + 1, settle=0.0, deferrable=deferrable)

        task = asyncio.create_task(retry())
        _pending_retries[key] = task
        _retries.add(task)
        task.add_done_callback(_retries.discard)


# (namespace, kind, name) of each child -> what of it a reconcile looks at, as last seen: its content
# (ChildRef.live_json) and, for a Deployment, what its status says of the revision. Most child
# events change nothing of that (the status of a PodDisruptionBudget or an HPA, a Deployment's
# timestamps): they are no reason to reconcile.
_seen: dict[tuple[str, str, str], tuple[str, Any]] = {}


def _moved(namespace: str, kind: str, name: str, key: tuple[str, str], kw: dict[str, Any]) -> bool:
    """Whether this event changed what a reconcile of the child's owner would see of the child."""
    plural = CHILD_KINDS[kind][2]
    ref = next((c for c in kw.get(f"children_{plural}", {}).get(key, []) if c.name == name), None)
    if ref is None:
        return True  # not in the index (yet): nothing to compare with
    now = (ref.live_json, ref.deployment)
    before = _seen.get((namespace, kind, name))
    _seen[(namespace, kind, name)] = now
    return before != now


def _child_event_handler(kind: str):  # type: ignore[no-untyped-def]
    group, version, plural = CHILD_KINDS[kind]

    async def child_changed(
        namespace: str, name: str, body: kopf.Body, type: str | None, logger: kopf.Logger, **kw: Any
    ) -> None:
        """A child changed or went away (its pods came up, or a hand edit): re-plan and put it right."""
        key = owner_of(dict(body), namespace)
        if key is None:
            return
        if type is None:  # the initial listing, already covered by resume
            _moved(namespace, kind, name, key, kw)
            return
        _remember(kw)
        if type == "DELETED":
            _seen.pop((namespace, kind, name), None)
            reconciler.forget_child(namespace, kind, name)
        elif not _moved(namespace, kind, name, key, kw):
            return
        elif reconciler.wrote(namespace, kind, name, str((body.get("metadata") or {}).get("resourceVersion", ""))):
            return  # the echo of our own apply (_moved has noted its content for the next event)
        await _reconcile_owner(key, f"a {kind} change", logger, kw, deferrable=True)

    child_changed.__name__ = f"{plural}_changed"
    return kopf.on.event(group, version, plural, when=_owned, id=f"{plural}_changed")(child_changed)


CHILD_HANDLERS = {kind: _child_event_handler(kind) for kind in CHILD_KINDS}


def _referenced_handler(kind: str, group: str, version: str, plural: str):  # type: ignore[no-untyped-def]
    async def referenced_changed(
        namespace: str, name: str, type: str | None, logger: kopf.Logger, references: Any, **kw: Any
    ) -> None:
        """A Secret or ConfigMap that services refer to appeared, changed or went away."""
        if type is None:
            return
        for key in references.get((namespace, kind, name), []):
            await _reconcile_owner(key, f"a change of {kind} {name}", logger, kw, deferrable=True)

    referenced_changed.__name__ = f"referenced_{plural}_changed"
    return kopf.on.event(group, version, plural, when=_not_owned, id=f"referenced_{plural}")(referenced_changed)


REFERENCE_HANDLERS = [
    _referenced_handler("Secret", "", "v1", "secrets"),
    _referenced_handler("ConfigMap", "", "v1", "configmaps"),
]


def _optional_crd(body: kopf.Body, **_: Any) -> bool:
    return f"{(body.get('spec') or {}).get('names', {}).get('plural')}.{(body.get('spec') or {}).get('group')}" in (
        OPTIONAL_KINDS.values()
    )


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions", when=_optional_crd, id="optional_crds")
async def optional_crd_changed(body: kopf.Body, type: str | None, logger: kopf.Logger, **kw: Any) -> None:
    """An optional kind's CRD was installed: reconcile the services that skipped a child (or waited) for want of it."""
    if type is None or type == "DELETED":
        return  # the initial listing is covered by resume; a deletion is noticed on the next apply
    established = any(c.get("type") == "Established" and c.get("status") == "True"
                      for c in (body.get("status") or {}).get("conditions") or [])
    if not established:
        return
    kind = str((body.get("spec") or {}).get("names", {}).get("kind", ""))
    for key in reconciler.kind_installed(kind):
        await _reconcile_owner(key, f"the {kind} CRD was installed", logger, kw, deferrable=True)
