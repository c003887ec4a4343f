"""The Python SDK: call a Tritium endpoint (the gateway of an InferenceService) from Python.

Example::

    from tritium import InferenceClient

    client = InferenceClient(endpoint="https://models.example.com", api_key="...")
    response = client.invoke(model_id="minilm", inputs={"text": ["hello"]}, parameters={"normalize": True})
    print(response.text, response.outputs["embeddings"].shape)

See docs/sdk.md for streaming, batches, retries, timeouts, TLS and errors.
"""

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
from tritium.client.sync import ChunkStream, InferenceClient

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
]
