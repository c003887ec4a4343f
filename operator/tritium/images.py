"""Container images: the built-in defaults, and the operator's own configuration of them.

Images are not defaulted in the CRD: a default written by the API server into every object could
never follow a registry change. An InferenceService that names no image gets the operator's
(`TRITIUM_STAGE_IMAGE`, `TRITIUM_TRITON_IMAGE`, set by the Helm chart), so a private registry or
an air-gapped mirror is one chart value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tritium.version import __version__

IMAGE_REPOSITORY = "ghcr.io/tritium-dev"
# Triton 2.51.0 is the NGC 24.10 release: the same server version local mode runs.
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
# One image carries the gateway, both stage servers and the model fetcher (`tritium` CLI).
DEFAULT_STAGE_IMAGE = f"{IMAGE_REPOSITORY}/tritium:{__version__}"
OPERATOR_IMAGE = DEFAULT_STAGE_IMAGE

STAGE_IMAGE_ENV = "TRITIUM_STAGE_IMAGE"
TRITON_IMAGE_ENV = "TRITIUM_TRITON_IMAGE"


@dataclass(frozen=True)
class Images:
    """The images used where an InferenceService names none."""

    stage: str = DEFAULT_STAGE_IMAGE  # gateway, stage sidecars, model fetcher
    triton: str = DEFAULT_TRITON_IMAGE

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Images:
        return Images(
            stage=env.get(STAGE_IMAGE_ENV) or DEFAULT_STAGE_IMAGE,
            triton=env.get(TRITON_IMAGE_ENV) or DEFAULT_TRITON_IMAGE,
        )


DEFAULT_IMAGES = Images()
