"""The MiniLM example against its stored reference embeddings (cosine >= 0.9999).

Twice: the Triton model alone (tokenized and pooled in the test with the example's own stage
scripts), and the whole pipeline through the gateway of `tritium up`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support.local_up import MINILM, UpProcess, require_minilm_parts, start_up
from tritium.api.resource import load_inference_services
from tritium.dataplane.fetch import fetch_model
from tritium.render.triton_config import render_config

REFERENCE = json.loads((MINILM / "reference_embeddings.json").read_text())
MIN_COSINE = 0.9999


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"minilm_{name}", MINILM / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cosines(vectors: list[list[float]]) -> list[float]:
    return [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            for a, b in zip(vectors, REFERENCE["embeddings"], strict=True)]


def test_reference_file_is_complete() -> None:
    assert len(REFERENCE["sentences"]) == len(REFERENCE["embeddings"]) >= 5
    for vector in REFERENCE["embeddings"]:
        assert len(vector) == 384
        assert abs(np.linalg.norm(vector) - 1) < 1e-6


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    require_minilm_parts(dataplane=False)
    from tritium.local.tritonserver import TritonServer

    isvc = load_inference_services((MINILM / "isvc.yaml").read_text())[0]
    repo = tmp_path_factory.mktemp("repo")
    fetch_model(str(MINILM / "model"), repo / "minilm", render_config(isvc.spec.model))
    with TritonServer(repo, models=["minilm"]) as server:
        yield server


def test_model_alone_through_triton(triton: object) -> None:
    import tritonclient.http as httpclient

    pre, post = _script("pre"), _script("post")
    pre.setup({})
    tensors = pre.preprocess({"text": REFERENCE["sentences"]}, {})
    client = httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))  # type: ignore[attr-defined]
    inputs = []
    for name, array in tensors.items():
        tensor = httpclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    result = client.infer("minilm", inputs)
    hidden, mask = result.as_numpy("token_embeddings"), result.as_numpy("mask")
    assert hidden.shape == (*tensors["input_ids"].shape, 384)
    out = post.postprocess({"token_embeddings": hidden, "mask": mask}, {})
    assert min(_cosines(out["embeddings"])) >= MIN_COSINE


def test_model_rejects_bad_token_ids(triton: object) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))  # type: ignore[attr-defined]
    inputs = []
    for name, value in (("input_ids", 10**6), ("attention_mask", 1), ("token_type_ids", 0)):
        tensor = httpclient.InferInput(name, [1, 2], "INT64")
        tensor.set_data_from_numpy(np.full((1, 2), value, dtype=np.int64))
        inputs.append(tensor)
    with pytest.raises(InferenceServerException, match="token ids must be within"):
        client.infer("minilm", inputs)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    require_minilm_parts()
    up: UpProcess = start_up(MINILM / "isvc.yaml")
    try:
        yield up.wait_ready()
    finally:
        up.stop()


def test_pipeline_through_the_gateway_matches_the_reference(gateway: str) -> None:
    import httpx

    body = {"inputs": {"text": REFERENCE["sentences"]}, "parameters": {}}
    resp = httpx.post(f"{gateway}/v1/models/minilm/invoke", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["model"] == "minilm"
    assert data["outputs"]["dimensions"] == 384
    cosines = _cosines(data["outputs"]["embeddings"])
    assert min(cosines) >= MIN_COSINE, cosines

    # One sentence at a time (no padding in the batch) gives the same vectors.
    single = httpx.post(f"{gateway}/v1/models/minilm/invoke",
                        json={"inputs": {"text": REFERENCE["sentences"][3]}}, timeout=60)
    assert single.status_code == 200, single.text
    vector = single.json()["outputs"]["embeddings"][0]
    assert float(np.dot(vector, REFERENCE["embeddings"][3])) >= MIN_COSINE


def test_bad_input_is_a_400(gateway: str) -> None:
    import httpx

    resp = httpx.post(f"{gateway}/v1/models/minilm/invoke", json={"inputs": {"text": 42}}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert "inputs.text" in resp.text


def test_model_directory_has_no_config_of_its_own() -> None:
    """config.pbtxt comes from the spec (rendered), so the example cannot drift from its manifest."""
    assert not (Path(MINILM) / "model" / "config.pbtxt").exists()
