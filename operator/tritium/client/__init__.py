"""The Python SDK: call a Tritium endpoint (the gateway of an InferenceService) from Python.

Example::

    from tritium import InferenceClient

    client = InferenceClient(endpoint="https://models.example.com", api_key="...")
    response = client.invoke(model_id="minilm", inputs={"text": ["hello"]}, parameters={"normalize": True})
    print(response.text, response.outputs["embeddings"].shape)

See docs/sdk.md for streaming, batches, retries, timeouts, TLS and errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what static tools see; at run time the names load on first use
    from tritium.client.aio import AsyncChunkStream, AsyncInferenceClient
    from tritium.client.errors import (
        APIConnectionError,
        AuthenticationError,
        DeadlineExceededError,
        InvalidInputError,
        ModelNotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        ServiceUnavailableError,
        TritiumError,
    )
    from tritium.client.response import BatchResult, Health, ModelMetadata, Response, StreamChunk, TensorSpec
    from tritium.client.retry import RetryPolicy, Timeout
    from tritium.client.signing import verify_response
    from tritium.client.sync import ChunkStream, InferenceClient

# Names -> the module defining them, imported on first use: `tritium.client.cli` is loaded by every
# `tritium` command (the operator included) to register its subcommands, and must not drag
# httpx and numpy into processes that never call an endpoint.
_MODULES = {
    "AsyncChunkStream": "aio", "AsyncInferenceClient": "aio",
    "APIConnectionError": "errors", "AuthenticationError": "errors", "DeadlineExceededError": "errors",
    "InvalidInputError": "errors", "ModelNotFoundError": "errors", "PermissionDeniedError": "errors",
    "RateLimitError": "errors", "ServerError": "errors", "ServiceUnavailableError": "errors",
    "TritiumError": "errors",
    "BatchResult": "response", "Health": "response", "ModelMetadata": "response", "Response": "response",
    "StreamChunk": "response", "TensorSpec": "response",
    "RetryPolicy": "retry", "Timeout": "retry",
    "ChunkStream": "sync", "InferenceClient": "sync",
    "verify_response": "signing",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'tritium.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tritium.client.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULES))


__all__ = [
    "APIConnectionError",
    "AsyncChunkStream",
    "AsyncInferenceClient",
    "AuthenticationError",
    "BatchResult",
    "ChunkStream",
    "DeadlineExceededError",
    "Health",
    "InferenceClient",
    "InvalidInputError",
    "ModelMetadata",
    "ModelNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Response",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "StreamChunk",
    "TensorSpec",
    "Timeout",
    "TritiumError",
    "verify_response",
]
