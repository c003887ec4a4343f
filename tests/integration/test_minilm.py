"""The MiniLM example against its stored reference embeddings (cosine >= 0.9999).

The Triton model alone (tokenized and pooled in the test with the example's own stage scripts),
then the whole pipeline through the gateway of `tritium up`: the invoke API, an unchanged
tritonclient on KServe v2 (JSON and binary: text in, embeddings out, as the metadata says), and
perf_analyzer driving the pipeline with string data it generates from that metadata.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support.local_up import MINILM, UpProcess, require, require_minilm_parts, start_up
from tests.support.perf_analyzer import find_perf_analyzer
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
    inputs = []
    for name, array in tensors.items():
        tensor = httpclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    with _closing(httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))) as client:  # type: ignore[attr-defined]
        result = client.infer("minilm", inputs)
    hidden, mask = result.as_numpy("token_embeddings"), result.as_numpy("mask")
    assert hidden.shape == (*tensors["input_ids"].shape, 384)
    out = post.postprocess({"token_embeddings": hidden, "mask": mask}, {})
    assert min(_cosines(out["embeddings"])) >= MIN_COSINE


def test_model_rejects_bad_token_ids(triton: object) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    inputs = []
    for name, value in (("input_ids", 10**6), ("attention_mask", 1), ("token_type_ids", 0)):
        tensor = httpclient.InferInput(name, [1, 2], "INT64")
        tensor.set_data_from_numpy(np.full((1, 2), value, dtype=np.int64))
        inputs.append(tensor)
    with _closing(httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))) as client, \
            pytest.raises(InferenceServerException, match="token ids must be within"):  # type: ignore[attr-defined]
        client.infer("minilm", inputs)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example as shipped, but with its response cache off: every request here must reach the
    model (perf_analyzer repeats its data, and fails on a model whose Triton statistics never move)."""
    require_minilm_parts()
    doc = yaml.safe_load((MINILM / "isvc.yaml").read_text())
    doc["spec"]["model"]["storageUri"] = f"file://{MINILM / 'model'}"
    for stage in ("preprocess", "postprocess"):
        script = doc["spec"][stage]["script"]
        script["path"] = str(MINILM / script["path"])
    doc["spec"]["gateway"]["cache"]["enabled"] = False
    manifest = tmp_path_factory.mktemp("minilm") / "isvc.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    up: UpProcess = start_up(manifest)
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


def test_a_huge_sentence_is_cut_before_tokenizing(gateway: str) -> None:
    """A 10 MB sentence: only its first tokens count, so only its start is tokenized (bounded memory)."""
    import httpx

    head = " ".join(REFERENCE["sentences"]) + " "
    huge = (head * (10_000_000 // len(head) + 1))[:10_000_000]
    resp = httpx.post(f"{gateway}/v1/models/minilm/invoke", json={"inputs": {"text": [huge, head * 40]}}, timeout=60)
    assert resp.status_code == 200, resp.text[:300]
    a, b = resp.json()["outputs"]["embeddings"]
    assert float(np.dot(a, b)) >= MIN_COSINE  # both truncated at 256 tokens: the same text


def test_model_directory_has_no_config_of_its_own() -> None:
    """config.pbtxt comes from the spec (rendered), so the example cannot drift from its manifest."""
    assert not (Path(MINILM) / "model" / "config.pbtxt").exists()


def _closing(client: Any) -> contextlib.closing[Any]:
    """Close a tritonclient client in the test's own thread: left to the garbage collector, its
    gevent pool is joined from whichever thread collects it, and fails there."""
    return contextlib.closing(client)


def _v2_client(gateway: str) -> contextlib.closing[Any]:
    import tritonclient.http as httpclient

    return _closing(httpclient.InferenceServerClient(gateway.removeprefix("http://"), network_timeout=120))


def test_v2_metadata_describes_the_pipeline(gateway: str) -> None:
    with _v2_client(gateway) as client:
        meta = client.get_model_metadata("minilm")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embeddings", "datatype": "FP32", "shape": [-1, 384]}]
    import httpx

    core = httpx.get(f"{gateway}/v2/models/minilm/core", timeout=30).json()
    assert [t["name"] for t in core["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_unchanged_tritonclient_through_the_pipeline(gateway: str, binary: bool) -> None:
    import tritonclient.http as httpclient

    sentences = REFERENCE["sentences"]
    text = httpclient.InferInput("text", [len(sentences)], "BYTES")
    text.set_data_from_numpy(np.array([s.encode() for s in sentences], dtype=np.object_), binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("embeddings", binary_data=binary)]
    with _v2_client(gateway) as client:
        result = client.infer("minilm", [text], outputs=wanted)
    embeddings = result.as_numpy("embeddings")
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(sentences), 384)
    assert min(_cosines(embeddings.tolist())) >= MIN_COSINE


def test_perf_analyzer_drives_the_pipeline_from_its_metadata(gateway: str, tmp_path: Path) -> None:
    found = find_perf_analyzer()
    require(found is not None, "perf_analyzer not found (pip install 'tritonclient[all]')")
    assert found is not None
    binary, env = found
    out = tmp_path / "pa.csv"
    # No --input-data: perf_analyzer makes random strings for the BYTES input the metadata names.
    # A fixed request count, not windows that must agree: this checks that it runs, not how fast.
    cmd = [binary, "-m", "minilm", "-u", gateway.removeprefix("http://"), "-i", "http", "--shape", "text:2",
           "--string-length", "24", "--concurrency-range", "2", "--request-count", "40", "-f", str(out)]
    proc = subprocess.run(cmd, env={**env, **{k: v for k, v in os.environ.items() if k == "PATH"}},
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    row = next(csv.DictReader(out.open()))
    assert float(row["Inferences/Second"]) > 0, row
