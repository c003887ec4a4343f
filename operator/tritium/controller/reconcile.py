"""One reconcile of one InferenceService: parse, check, render, apply what changed, prune, status.

Everything here is driven by data the caller hands in (the object body and the children seen by
the watch caches), so it is the same code whether kopf calls it for a spec change, a resume
after restart, or a change of an owned Deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from tritium.api.checks import check_spec, references
from tritium.api.resource import GROUP, KIND, InferenceService, SpecError, parse_inference_service
from tritium.controller import metrics
from tritium.controller.drift import differences
from tritium.controller.events import EventRecorder
from tritium.controller.kube import ApiError, KubeClient
from tritium.controller.rollouts import RolloutDriver, progressing_condition, routing_of
from tritium.images import DEFAULT_IMAGES, Images
from tritium.render import render_children
from tritium.render.deployment import replicas_of
from tritium.render.metadata import (
    ANNOTATION_APPLIED_HASH,
    LABEL_REVISION,
    revision_name,
    revision_of,
    selector_labels,
)
from tritium.render.service import url_of
from tritium.rollout.commands import commands_from
from tritium.rollout.machine import Observations, analysis_window, decide
from tritium.rollout.revisions import DeploymentObservation, RevisionPlan, serving_status, target_replicas
from tritium.rollout.state import Policy, RolloutState

# status.kopf: the bookkeeping of earlier versions (kopf's handler progress), never compared nor
# overwritten here.
STATUS_BOOKKEEPING = "kopf"
ROLLOUT_STATUS_KEYS = ("stableRevision", "canaryRevision", "canaryWeight", "analysis", "rollout")
# The longest a reconcile after a child's change waits for those after services' own changes
# (Reconciler.reconcile_later): a hand edit of a child is put back this much later at worst, and
# only while services are being created or edited.
DEFER_SECONDS = 5.0
# How many reconciles run at once. Each makes its API requests one after another and the client
# keeps kube.CONNECTIONS (8) connections, so a few dozen keep them all busy; beyond that more
# reconciles only hold their rendered children and answers in memory together (peak RSS) and
# finish all at the end instead of one after another. Measured in docs/benchmarks.md.
RECONCILE_SLOTS = 32


# Per-revision children are named NAME-REVISION (render.metadata.revision_name), revision 10 hex.
_REVISION_SUFFIX = re.compile(r"-([0-9a-f]{10})$")


def revision_from_name(name: str) -> str:
    """The revision a per-revision child belongs to, read from its name (labels can be edited)."""
    match = _REVISION_SUFFIX.search(name)
    return match.group(1) if match else ""


def owner_of(obj: dict[str, Any], namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the InferenceService that controls ``obj``, from its owner references.

    Owner references, not labels, say what is ours: a label edited or removed by hand must not
    hide a child from the operator that has to put the label back.
    """
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(
            f"{GROUP}/"
        ):
            return (namespace, ref.get("name", ""))
    return None


