"""Tritium: run NVIDIA Triton on Kubernetes from one InferenceService resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tritium.version import __version__

if TYPE_CHECKING:
    from tritium.client import AsyncInferenceClient, InferenceClient

__all__ = ["AsyncInferenceClient", "InferenceClient", "__version__"]

# The SDK's clients, imported on first use: the operator and the data plane import `tritium`
# too, and must not pay for (or depend on) httpx.
_LAZY = {"InferenceClient", "AsyncInferenceClient"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import tritium.client

        value = getattr(tritium.client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tritium' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
