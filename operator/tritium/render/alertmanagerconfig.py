"""The AlertmanagerConfig (monitoring.coreos.com/v1alpha1) of a service: where its alerts go, or None.

Rendered when ``spec.monitoring.webhook`` is set, ``monitoring.serviceMonitor`` is on and the
service has alerts (render/prometheusrule.py): one route matching the alerts of this service (the
``inferenceservice`` label every Tritium alert carries; the Prometheus Operator adds the matcher
``namespace=<this object's namespace>`` to the first-level route itself) to one receiver, a
webhook at the spec's ``url`` or at the URL in the Secret key ``secretRef`` (``urlSecret``: the
Prometheus Operator reads it, in this namespace).

These are Alertmanager's notifications (its webhook JSON, sent and retried by Alertmanager),
not the operator's rollout notifications to the same webhook (docs/notifications.md); the
``signingSecretRef`` signature is the operator's only.
"""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render import prometheusrule
from tritium.render.metadata import object_meta
from tritium.render.podmonitor import SERIES_LABEL_REVISION, SERIES_LABEL_SERVICE

RECEIVER = "tritium-webhook"


def _webhook(isvc: InferenceService) -> dict[str, Any]:
    hook = isvc.spec.monitoring.webhook
    assert hook is not None
    target: dict[str, Any] = (
        {"urlSecret": {"name": hook.secret_ref.name, "key": hook.secret_ref.key}}
        if hook.secret_ref is not None else {"url": hook.url}
    )
    return {**target, "sendResolved": True}


def render(isvc: InferenceService, revision: str) -> dict[str, Any] | None:
    mon = isvc.spec.monitoring
    if mon.webhook is None or not mon.service_monitor or not prometheusrule.rules_of(isvc):
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": object_meta(isvc, isvc.name, revision),
        "spec": {
            "route": {
                "receiver": RECEIVER,
                "matchers": [{"name": SERIES_LABEL_SERVICE, "value": isvc.name, "matchType": "="}],
                "groupBy": ["alertname", "namespace", SERIES_LABEL_SERVICE, SERIES_LABEL_REVISION],
            },
            "receivers": [{"name": RECEIVER, "webhookConfigs": [_webhook(isvc)]}],
        },
    }