@dataclass(frozen=True)
class ChildRef:
    """A child as the watch cache saw it: enough to decide whether to write, correct or prune it."""

    kind: str
    name: str
    revision: str
    applied_hash: str
    deployment: DeploymentObservation | None = None
    resource_version: str = ""
    # The live object without status, managedFields and resourceVersion, as compact JSON: compared
    # field by field with the desired one, and equal from one event to the next when only the
    # status moved. A string costs a fraction of the nested dicts it holds, and the watch caches
    # hold every child of every service.
    live_json: str = field(default="{}", compare=False, hash=False, repr=False)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.live_json)

    @property
    def owner_uid(self) -> str:
        """The uid of the InferenceService that controls this child ("" if none)."""
        for ref in self.body["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == KIND:
                return str(ref.get("uid", ""))
        return ""

    @staticmethod
    def from_object(kind: str, obj: dict[str, Any]) -> ChildRef:
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        revision = revision_from_name(name) if kind in PER_REVISION_KINDS else ""
        slim = {k: v for k, v in obj.items() if k != "status"}
        slim["metadata"] = {k: v for k, v in meta.items() if k not in ("managedFields", "resourceVersion")}
        deployment = None
        if kind == "Deployment":
            deployment = dataclasses.replace(DeploymentObservation.from_object(obj, LABEL_REVISION), revision=revision)
        return ChildRef(
            kind=kind,
            name=name,
            revision=revision or (meta.get("labels") or {}).get(LABEL_REVISION, ""),
            applied_hash=(meta.get("annotations") or {}).get(ANNOTATION_APPLIED_HASH, ""),
            deployment=deployment,
            resource_version=str(meta.get("resourceVersion", "")),
            live_json=json.dumps(slim, separators=(",", ":")),
        )


PER_REVISION_KINDS = frozenset(
    {"Deployment", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "ScaledObject"}
)
# Per-revision kinds rendered for every revision that should have one (render.service renders the
# own Services of all revisions a router addresses): one not rendered goes, even of a kept revision.
RENDERED_FOR_ALL_REVISIONS = frozenset({"Service"})

# Kinds whose CRD a cluster may lack (Gateway API's, the Prometheus Operator's, KEDA's,
# cert-manager's) -> that CRD's name. A child of such a kind is skipped while the API server does
# not serve it (an apply answered 404, confirmed by discovery): the service still serves, and
# status says MonitoringReady=False, CRDMissing. Once the CRD is established,
# handlers.optional_crd_changed reconciles the services that wait.
OPTIONAL_KINDS = {"HTTPRoute": "httproutes.gateway.networking.k8s.io",
                  "PodMonitor": "podmonitors.monitoring.coreos.com",
                  "PrometheusRule": "prometheusrules.monitoring.coreos.com",
                  "AlertmanagerConfig": "alertmanagerconfigs.monitoring.coreos.com",
                  "ScaledObject": "scaledobjects.keda.sh",
                  "Certificate": "certificates.cert-manager.io"}
# The optional kinds MonitoringReady speaks of (the Prometheus Operator's); a missing Gateway API or
# KEDA CRD is said by a Warning event instead.
MONITORING_KINDS = ("PodMonitor", "PrometheusRule", "AlertmanagerConfig")


@dataclass(frozen=True)
class Applied:
    """What this operator process last wrote to one child: its content hash and resourceVersion."""

    digest: str
    resource_version: str


def _older(seen: str, written: str) -> bool:
    """Whether the cache still holds a version from before our write (resourceVersions are etcd
    revisions, increasing; when either does not parse, nothing is assumed)."""
    try:
        return int(seen) < int(written)
    except ValueError:
        return False


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector(isvc: InferenceService) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(isvc).items())


