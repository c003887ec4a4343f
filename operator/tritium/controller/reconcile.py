"""One reconcile of one InferenceService: parse, check, render, apply what changed, prune, status.

Everything here is driven by data the caller hands in (the object body and the children seen by
the watch caches), so it is the same code whether kopf calls it for a spec change, a resume
after restart, or a change of an owned Deployment.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any

import kopf

from tritium.api.checks import check_spec, references
from tritium.api.resource import InferenceService, SpecError, parse_inference_service
from tritium.controller import metrics
from tritium.controller.kube import ApiError, KubeClient
from tritium.images import DEFAULT_IMAGES, Images
from tritium.render import render_children
from tritium.render.deployment import replicas_of
from tritium.render.metadata import ANNOTATION_APPLIED_HASH, LABEL_ISVC, LABEL_REVISION, revision_of, selector_labels
from tritium.render.service import url_of
from tritium.rollout.revisions import DeploymentObservation, plan_revisions, serving_status

STATUS_BOOKKEEPING = "kopf"  # status.kopf belongs to kopf, never compared nor overwritten here


@dataclass(frozen=True)
class ChildRef:
    """A child as the watch cache saw it: enough to decide whether to write or prune it."""

    kind: str
    name: str
    revision: str
    applied_hash: str
    deployment: DeploymentObservation | None = None

    @staticmethod
    def from_object(kind: str, obj: dict[str, Any]) -> ChildRef:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return ChildRef(
            kind=kind,
            name=meta.get("name", ""),
            revision=labels.get(LABEL_REVISION, ""),
            applied_hash=(meta.get("annotations") or {}).get(ANNOTATION_APPLIED_HASH, ""),
            deployment=DeploymentObservation.from_object(obj, LABEL_REVISION) if kind == "Deployment" else None,
        )


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector(isvc: InferenceService) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(isvc).items())


def _parse(body: dict[str, Any]) -> InferenceService:
    """Parse the user's part of the object (status is ours and never blocks parsing)."""
    return parse_inference_service({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")})


class Reconciler:
    """Serialises reconciles per InferenceService and skips those overtaken by a newer spec."""

    def __init__(self, client: KubeClient, images: Images = DEFAULT_IMAGES) -> None:
        self.client = client
        self.images = images
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._generations: dict[tuple[str, str], int] = {}

    def reset(self, images: Images = DEFAULT_IMAGES) -> None:
        """Forget per-object state (locks are bound to the event loop of one operator run)."""
        self.images = images
        self._locks.clear()
        self._generations.clear()

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self._generations.pop((namespace, name), None)

    async def reconcile(
        self, body: dict[str, Any], children: list[ChildRef], logger: logging.Logger | kopf.Logger
    ) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        lock = self._locks.setdefault(key, asyncio.Lock())
        started = time.perf_counter()
        async with lock:
            generation = meta.get("generation")
            if isinstance(generation, int):
                if generation < self._generations.get(key, 0):
                    return  # a newer spec was already reconciled; this body is stale
                self._generations[key] = generation
            try:
                result = await self._reconcile(body, children, logger)
            except ApiError as exc:
                metrics.RECONCILES.labels(result="error").inc()
                metrics.ERRORS.labels(kind=f"api_{exc.status}").inc()
                if exc.retriable:
                    raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=5) from exc
                raise kopf.TemporaryError(f"Kubernetes API refused a write: {exc}", delay=60) from exc
            finally:
                metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(result=result).inc()

    async def _reconcile(self, body: dict[str, Any], children: list[ChildRef], logger: Any) -> str:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        generation = meta.get("generation")
        previous = {
            k: v for k, v in (body.get("status") or {}).items() if k != STATUS_BOOKKEEPING and v is not None
        }
        observed = {c.revision: c.deployment for c in children if c.deployment is not None}
        try:
            isvc = _parse(body)
            check_spec(isvc)
            await self._check_references(isvc)
        except SpecError as exc:
            # Touch no child: what serves keeps serving. Say which field is wrong.
            message = str(exc)
            logger.warning(f"invalid spec, children left as they are: {message}")
            status = serving_status(
                previous=previous, generation=generation, plan=None, observed=observed,
                url=previous.get("url", ""), selector=previous.get("selector", ""), now=_now(), spec_error=message,
            )
            await self._write_status(namespace, name, previous, status)
            return "invalid_spec"

        revision = revision_of(isvc.spec, self.images)
        desired = render_children(isvc, revision, self.images)
        plan = plan_revisions(revision, previous.get("stableRevision"), observed)
        have = {(c.kind, c.name): c for c in children}
        for obj in desired:
            seen = have.get((obj["kind"], obj["metadata"]["name"]))
            if seen is None or seen.applied_hash != obj["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]:
                await self.client.apply(obj)
                logger.info(f"applied {obj['kind']} {obj['metadata']['name']}")
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for child in children:
            if (child.kind, child.name) not in wanted and child.revision not in plan.keep:
                await self.client.delete(child.kind, namespace, child.name)
                logger.info(f"pruned {child.kind} {child.name} (revision {child.revision})")

        status = serving_status(
            previous=previous, generation=generation, plan=plan, observed=observed,
            url=url_of(isvc), selector=_selector(isvc), now=_now(), desired_replicas=replicas_of(isvc),
        )
        await self._write_status(namespace, name, previous, status)
        return "success"

    async def _check_references(self, isvc: InferenceService) -> None:
        for ref in references(isvc):
            obj = await self.client.get(ref.kind, isvc.namespace, ref.name)
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
        patch: dict[str, Any] = {k: None for k in previous if k not in status}
        patch.update(status)
        await self.client.patch_status("InferenceService", namespace, name, patch)

    async def delete_children(self, namespace: str, children: list[ChildRef]) -> None:
        """Delete every child now (owner references would too, but only with a garbage collector)."""
        for child in children:
            await self.client.delete(child.kind, namespace, child.name)


def child_key(labels: dict[str, str], namespace: str) -> tuple[str, str] | None:
    isvc = labels.get(LABEL_ISVC)
    return (namespace, isvc) if isvc else None
