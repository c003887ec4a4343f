"""Post stage of examples/minilm: token embeddings -> one unit-length sentence embedding each.

Mean pooling over the real (unmasked) tokens, then L2 normalisation: sentence-transformers'
Pooling(mean) + Normalize modules for all-MiniLM-L6-v2. The response carries
``{"embeddings": [[384 floats], ...], "dimensions": 384}`` and a one-line text summary.

On KServe v2 the answer is ``OUTPUTS`` below: ``embeddings``, FP32 [n, 384].

Request parameter ``normalize: false`` returns the mean-pooled vectors without normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The pipeline's output, as v2 clients discover it (GET /v2/models/minilm): n embeddings out.
OUTPUTS = [{"name": "embeddings", "datatype": "FP32", "shape": [-1, 384]}]


def postprocess(outputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, Any]:
    hidden = outputs.get("token_embeddings")
    mask = outputs.get("mask")
    if hidden is None or mask is None:
        raise ValueError("the model must return token_embeddings and mask")
    weights = mask.astype(np.float32)[..., None]
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if parameters.get("normalize", True) is not False:
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return {
        "embeddings": pooled.astype(np.float32).tolist(),
        "dimensions": int(pooled.shape[1]),
        "text": f"{pooled.shape[0]} embedding(s) of dimension {pooled.shape[1]}",
    }
