"""Tritium: run NVIDIA Triton on Kubernetes from one InferenceService resource."""

from tritium.version import __version__

__all__ = ["__version__"]
