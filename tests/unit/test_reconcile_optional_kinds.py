"""Children of a kind whose CRD the cluster lacks (PodMonitor, PrometheusRule, AlertmanagerConfig,
HTTPRoute, ScaledObject): skipped, remembered, applied again once the CRD is installed
(controller/reconcile.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tritium.controller.kube import ApiError
from tritium.controller.reconcile import Reconciler, _monitoring


class FakeClient:
    def __init__(self, serves: bool) -> None:
        self.applied: list[str] = []
        self._serves = serves

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj["kind"])
        raise ApiError(404, "the server could not find the requested resource")

    async def serves(self, kind: str) -> bool:
        return self._serves


def monitor() -> dict[str, Any]:
    return {"kind": "PodMonitor", "metadata": {"name": "m", "namespace": "ns"}}


async def test_a_kind_the_server_does_not_serve_is_skipped_once_and_remembered() -> None:
    client = FakeClient(serves=False)
    reconciler = Reconciler(client)  # type: ignore[arg-type]
    assert await reconciler._apply(monitor()) is None
    assert await reconciler._apply(monitor()) is None
    assert client.applied == ["PodMonitor"], "no second write while the kind is known missing"
    reconciler._waiting.setdefault("PodMonitor", set()).add(("ns", "svc"))
    assert reconciler.kind_installed("PodMonitor") == [("ns", "svc")]
    assert reconciler.kind_installed("PodMonitor") == []
    assert await reconciler._apply(monitor()) is None  # said installed: tried again (still 404 here)
    assert client.applied == ["PodMonitor", "PodMonitor"]


async def test_a_404_of_a_served_or_core_kind_is_an_error() -> None:
    reconciler = Reconciler(FakeClient(serves=True))  # type: ignore[arg-type]
    with pytest.raises(ApiError):
        await reconciler._apply(monitor())  # e.g. the namespace is gone
    core = Reconciler(FakeClient(serves=False))  # type: ignore[arg-type]
    with pytest.raises(ApiError):
        await core._apply({"kind": "Service", "metadata": {"name": "s", "namespace": "ns"}})


def test_monitoring_condition() -> None:
    desired = [{"kind": "Service"}, {"kind": "PodMonitor"}, {"kind": "PrometheusRule"}]
    assert _monitoring([{"kind": "Service"}], []) is None
    assert _monitoring(desired, []) == ("True", "Applied", "PodMonitor, PrometheusRule applied")
    status, reason, message = _monitoring(desired, ["PrometheusRule"]) or ("", "", "")
    assert (status, reason) == ("False", "CRDMissing")
    assert "PrometheusRule" in message and "prometheusrules.monitoring.coreos.com" in message


def test_monitoring_condition_counts_only_the_prometheus_operators_kinds() -> None:
    desired = [{"kind": "HTTPRoute"}, {"kind": "ScaledObject"}]
    assert _monitoring(desired, ["HTTPRoute", "ScaledObject"]) is None
    desired += [{"kind": "PodMonitor"}, {"kind": "AlertmanagerConfig"}]
    assert _monitoring(desired, ["HTTPRoute"]) == ("True", "Applied", "PodMonitor, AlertmanagerConfig applied")
    status, reason, message = _monitoring(desired, ["HTTPRoute", "AlertmanagerConfig"]) or ("", "", "")
    assert (status, reason) == ("False", "CRDMissing")
    assert "alertmanagerconfigs.monitoring.coreos.com" in message and "httproutes" not in message
