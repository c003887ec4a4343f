"""Which revisions traffic goes to, as the renderers need it (decided by rollout/machine.py).

The main Service selects only ``stable``'s pods; during a canary, ``canary`` gets ``weight``
percent, either through the stable gateways (router ``gateway``: the traffic ConfigMap tells them
the share and the canary's own Service) or through a weighted HTTPRoute (router ``gatewayAPI``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tritium.api.resource import InferenceService
from tritium.render.metadata import revision_name


@dataclass(frozen=True)
class Routing:
    stable: str  # the revision the main Service selects
    canary: str | None = None  # the revision under analysis, when one runs beside stable
    weight: int = 0  # the canary's share in percent (0 unless it is Ready)
    revisions: tuple[str, ...] = ()  # revisions that run (stable, canary, previous); see service.addressed_revisions

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 100:
            raise ValueError(f"weight must be within 0 and 100, not {self.weight}")
        if self.weight and not self.canary:
            raise ValueError("a weight needs a canary revision")

    @staticmethod
    def only(revision: str) -> Routing:
        """One revision takes all traffic (no rollout in flight)."""
        return Routing(stable=revision, revisions=(revision,))

    @property
    def stable_weight(self) -> int:
        return 100 - self.weight


def revision_service_name(isvc: InferenceService, revision: str) -> str:
    """The Service of one revision's pods (NAME-REVISION, like its Deployment)."""
    return revision_name(isvc, revision)


def revision_service_host(isvc: InferenceService, revision: str) -> str:
    return f"{revision_service_name(isvc, revision)}.{isvc.namespace}.svc.cluster.local"
