"""A pipeline's signature through the v2 API, with real stage processes and a real Triton.

The scripts declare what the pipeline takes (pre INPUTS: text) and returns (post OUTPUTS), so an
unchanged tritonclient discovers text in and typed outputs back, while the core model ("add",
two FP32 tensors) stays reachable at /v2/models/add/core. The pre script checks that it gets the
same Python values (str, or bytes when not UTF-8) from v2 JSON, v2 binary and invoke.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium.local.tritonserver import TritonServer

PRE = '''
import numpy as np

INPUTS = [{"name": "words", "datatype": "BYTES", "shape": [-1]}]

def preprocess(inputs, parameters):
    words = inputs["words"]
    words = [words] if isinstance(words, (str, bytes)) else words
    if not all(isinstance(w, (str, bytes)) for w in words):
        raise ValueError(f"words must be text, got {[type(w).__name__ for w in words]}")
    # INPUT0: each word's length; INPUT1: 1 for a str, 0 for bytes (what this script was handed).
    return {"INPUT0": np.array([[len(w) for w in words]], dtype=np.float32),
            "INPUT1": np.array([[1.0 if isinstance(w, str) else 0.0 for w in words]], dtype=np.float32)}
'''

POST = '''
import numpy as np

OUTPUTS = [{"name": "score", "datatype": "FP64", "shape": [-1]},
           {"name": "label", "datatype": "BYTES", "shape": [1]}]

def postprocess(outputs, parameters):
    score = outputs["SUM"][0]
    return {"score": score.tolist(), "label": ["long" if score.sum() > 5 else "short"], "undeclared": 1}
'''


@pytest.fixture(scope="module")
def pipeline(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = tmp_path_factory.mktemp("signature")
    (d / "pre.py").write_text(PRE)
    (d / "post.py").write_text(POST)
    spec = base_spec("add", preprocess={"script": {"path": str(d / "pre.py")}},
                     postprocess={"script": {"path": str(d / "post.py")}})
    dep = deploy(d, triton, spec, name="signature")
    yield dep
    dep.stop()


def _client(dep: Deployment) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(dep.url.removeprefix("http://"))


def _words(values: list[bytes], binary: bool) -> httpclient.InferInput:
    words = httpclient.InferInput("words", [len(values)], "BYTES")
    words.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=binary)
    return words


def test_metadata_and_config_describe_the_pipeline(pipeline: Deployment, triton: TritonServer) -> None:
    client = _client(pipeline)
    meta = client.get_model_metadata("add")
    assert meta["inputs"] == [{"name": "words", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [-1]},
                               {"name": "label", "datatype": "BYTES", "shape": [1]}]
    assert meta["platform"] == "tritium_pipeline" and meta["name"] == "add"
    config = client.get_model_config("add")
    assert config["max_batch_size"] == 0  # the script's shapes are whole tensors
    assert config["input"] == [{"name": "words", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert [o["name"] for o in config["output"]] == ["score", "label"]
    assert "dynamic_batching" not in config


def test_the_core_model_stays_reachable(pipeline: Deployment, triton: TritonServer) -> None:
    direct = httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))
    core = httpx.get(f"{pipeline.url}/v2/models/add/core")
    assert core.status_code == 200 and core.json() == direct.get_model_metadata("add")
    assert httpx.get(f"{pipeline.url}/v2/models/add/versions/1/core").json()["inputs"][0]["name"] == "INPUT0"
    core_config = httpx.get(f"{pipeline.url}/v2/models/add/core/config").json()
    assert core_config == direct.get_model_config("add")
    assert httpx.get(f"{pipeline.url}/v2/models/nosuch/core").json()["code"] == "model_not_found"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_unchanged_tritonclient_through_the_pipeline(pipeline: Deployment, binary: bool) -> None:
    client = _client(pipeline)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("score", "label")]
    result = client.infer("add", [_words([b"tiny", "gr\u00fcn".encode()], binary)], outputs=outputs)
    score = result.as_numpy("score")
    assert score.dtype == np.float64 and score.tolist() == [5.0, 5.0]  # len + 1: the script got str values
    label = result.as_numpy("label").tolist()  # tritonclient gives str from JSON, bytes from binary
    assert [x.decode() if isinstance(x, bytes) else x for x in label] == ["long"]
    # Without a list of outputs: the declared ones, never the script's undeclared extras.
    plain = client.infer("add", [_words([b"a"], binary)])
    assert {o["name"] for o in plain.get_response()["outputs"]} == {"score", "label"}


def test_bytes_that_are_not_utf8_reach_the_script_as_bytes(pipeline: Deployment) -> None:
    result = _client(pipeline).infer("add", [_words([b"\xff\xfe", b"ok"], binary=True)])
    assert result.as_numpy("score").tolist() == [2.0, 3.0]  # bytes: no +1; str: +1


def test_invoke_gives_the_script_the_same_values(pipeline: Deployment) -> None:
    r = httpx.post(f"{pipeline.url}/v1/models/add/invoke", json={"inputs": {"words": ["tiny", "gr\u00fcn"]}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["score"] == [5.0, 5.0]
    assert r.json()["outputs"]["undeclared"] == 1  # invoke answers JSON: everything the script returned
    one = httpx.post(f"{pipeline.url}/v1/models/add/invoke", json={"inputs": {"words": "abc"}})
    assert one.json()["outputs"]["score"] == [4.0]


def test_requests_are_checked_against_the_signature(pipeline: Deployment) -> None:
    client = _client(pipeline)
    wrong = httpclient.InferInput("INPUT0", [1, 2], "FP32")
    wrong.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(InferenceServerException) as exc:
        client.infer("add", [wrong])
    assert "unknown input 'INPUT0'" in str(exc.value) and "words (BYTES [-1])" in str(exc.value)
    typed = httpclient.InferInput("words", [2], "INT32")
    typed.set_data_from_numpy(np.ones(2, dtype=np.int32))
    with pytest.raises(InferenceServerException, match="is INT32, the pipeline takes BYTES"):
        client.infer("add", [typed])
    ranked = httpclient.InferInput("words", [1, 1], "BYTES")
    ranked.set_data_from_numpy(np.array([[b"a"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match=r"has shape \[1, 1\], the pipeline takes \[-1\]"):
        client.infer("add", [ranked])
    for inputs, message in (({"other": "x"}, "unknown input 'other'"), ({"words": 5}, "must be text"),
                            ({"words": ["a", 5]}, "must be text")):
        r = httpx.post(f"{pipeline.url}/v1/models/add/invoke", json={"inputs": inputs})
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]["message"]
        assert r.json()["error"]["field"].startswith("inputs.")
