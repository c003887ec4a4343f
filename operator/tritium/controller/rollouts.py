"""The I/O around the rollout state machine: measuring the canary, and telling people.

rollout/machine.py decides; this module gathers what a decision needs that the watch caches do
not hold (the canary pods' addresses and one measurement, when analysis is due) and carries out
what a decision says beyond the children (Kubernetes Events, webhook notifications). The
translation of a decision into what the renderers need (``routing_of``) and into the
RolloutProgressing condition (``progressing_condition``) is pure and lives here too, beside its
one caller.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from tritium.api.resource import InferenceService, SpecError
from tritium.api.spec import AnalysisSpec, WebhookSpec
from tritium.controller.analysis import Provider, Target, unmeasured
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.controller.analysis.prometheus import PrometheusProvider
from tritium.controller.events import EventRecorder
from tritium.controller.kube import ApiError, KubeClient
from tritium.controller.notify import AnalysisSummary, EventType, Notification, WebhookNotifier
from tritium.render.metadata import LABEL_ISVC, LABEL_REVISION
from tritium.render.routing import Routing
from tritium.rollout.analysis import Measurement
from tritium.rollout.machine import Decision
from tritium.rollout.phases import Phase

log = logging.getLogger(__name__)


def routing_of(decision: Decision, target: str) -> Routing:
    """Who the Services select and the canary's share, from one decision."""
    stable = decision.serving or target
    canary = target if decision.render_target and stable != target else None
    revisions = tuple(sorted(decision.keep | {stable} | ({canary} if canary else set())))
    return Routing(stable=stable, canary=canary, weight=decision.weight if canary else 0, revisions=revisions)


def progressing_condition(decision: Decision, target: str) -> tuple[str, str, str]:
    """RolloutProgressing (status, reason, message): True while a rollout is in flight or waits for
    a person, False once it ended (and then the reason says how)."""
    state = decision.state
    if state.phase is None or (state.stable == target and state.phase == Phase.PROMOTED):
        return ("False", "Stable", f"revision {target} is stable")
    if state.phase in (Phase.ROLLED_BACK, Phase.FAILED):
        return ("False", state.reason or str(state.phase), state.message)
    return ("True", state.reason or str(state.phase), state.message)


def canary_pod_ips(pods: list[dict[str, Any]]) -> tuple[str, ...]:
    """The addresses of the canary's pods that run (pending and deleted pods have nothing to say)."""
    ips = []
    for pod in pods:
        status = pod.get("status") or {}
        if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
            continue
        if status.get("podIP"):
            ips.append(str(status["podIP"]))
    return tuple(sorted(ips))


class RolloutDriver:
    """Providers and the webhook notifier, shared by every service of one operator process.

    One builtin provider for all: it keeps the last snapshot of each canary pod between
    measurements. Prometheus providers are kept per URL.
    """

    def __init__(self, client: KubeClient, events: EventRecorder, prometheus_url: str | None = None) -> None:
        self.client = client
        self.events = events
        self.prometheus_url = prometheus_url
        self.builtin = BuiltinProvider()
        self._prometheus: dict[str, PrometheusProvider] = {}
        self.notifier: WebhookNotifier | None = None

    async def start(self) -> None:
        if self.notifier is None:
            self.notifier = WebhookNotifier()
            await self.notifier.start()

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
            self.notifier = None

    def check(self, isvc: InferenceService) -> None:
        """Refuse, at spec time, what would make every measurement fail (no Prometheus URL)."""
        self._provider(isvc.spec.rollout.analysis)

    def _provider(self, analysis: AnalysisSpec) -> Provider:
        if analysis.provider == "builtin":
            return self.builtin
        url = analysis.prometheus_url or self.prometheus_url
        if not url:
            raise SpecError("spec.rollout.analysis.prometheusUrl", "provider prometheus needs a Prometheus URL: set "
                            "it here or start the operator with --prometheus-url (or use provider builtin)")
        if url not in self._prometheus:
            self._prometheus[url] = PrometheusProvider(url)
        return self._prometheus[url]

    async def measure(self, isvc: InferenceService, revision: str, window: float) -> Measurement:
        """One measurement of ``revision`` over the last ``window`` seconds; never raises."""
        analysis = isvc.spec.rollout.analysis
        try:
            provider = self._provider(analysis)
            ips: tuple[str, ...] = ()
            if analysis.provider == "builtin":
                pods = await self.client.list("Pod", isvc.namespace,
                                              f"{LABEL_ISVC}={isvc.name},{LABEL_REVISION}={revision}")
                ips = canary_pod_ips(pods)
        except (SpecError, ApiError) as exc:
            return unmeasured(analysis.provider, window, str(exc))
        return await provider.measure(Target(isvc.namespace, isvc.name, revision, ips), window)

    async def announce(self, body: dict[str, Any], isvc: InferenceService, decision: Decision) -> None:
        """Post the decision's events, and send those meant for people to the webhook."""
        state = decision.state
        for event in decision.events:
            await self.events.post(body, "Warning" if event.warning else "Normal", event.reason, event.message)
            webhook = isvc.spec.monitoring.webhook
            if event.notify is None or webhook is None or self.notifier is None:
                continue
            last = state.history[-1] if state.history else None
            summary = None if last is None else AnalysisSummary(
                verdict=str(last.verdict), error_ratio=last.error_ratio, p99_latency_ms=last.p99_ms,
                requests=last.requests)
            notification = Notification(
                type=EventType(event.notify), namespace=isvc.namespace, name=isvc.name, message=event.message,
                stable_revision=state.stable, canary_revision=state.revision, canary_weight=state.weight,
                phase=str(state.phase) if state.phase else None, analysis=summary,
            )
            try:
                url, secret = await self._webhook(isvc.namespace, webhook)
            except (ApiError, LookupError) as exc:
                log.warning("no %s notification for %s/%s: %s", event.notify, isvc.namespace, isvc.name, exc)
                continue
            self.notifier.send(url, notification, secret)

    async def _webhook(self, namespace: str, webhook: WebhookSpec) -> tuple[str, bytes | None]:
        """The webhook URL and signing secret, read from their Secrets when the spec names them."""
        url = webhook.url or (await self._secret_value(namespace, webhook.secret_ref)).decode().strip()
        secret = await self._secret_value(namespace, webhook.signing_secret_ref) if webhook.signing_secret_ref else None
        return url, secret

    async def _secret_value(self, namespace: str, ref: Any) -> bytes:
        obj = await self.client.get("Secret", namespace, ref.name)
        if obj is None:
            raise LookupError(f"Secret {ref.name!r} not found")
        data = obj.get("data") or {}
        if ref.key in data:
            return base64.b64decode(data[ref.key])
        string = (obj.get("stringData") or {}).get(ref.key)
        if string is None:
            raise LookupError(f"Secret {ref.name!r} has no key {ref.key!r}")
        return str(string).encode()
