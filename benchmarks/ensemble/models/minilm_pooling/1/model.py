"""Pooling step of the MiniLM ensemble: token_embeddings (FP32, [sentences, tokens, 384]) and
mask (INT64, [sentences, tokens]) -> embeddings (FP32, [sentences, 384]).

The math of examples/minilm/post.py: mean pooling over the unmasked tokens, then L2
normalisation (sentence-transformers' Pooling(mean) + Normalize for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            hidden = pb_utils.get_input_tensor_by_name(request, "token_embeddings").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "mask").as_numpy()
            weights = mask.astype(np.float32)[..., None]
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("embeddings", pooled.astype(np.float32)),
            ]))
        return responses
