"""Default container images, in one place so that the CRD defaults, the chart and
inference-image/ can be checked against each other."""

from tritium.version import __version__

IMAGE_REPOSITORY = "ghcr.io/tritium-dev"
# Triton 2.51.0 is the NGC 24.10 release: the same server version local mode runs.
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
# One image carries the gateway, both stage servers and the model fetcher (`tritium` CLI).
DEFAULT_STAGE_IMAGE = f"{IMAGE_REPOSITORY}/tritium:{__version__}"
OPERATOR_IMAGE = DEFAULT_STAGE_IMAGE
