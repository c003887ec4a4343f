"""Which analysis provider measures a service's canaries, by name."""

from __future__ import annotations

from tritium.controller.analysis import Provider
from tritium.controller.analysis.builtin import BuiltinProvider
from tritium.controller.analysis.prometheus import PrometheusProvider

PROVIDER_NAMES = ("builtin", "prometheus")


def provider_for(provider_name: str, prometheus_url: str | None) -> Provider:
    """The provider called `provider_name`. Raises ValueError for an unknown name, and for
    "prometheus" without a URL: a misconfiguration should be said once, at startup, rather
    than as an Inconclusive measurement every interval."""
    if provider_name == "builtin":
        return BuiltinProvider()
    if provider_name == "prometheus":
        if not prometheus_url:
            raise ValueError("the prometheus analysis provider needs a Prometheus URL "
                             "(spec.rollout.analysis.prometheusUrl or the operator's --prometheus-url), "
                             "or use the builtin provider, which scrapes the canary pods itself")
        return PrometheusProvider(prometheus_url)
    raise ValueError(f"unknown analysis provider {provider_name!r}: expected one of {', '.join(PROVIDER_NAMES)}")
