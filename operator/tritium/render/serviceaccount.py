"""The ServiceAccount the serving pods run as (no API token mounted: pods never call the API)."""

from __future__ import annotations

from typing import Any

from tritium.api.resource import InferenceService
from tritium.render.metadata import object_meta


def name_of(isvc: InferenceService) -> str:
    return isvc.name


def render(isvc: InferenceService, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(isvc, name_of(isvc), revision),
        "automountServiceAccountToken": False,
    }