def _own_status(body: dict[str, Any]) -> dict[str, Any]:
    """The service's status as this operator writes it (no bookkeeping, no nulls)."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != STATUS_BOOKKEEPING and v is not None}


def trigger_of(meta: dict[str, Any]) -> tuple[Any, ...]:
    """What of a service's metadata a reconcile depends on besides its status: which object (uid),
    which spec (generation), and the labels and annotations (a person's rollout commands). Any
    other change of the object (managedFields, a finalizer, the resourceVersion) changes no
    decision."""
    return (meta.get("uid"), meta.get("generation"), json.dumps(meta.get("labels") or {}, sort_keys=True),
            json.dumps(meta.get("annotations") or {}, sort_keys=True))


def _parse(body: dict[str, Any]) -> InferenceService:
    """Parse the user's part of the object (status is ours and never blocks parsing)."""
    return parse_inference_service({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")})


class Reconciler:
    """Serialises reconciles per InferenceService and skips those overtaken by a newer spec."""

    def __init__(self, client: KubeClient, images: Images = DEFAULT_IMAGES) -> None:
        self.client = client
        self.images = images
        self.events = EventRecorder(client)
        self.events.busy = lambda: self._urgent > 1  # others wait besides the reconcile posting
        self.events.idle = lambda: self._no_urgent.wait()
        self.events.defer_seconds = DEFER_SECONDS
        self.rollouts = RolloutDriver(client, self.events)
        # Called with (key, seconds) when time alone will change a rollout's decision (a deadline,
        # the next analysis); the handlers turn it into a reconcile of the service as last seen.
        self.schedule: Callable[[tuple[str, str], float], None] | None = None
        self._status: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}  # last written: (rv, status)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._generations: dict[tuple[str, str], int] = {}
        self._queued: set[tuple[str, str]] = set()
        self._deferred: set[tuple[str, str]] = set()  # deferrable reconciles waiting (see reconcile_later)
        self._began: dict[tuple[str, str], float] = {}  # when the last reconcile of each service read the caches
        self._urgent = 0  # reconciles after a change of a service itself, pending
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()
        self._slots = asyncio.Semaphore(RECONCILE_SLOTS)  # taken under the per-service lock: see reconcile_later
        self._applied: dict[tuple[str, str, str], Applied] = {}  # (namespace, kind, name)
        self._missing_kinds: set[str] = set()  # optional kinds the API server was found not to serve
        self._waiting: dict[str, set[tuple[str, str]]] = {}  # missing kind -> services that skipped it
        # What the last reconcile of each service started from (trigger_of its metadata) and the
        # status it left: an event of the service that changes neither is no reason to reconcile.
        self._settled: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        # The latest valid spec of each service, parsed and checked, under trigger_of its metadata:
        # most reconciles follow a child's change and would parse the same spec again.
        self._parsed: dict[tuple[str, str], tuple[tuple[Any, ...], InferenceService]] = {}

    def reset(self, images: Images = DEFAULT_IMAGES, prometheus_url: str | None = None) -> None:
        """Forget per-object state (locks are bound to the event loop of one operator run)."""
        self.images = images
        self.rollouts = RolloutDriver(self.client, self.events, prometheus_url)
        self._status.clear()
        self._locks.clear()
        self._generations.clear()
        self._queued.clear()
        self._deferred.clear()
        self._began.clear()
        self._urgent = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()
        self._slots = asyncio.Semaphore(RECONCILE_SLOTS)
        self._applied.clear()
        self._missing_kinds.clear()
        self._waiting.clear()
        self._settled.clear()
        self._parsed.clear()
        self.events.reset()

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self._generations.pop((namespace, name), None)
        self._status.pop((namespace, name), None)
        self._settled.pop((namespace, name), None)
        self._parsed.pop((namespace, name), None)
        self._began.pop((namespace, name), None)

    def wants(self, body: dict[str, Any]) -> bool:
        """Whether an event of the service itself calls for a reconcile.

        The operator is level-triggered: every event of a service comes here, and most are the
        echo of its own status write. One that changes what the last reconcile started from (the
        spec, labels, annotations) or a status other than the one it left (a status someone else
        wrote or removed) does; an event older than this process's last status write does not.
        """
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        settled = self._settled.get(key)
        if settled is None or settled[0] != trigger_of(meta):
            return True
        written = self._status.get(key)
        if written is not None and (written[0] == str(meta.get("resourceVersion", ""))
                                    or _older(str(meta.get("resourceVersion", "")), written[0])):
            return False  # our own write, or an event from before it
        return _own_status(body) != settled[1]

    def wrote(self, namespace: str, kind: str, name: str, resource_version: str) -> bool:
        """Whether a child at this resourceVersion is what this process's last apply of it left.

        Its event is then the echo of that write: the reconcile that made it planned with the
        content it wrote (and took a new Deployment for not ready), so the echo is no reason to
        reconcile again. A change after it, by anyone, has another resourceVersion.
        """
        mine = self._applied.get((namespace, kind, name))
        return mine is not None and bool(resource_version) and mine.resource_version == resource_version

    def forget_child(self, namespace: str, kind: str, name: str) -> None:
        """A child was deleted: whatever we wrote to it is gone, so the next reconcile writes it anew."""
        self._applied.pop((namespace, kind, name), None)

    def kind_installed(self, kind: str) -> list[tuple[str, str]]:
        """The CRD of ``kind`` is established: the services that skipped a child of that kind."""
        self._missing_kinds.discard(kind)
        return sorted(self._waiting.pop(kind, set()))

    async def reconcile_later(
        self,
        key: tuple[str, str],
        fetch: Callable[[], Awaitable[dict[str, Any] | None]],
        children: Callable[[], list[ChildRef]],
        logger: logging.Logger | kopf.Logger,
        settle: float = 0.0,
        deferrable: bool = False,
    ) -> None:
        """Reconcile ``key`` as ``fetch`` finds it then, ``settle`` seconds from now and after any
        reconcile of it that is running then.

        Triggers that arrive while one is already waiting collapse into it: that one reads the
        object and the caches after them. A ``deferrable`` reconcile (after a change of a child or
        of a referenced object) also waits, at most DEFER_SECONDS, while reconciles after changes
        of services themselves are pending: those are what people wait for (a new or edited
        service), and when hundreds arrive at once the children's echoes (pods coming up) would
        otherwise take turns with them on the API server. The wait collapses those echoes too, and
        one that a later reconcile of the same service already covered is skipped.

        At most RECONCILE_SLOTS run at once. A slot is taken after the service's own lock and
        before the trigger stops waiting, so triggers that arrive while it waits for a slot still
        collapse into it.
        """
        queued_at = time.monotonic()
        if key in self._queued or (deferrable and key in self._deferred):
            return
        waiting = self._deferred if deferrable else self._queued
        waiting.add(key)
        if not deferrable:
            self._urgent += 1
            self._no_urgent.clear()
        try:
            if settle > 0:
                await asyncio.sleep(settle)
            if deferrable and self._urgent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._no_urgent.wait(), DEFER_SECONDS)
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock, self._slots:
                waiting.discard(key)
                if deferrable and self._began.get(key, float("-inf")) > queued_at:
                    return  # a reconcile that began after this trigger saw what it changed
                body = await fetch()
                if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                    return
                self._began[key] = time.monotonic()
                await self._reconcile_locked(body, children(), logger)
        finally:
            waiting.discard(key)
            if not deferrable:
                self._urgent -= 1
                if not self._urgent:
                    self._no_urgent.set()

    async def _reconcile_locked(
        self, body: dict[str, Any], children: list[ChildRef], logger: logging.Logger | kopf.Logger
    ) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        started = time.perf_counter()
        generation = meta.get("generation")
        if isinstance(generation, int):
            if generation < self._generations.get(key, 0):
                return  # a newer spec was already reconciled; this body is stale
            self._generations[key] = generation
        try:
            result, status = await self._reconcile(body, children, logger)
        except ApiError as exc:
            self._settled.pop(key, None)  # not through: the next event of the service reconciles again
            metrics.RECONCILES.labels(result="error").inc()
            metrics.ERRORS.labels(kind=f"api_{exc.status}").inc()
            if exc.retriable:
                raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=5) from exc
            raise kopf.TemporaryError(f"Kubernetes API refused a write: {exc}", delay=60) from exc
        except BaseException:
            self._settled.pop(key, None)
            raise
        finally:
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(result=result).inc()
        self._settled[key] = (trigger_of(meta), {k: v for k, v in status.items() if v is not None})

    def _checked(self, key: tuple[str, str], meta: dict[str, Any], body: dict[str, Any]) -> InferenceService:
        """The service's spec parsed and checked (check_spec), from the cache while its spec,
        labels and annotations are those last parsed."""
        trigger = trigger_of(meta)
        known = self._parsed.get(key)
        if known is not None and known[0] == trigger:
            return known[1]
        isvc = _parse(body)
        check_spec(isvc)
        self._parsed[key] = (trigger, isvc)
        return isvc

    def _previous_status(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """The status this reconcile starts from: the body's, unless this process wrote a newer one
        (a handler's body can predate our last status write; a rollout must not repeat a step)."""
        previous = _own_status(body)
        written = self._status.get(key)
        if written is not None and _older(str((body.get("metadata") or {}).get("resourceVersion", "")), written[0]):
            return dict(written[1])
        return previous

    async def _reconcile(
        self, body: dict[str, Any], children: list[ChildRef], logger: Any
    ) -> tuple[str, dict[str, Any]]:
        """One reconcile: its result (for the metric) and the status it left."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        generation = meta.get("generation")
        previous = self._previous_status((namespace, name), body)
        observed = {c.revision: c.deployment for c in children if c.deployment is not None}
        try:
            isvc = self._checked((namespace, name), meta, body)
            self.rollouts.check(isvc)
            await self._check_references(isvc)
        except SpecError as exc:
            # Touch no child: what serves keeps serving. Say which field is wrong.
            message = str(exc)
            logger.warning(f"invalid spec, children left as they are: {message}")
            was = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
            if was.get("reason") != "InvalidSpec" or was.get("message") != message:
                await self.events.post(body, "Warning", "InvalidSpec", message)
            status = serving_status(
                previous=previous, generation=generation, plan=None, observed=observed,
                url=previous.get("url", ""), selector=previous.get("selector", ""), now=_now(), spec_error=message,
            )
            # A rollout in flight waits as it is (its children are untouched too) and goes on once
            # the spec is valid again: its state stays in status.
            status.update({k: previous[k] for k in ROLLOUT_STATUS_KEYS if k in previous})
            await self._write_status(namespace, name, previous, status)
            return "invalid_spec", status

        revision = revision_of(isvc.spec, self.images)
        # The rollout: what the machine decides from status, the Deployments, a person's
        # commands and, when analysis is due, one measurement of the canary.
        now = time.time()
        policy = Policy.from_spec(isvc.spec.rollout)
        state = RolloutState.from_status(previous)
        if state.stable and state.stable != revision and state.stable not in observed:
            # The stable revision's Deployment is not in the cache: ask the server before the
            # machine takes it for gone (a lagging cache must never promote an unanalysed canary).
            live = await self.client.get("Deployment", namespace, revision_name(isvc, state.stable))
            if live is not None:
                observed[state.stable] = dataclasses.replace(
                    DeploymentObservation.from_object(live, LABEL_REVISION), revision=state.stable)
        measurement = None
        window = analysis_window(policy, state, revision, now)
        if window is not None:
            measurement = await self.rollouts.measure(isvc, revision, window)
        decision = decide(policy, state, Observations(revision, observed, commands_from(meta.get("annotations")),
                                                      measurement), now)
        routing = routing_of(decision, revision)
        stable = decision.state.stable
        plan = RevisionPlan(target=revision if decision.render_target else routing.stable, stable=stable,
                            keep=decision.keep)
        scaling = isvc.spec.autoscaling
        if decision.canary_replicas is not None:
            replicas = decision.canary_replicas
        else:
            replicas = target_replicas(
                base=replicas_of(isvc), autoscaled=scaling.enabled, lowest=scaling.min_replicas,
                highest=scaling.max_replicas, target=revision, stable=stable, observed=observed,
            )
        # surge false: the canary's pods come from the stable revision, taken before the canary
        # grows (and given back after it shrank), so both together never exceed the baseline.
        held = decision.stable_replicas
        if held is not None and stable is not None and stable in observed and observed[stable].desired > held:
            await self._hold_stable(isvc, stable, held, logger)
        desired = render_children(isvc, revision, self.images, replicas=replicas, routing=routing)
        if not decision.render_target:  # rolled back: the target's own children are not wanted
            own = revision_name(isvc, revision)
            desired = [o for o in desired if not (o["kind"] in PER_REVISION_KINDS and o["metadata"]["name"] == own)]
        have = {(c.kind, c.name): c for c in children}
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for old in _handed_over(desired, have, wanted):
            # autoscaler hpa <-> keda: the old autoscaler of a Deployment goes before the new one is
            # applied (KEDA's webhook refuses a ScaledObject for a Deployment an HPA scales).
            await self.client.delete(old.kind, namespace, old.name)
            self.forget_child(namespace, old.kind, old.name)
            children = [c for c in children if c is not old]
            logger.info(f"removed {old.kind} {old.name}: the spec chose the other autoscaler")
        corrected: str | None = None
        skipped: list[str] = []  # optional kinds this cluster does not serve
        applied: list[str] = []  # said in one log line: a new service applies nine children
        for obj in desired:
            seen = have.get((obj["kind"], obj["metadata"]["name"]))
            drift = self._drift(namespace, obj, seen)
            if drift is None:
                continue
            result = await self._apply(obj)
            if result is None:
                skipped.append(obj["kind"])
                self._waiting.setdefault(obj["kind"], set()).add((namespace, name))
                if obj["kind"] == "ScaledObject":
                    await self.events.post(body, "Warning", "CRDMissing", f"ScaledObject {obj['metadata']['name']} "
                                           f"skipped: the cluster has no {OPTIONAL_KINDS['ScaledObject']} CRD (install "
                                           "KEDA); nothing scales the revision until it is installed")
                elif obj["kind"] == "HTTPRoute":
                    await self.events.post(body, "Warning", "CRDMissing", f"HTTPRoute {obj['metadata']['name']} "
                                           f"skipped: the cluster has no {OPTIONAL_KINDS['HTTPRoute']} CRD (install "
                                           "the Gateway API); no Gateway routes to the service until it is installed")
                continue
            self._applied[(namespace, obj["kind"], obj["metadata"]["name"])] = Applied(
                obj["metadata"]["annotations"][ANNOTATION_APPLIED_HASH],
                str((result.get("metadata") or {}).get("resourceVersion", "")),
            )
            what = f"{obj['kind']} {obj['metadata']['name']}"
            if drift:
                logger.warning(f"put back {what}: {', '.join(drift[:5])} had been changed by hand")
                await self.events.post(body, "Warning", "DriftCorrected",
                                       f"{what}: {', '.join(drift[:5])} changed outside the operator, put back")
            else:
                applied.append(what)
            if obj["kind"] == "Deployment" and seen is None:
                await self.events.post(body, "Normal", "RevisionCreated", _revision_message(revision, stable))
            template = [d for d in drift if d.startswith(".spec.template")]
            if obj["kind"] == "Deployment" and (seen is None or template):
                # What runs is not yet what was applied: not ready until the Deployment controller says so.
                rev = revision_from_name(obj["metadata"]["name"])
                if rev in observed:
                    observed[rev] = dataclasses.replace(observed[rev], current=False)
                if template:
                    corrected = f"{', '.join(template[:3])} had been changed by hand and was put back"
        if applied:
            logger.info(f"applied {', '.join(applied)}")
        for child in children:
            kept = (child.kind in PER_REVISION_KINDS - RENDERED_FOR_ALL_REVISIONS
                    and child.revision in decision.keep)
            if (child.kind, child.name) not in wanted and not kept:
                await self.client.delete(child.kind, namespace, child.name)
                self.forget_child(namespace, child.kind, child.name)
                logger.info(f"pruned {child.kind} {child.name} (revision {child.revision})")
                if child.kind == "Deployment":
                    await self.events.post(body, "Normal", "RevisionRemoved",
                                           f"revision {child.revision} removed; revision {routing.stable} serves")
        if held is not None and stable is not None and stable in observed and observed[stable].desired < held:
            await self._hold_stable(isvc, stable, held, logger)  # given back once the canary's pods are gone
        await self.rollouts.announce(body, isvc, decision)
        for event in decision.events:
            logger.info(f"rollout: {event.reason}: {event.message}")

        status = serving_status(
            previous=previous, generation=generation, plan=plan, observed=observed,
            url=url_of(isvc), selector=_selector(isvc), now=_now(), desired_replicas=replicas, corrected=corrected,
            monitoring=_monitoring(desired, skipped), progressing=progressing_condition(decision, revision),
            autoscaling=_autoscaling(desired, skipped),
        )
        status.update(decision.state.to_status())
        await self._write_status(namespace, name, previous, status)
        if decision.requeue_after is not None and self.schedule is not None:
            self.schedule((namespace, name), decision.requeue_after)
        return "success", status

    async def _hold_stable(self, isvc: InferenceService, stable: str, replicas: int, logger: Any) -> None:
        await self.client.set_replicas("Deployment", isvc.namespace, revision_name(isvc, stable), replicas)
        logger.info(f"scaled stable revision {stable} to {replicas} pod(s) (surge false)")

    async def _apply(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Apply ``obj``; None when it is of an optional kind this API server does not serve."""
        kind = obj["kind"]
        if kind in self._missing_kinds:
            return None  # known missing: no write until its CRD is installed
        try:
            return await self.client.apply(obj)
        except ApiError as exc:
            # 404 on apply: the kind is unknown, or the namespace is gone; discovery tells which.
            if exc.status != 404 or kind not in OPTIONAL_KINDS or await self.client.serves(kind):
                raise
            self._missing_kinds.add(kind)
            return None

    def _drift(self, namespace: str, obj: dict[str, Any], seen: ChildRef | None) -> list[str] | None:
        """None when the child holds what ``obj`` says; else the fields to put back ([] for a new
        child or a change of the desired content, which are writes but not drift).

        The watch cache can lag behind our own writes; what this process wrote (content hash and
        the resourceVersion the server answered) tells a lagging cache from a hand edit, so a
        child is not written twice for one change.
        """
        digest = obj["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
        mine = self._applied.get((namespace, obj["kind"], obj["metadata"]["name"]))
        ours = mine is not None and mine.digest == digest
        if seen is None:
            return None if ours else []  # ours: created, not in the cache yet (a deletion forgets it)
        if mine is not None and ours:
            lagging = _older(seen.resource_version, mine.resource_version)
            if seen.resource_version == mine.resource_version or lagging:
                return None
        if seen.applied_hash != digest:
            return []  # the desired content changed: an ordinary update
        found = differences(obj, seen.body)
        return found or None

    async def _check_references(self, isvc: InferenceService) -> None:
        for ref in references(isvc):
            obj = await self.client.get(ref.kind, isvc.namespace, ref.name)
            if obj is None and ref.issued_by:
                if await self.client.serves(ref.issued_by):
                    continue  # that child writes it (cert-manager's Certificate): the pods wait for it
                # Reconciled again when that CRD is installed (handlers.optional_crd_changed).
                self._waiting.setdefault(ref.issued_by, set()).add((isvc.namespace, isvc.name))
                raise SpecError(ref.field, f"{ref.kind} {ref.name!r} not found in namespace {isvc.namespace}, and "
                                f"nothing will make it: the cluster has no {OPTIONAL_KINDS[ref.issued_by]} CRD "
                                "(install cert-manager)")
            if obj is None:
                raise SpecError(ref.field, f"{ref.kind} {ref.name!r} not found in namespace {isvc.namespace}")
            if ref.key and ref.key not in (obj.get("data") or {}) and ref.key not in (obj.get("stringData") or {}):
                raise SpecError(ref.field, f"{ref.kind} {ref.name!r} has no key {ref.key!r}")

    async def _write_status(
        self, namespace: str, name: str, previous: dict[str, Any], status: dict[str, Any]
    ) -> None:
        """Write only when something changed (a steady state costs no API writes)."""
        if all(previous.get(k) == v for k, v in status.items()) and all(k in status for k in previous):
            return
        answer = await self.client.patch_status("InferenceService", namespace, name, merge_patch(previous, status))
        version = str(((answer or {}).get("metadata") or {}).get("resourceVersion", ""))
        if version:
            self._status[(namespace, name)] = (version, {k: v for k, v in status.items() if v is not None})

    async def delete_children(self, namespace: str, children: list[ChildRef]) -> None:
        """Delete the children of a deleted service now. The garbage collector would too, from
        their owner references, but later: on the test control plane it had not removed them
        30 s after the service was gone."""
        for child in children:
            await self.client.delete(child.kind, namespace, child.name)
            self.forget_child(namespace, child.kind, child.name)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: keys gone are null at every
    depth (a key left out of a nested object would stay on the server, e.g. a finished rollout's
    times in status.rollout); lists and scalars are replaced whole."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


# The two autoscalers of a revision's Deployment: the spec wants one at most (autoscaling.autoscaler).
AUTOSCALER_KINDS = {"HorizontalPodAutoscaler": "ScaledObject", "ScaledObject": "HorizontalPodAutoscaler"}


def _handed_over(desired: list[dict[str, Any]], have: dict[tuple[str, str], ChildRef],
                 wanted: set[tuple[str, str]]) -> list[ChildRef]:
    """The live autoscalers no longer wanted whose Deployment the desired other kind takes over."""
    out = []
    for obj in desired:
        other = AUTOSCALER_KINDS.get(obj["kind"])
        old = have.get((other, obj["metadata"]["name"])) if other else None
        if old is not None and (old.kind, old.name) not in wanted:
            out.append(old)
    return out


def _monitoring(desired: list[dict[str, Any]], skipped: list[str]) -> tuple[str, str, str] | None:
    """The MonitoringReady condition (status, reason, message); None when no monitoring child is wanted.

    Only MONITORING_KINDS count: a ScaledObject is an autoscaler and an HTTPRoute a route, whose
    missing CRDs are said by Warning events.
    """
    kinds = [o["kind"] for o in desired if o["kind"] in MONITORING_KINDS]
    skipped = [k for k in skipped if k in MONITORING_KINDS]
    if not kinds:
        return None
    if skipped:
        crds = ", ".join(OPTIONAL_KINDS[k] for k in skipped)
        return ("False", "CRDMissing", f"the cluster has no {', '.join(skipped)} kind (CRD {crds}, from the "
                "Prometheus Operator): skipped, and applied once the CRD is installed")
    return ("True", "Applied", f"{', '.join(kinds)} applied")


def _autoscaling(desired: list[dict[str, Any]], skipped: list[str]) -> tuple[str, str, str] | None:
    """The AutoscalingReady condition; None unless a ScaledObject is wanted (autoscaler keda).

    Without KEDA's CRD nothing scales the revision (KEDA, not the operator, makes its HPA): a
    status a `kubectl wait` or a GitOps health check can read, beside the Warning event.
    """
    wanted = [o["metadata"]["name"] for o in desired if o["kind"] == "ScaledObject"]
    if not wanted:
        return None
    if "ScaledObject" in skipped:
        return ("False", "CRDMissing", f"the cluster has no ScaledObject kind (CRD {OPTIONAL_KINDS['ScaledObject']}: "
                "install KEDA): nothing scales the service until it is installed, then it is applied")
    return ("True", "Applied", f"ScaledObject {', '.join(wanted)} applied: KEDA scales the service")


def _revision_message(revision: str, stable: str | None) -> str:
    if stable and stable != revision:
        return f"revision {revision} created; it runs beside stable revision {stable} until ready"
    return f"revision {revision} created"
