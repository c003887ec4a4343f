"""The gateway in front of the real Triton: v2 REST (with tritonclient.http), invoke, SSE, and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium.local.tritonserver import TritonServer

A = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.full((2, 3), 10, dtype=np.float32)


@pytest.fixture(scope="module")
def gw(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = base_spec("add", gateway={"maxRequestBytes": 4096, "requestTimeoutSeconds": 5})
    dep = deploy(tmp_path_factory.mktemp("gw"), triton, spec)
    yield dep
    dep.stop()


def _inputs(binary: bool = True) -> list[httpclient.InferInput]:
    i0 = httpclient.InferInput("INPUT0", list(A.shape), "FP32")
    i0.set_data_from_numpy(A, binary_data=binary)
    i1 = httpclient.InferInput("INPUT1", list(B.shape), "FP32")
    i1.set_data_from_numpy(B, binary_data=binary)
    return [i0, i1]


def _client(url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url.removeprefix("http://"))


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_through_gateway_equals_direct(gw: Deployment, triton: TritonServer, binary: bool) -> None:
    direct = _client(triton.http_url).infer("add", _inputs(binary))
    via = _client(gw.url).infer("add", _inputs(binary))
    for name in ("SUM", "DIFF"):
        np.testing.assert_array_equal(via.as_numpy(name), direct.as_numpy(name))
    np.testing.assert_array_equal(via.as_numpy("SUM"), A + B)


@pytest.mark.parametrize("binary", [False, True])
def test_v2_answer_is_tritons_own_when_nothing_needs_the_tensors(gw: Deployment, triton: TritonServer,
                                                                  binary: bool) -> None:
    """No stage, no cache: the request goes to Triton as sent, and Triton's answer comes back byte for byte."""
    inputs = _inputs(binary)
    outputs = [httpclient.InferRequestedOutput("SUM", binary_data=binary)]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(inputs, outputs, request_id="r-7")
    headers = {"Inference-Header-Content-Length": str(header_length)} if header_length else {}
    direct = httpx.post(f"{triton.http_url}/v2/models/add/infer", content=body, headers=headers)
    via = httpx.post(f"{gw.url}/v2/models/add/infer", content=body, headers=headers)
    assert direct.status_code == via.status_code == 200
    assert via.content == direct.content
    assert via.headers.get("Inference-Header-Content-Length") == direct.headers.get("Inference-Header-Content-Length")
    assert via.headers["X-Tritium-Revision"] == "r1"


def test_infinite_results_are_null_in_json_answers(gw: Deployment, triton: TritonServer) -> None:
    """3e38 + 3e38 overflows FP32: Triton writes `Infinity`, which is not JSON; the gateway writes null."""
    body = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 2], "data": [3e38, 1]}
                       for n in ("INPUT0", "INPUT1")]}
    direct = httpx.post(f"{triton.http_url}/v2/models/add/infer", json=body)
    assert b"Infinity" in direct.content  # what the gateway corrects (if Triton changes, this test says so)
    via = httpx.post(f"{gw.url}/v2/models/add/infer", json=body)
    assert via.status_code == 200
    outputs = {o["name"]: o["data"] for o in orjson.loads(via.content)["outputs"]}  # strict JSON parses it
    assert outputs["SUM"] == [None, 2.0] and outputs["DIFF"] == [0.0, 0.0]
    binary = _client(gw.url).infer("add", [_tensor(n, [[3e38, 1]]) for n in ("INPUT0", "INPUT1")])
    assert np.isinf(binary.as_numpy("SUM")[0, 0])  # exact values: the binary extension


def _tensor(name: str, value: list[list[float]]) -> httpclient.InferInput:
    arr = np.array(value, dtype=np.float32)
    tensor = httpclient.InferInput(name, list(arr.shape), "FP32")
    tensor.set_data_from_numpy(arr, binary_data=True)
    return tensor


def test_tritonclient_metadata_readiness_and_output_selection(gw: Deployment, triton: TritonServer) -> None:
    client = _client(gw.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("add") and client.is_model_ready("add", "1")
    assert client.get_model_metadata("add") == _client(triton.http_url).get_model_metadata("add")
    assert client.get_model_config("add")["max_batch_size"] == 8
    outputs = [httpclient.InferRequestedOutput("DIFF", binary_data=False)]
    result = client.infer("add", _inputs(), outputs=outputs, request_id="req-7", model_version="1")
    resp = result.get_response()
    assert [o["name"] for o in resp["outputs"]] == ["DIFF"]
    assert resp["id"] == "req-7" and resp["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("DIFF"), A - B)


def test_invoke_equals_direct_and_carries_headers(gw: Deployment, triton: TritonServer) -> None:
    direct = _client(triton.http_url).infer("add", _inputs())
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": A.tolist(), "INPUT1": B.tolist()}},
                   headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "add" and body["revision"] == "r1" and body["text"] is None
    np.testing.assert_array_equal(np.array(body["outputs"]["SUM"], np.float32), direct.as_numpy("SUM"))
    assert r.headers["X-Request-Id"] == "abc-123"
    assert r.headers["X-Tritium-Revision"] == "r1"
    assert "X-Tritium-Cache" not in r.headers  # the cache is off here
    generated = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1], "INPUT1": [2]}})
    assert len(generated.headers["X-Request-Id"]) >= 16
    assert generated.json()["outputs"]["SUM"] == [[3.0]]  # the batch dimension is added from the model


def test_sse_stream_of_a_decoupled_model(gw: Deployment) -> None:
    with httpx.stream("POST", f"{gw.url}/v1/models/stream/stream",
                      json={"inputs": {"PROMPT": "tokens arrive one by one"}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[-1].startswith("event: done")
    data = [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(d["text"] for d in data) == "tokens arrive one by one"
    assert [d["outputs"]["INDEX"] for d in data] == [[0], [1], [2], [3], [4]]


def test_invoke_on_a_streaming_model_says_to_stream(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/stream/invoke", json={"inputs": {"PROMPT": "x"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "streaming_model"


def _error(r: httpx.Response) -> dict:
    err = r.json()["error"]
    assert err["request_id"] == r.headers["X-Request-Id"]
    return err


@pytest.mark.parametrize(("body", "field"), [
    ({"inputs": {"INPUT0": [1, 2], "NOPE": [1]}}, "inputs.NOPE"),
    ({"inputs": {"INPUT0": ["a"], "INPUT1": [1]}}, "inputs.INPUT0"),
    ({"inputs": {"INPUT0": [1, 2], "INPUT1": [1, 2]}, "parameters": [1]}, "parameters"),
    ({"input": {}}, "input"),
    ({"parameters": {}}, "inputs"),
])
def test_invoke_400_names_the_field(gw: Deployment, body: dict, field: str) -> None:
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json=body)
    assert r.status_code == 400
    assert _error(r)["field"] == field


_V2_INPUT1 = {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}


@pytest.mark.parametrize("body", [
    # Found by a black-box probe: each was a 500 (the gateway's, or Triton's "model_error").
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [True, False]}, _V2_INPUT1]},
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}, _V2_INPUT1], "id": 5},
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}, _V2_INPUT1],
     "parameters": {"priority": -5}},
])
def test_v2_bodies_triton_cannot_parse_are_400(gw: Deployment, body: dict) -> None:  # type: ignore[type-arg]
    r = httpx.post(f"{gw.url}/v2/models/add/infer", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"]  # the gateway's own check or Triton's parse error, naming the field


@pytest.mark.parametrize("inputs", [
    {"INPUT0": [2**64, 1], "INPUT1": [1, 2]},  # a big integer is a fine FP32 (as INT64 it is a 400: unit test)
    {"INPUT0": [], "INPUT1": []},  # zero-size tensors are answered (the gateway crashed on them: a 500)
])
def test_invoke_of_edge_values_is_answered_not_a_500(gw: Deployment, inputs: dict) -> None:  # type: ignore[type-arg]
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    total = np.asarray(r.json()["outputs"]["SUM"]).reshape(-1)
    assert total.size == len(inputs["INPUT0"])


def test_an_overlong_model_name_is_a_400(gw: Deployment) -> None:
    """Names of ~8 KB overflowed the gRPC metadata to Triton (answered 503 or 429)."""
    r = httpx.post(f"{gw.url}/v1/models/{'m' * 9000}/invoke", json={"inputs": {"INPUT0": [1.0]}})
    assert r.status_code == 400 and _error(r)["field"] == "model", r.text
    r = httpx.post(f"{gw.url}/v2/models/{'m' * 9000}/infer", json={"inputs": []})
    assert r.status_code == 400 and r.json()["field"] == "model", r.text  # the v2 error shape


def test_triton_rejection_is_400_naming_the_input(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [[1.0] * 9] * 9}})
    assert r.status_code == 400
    assert _error(r)["field"].startswith("inputs")


def test_v2_bad_requests(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v2/models/add/infer", content=b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert isinstance(r.json()["error"], str)  # the v2 error shape Triton clients parse
    bad_shape = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}
    r = httpx.post(f"{gw.url}/v2/models/add/infer", json=bad_shape)
    assert r.status_code == 400 and r.json()["field"] == "inputs[0].data"
    with pytest.raises(InferenceServerException, match=r"unknown model|not served"):
        _client(gw.url).infer("nope", _inputs())


def test_413_over_max_request_bytes(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [0.5] * 2000, "INPUT1": [1]}})
    assert r.status_code == 413 and _error(r)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield b'{"inputs": {"INPUT0": ['
        for _ in range(500):
            yield b"1.0, 2.0, 3.0,"
        yield b"1]}}"

    r = httpx.post(f"{gw.url}/v1/models/add/invoke", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_415_unsupported_content_type(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415 and _error(r)["field"] == "Content-Type"
    r = httpx.post(f"{gw.url}/v2/models/add/infer", content=b"<x/>", headers={"Content-Type": "text/html"})
    assert r.status_code == 415


def test_400_an_invoke_body_with_a_misspelled_field_suggests_the_right_one(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"input": {"INPUT0": [1.0]}})
    assert r.status_code == 400 and _error(r)["field"] == "input"
    assert "did you mean 'inputs'?" in _error(r)["message"], r.text
    r = httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1.0]}, "colour": "blue"})
    assert r.status_code == 400 and "inputs and parameters" in _error(r)["message"], r.text


def test_404_unknown_model_and_path(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/nope/invoke", json={"inputs": {"x": [1]}})
    assert r.status_code == 404 and _error(r)["code"] == "model_not_found"
    assert httpx.get(f"{gw.url}/v2/models/nope/ready").status_code == 404
    r = httpx.get(f"{gw.url}/v2/models/nope")
    assert r.status_code == 404
    body = r.json()  # the v2 shape, with the same details as every other error
    assert body["code"] == "model_not_found" and body["request_id"] == r.headers["X-Request-Id"], body
    assert "'nope'" in body["error"]
    r = httpx.get(f"{gw.url}/v2/models/nope/config")
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"
    r = httpx.get(f"{gw.url}/no/such/path")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_504_deadline_from_header_and_400_for_a_bad_one(gw: Deployment) -> None:
    r = httpx.post(f"{gw.url}/v1/models/slow/invoke", json={"inputs": {"SECONDS": [1.5]}},
                   headers={"X-Request-Timeout": "200m"})
    assert r.status_code == 504 and _error(r)["code"] == "deadline_exceeded"
    assert r.elapsed.total_seconds() < 1.2
    r = httpx.post(f"{gw.url}/v1/models/slow/invoke", json={"inputs": {"SECONDS": [0.01]}},
                   headers={"X-Request-Timeout": "soon"})
    assert r.status_code == 400 and _error(r)["field"] == "X-Request-Timeout"


def test_504_from_the_default_timeout(triton: TritonServer, tmp_path: Path) -> None:
    dep = deploy(tmp_path, triton, base_spec("slow", gateway={"requestTimeoutSeconds": 0.3}), name="slow")
    try:
        # Passed through to Triton (no stage, no cache): the exchange itself is bounded by the deadline.
        r = httpx.post(f"{dep.url}/v2/models/slow/infer",
                       json={"inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
        assert r.status_code == 504 and r.json()["code"] == "deadline_exceeded"
        assert r.elapsed.total_seconds() < 0.9
        r = httpx.post(f"{dep.url}/v2/models/slow/infer", headers={"X-Request-Timeout": "2"},
                       json={"inputs": [{"name": "SECONDS", "datatype": "FP32", "shape": [1], "data": [0.5]}]})
        assert r.status_code == 200, r.text  # the connection the timeout closed is replaced
    finally:
        dep.stop()


def test_metrics_count_requests_by_model_and_code(gw: Deployment) -> None:
    httpx.post(f"{gw.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1], "INPUT1": [2]}})
    text = httpx.get(gw.metrics_url).text
    assert 'tritium_gateway_requests_total{code="200",endpoint="invoke",model="add"}' in text
    assert 'tritium_gateway_requests_total{code="400",endpoint="invoke",model="add"}' in text
    assert "tritium_gateway_request_duration_seconds_bucket" in text


def test_grpc_inference_path(triton: TritonServer, tmp_path: Path) -> None:
    """TRITIUM_TRITON_PROTOCOL=grpc: unary inference over the gRPC channel gives the same answers."""
    dep = deploy(tmp_path, triton, base_spec("add"), env={"TRITIUM_TRITON_PROTOCOL": "grpc"}, name="grpc")
    try:
        via = _client(dep.url).infer("add", _inputs())
        np.testing.assert_array_equal(via.as_numpy("SUM"), A + B)
        r = httpx.post(f"{dep.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [[1.0] * 9] * 9}})
        assert r.status_code == 400 and r.json()["error"]["field"].startswith("inputs")
        r = httpx.post(f"{dep.url}/v1/models/nope/invoke", json={"inputs": {"x": [1]}})
        assert r.status_code == 404
        r = httpx.post(f"{dep.url}/v1/models/slow/invoke", json={"inputs": {"SECONDS": [1.0]}},
                       headers={"X-Request-Timeout": "0.2"})
        assert r.status_code == 504
    finally:
        dep.stop()


def test_repository_index_is_listed_but_loading_is_not_exposed(gw: Deployment) -> None:
    """Clients may list the models (tritonclient's get_model_repository_index); they may not load or unload."""
    index = _client(gw.url).get_model_repository_index()
    assert "add" in {m["name"] for m in index}
    for action in ("load", "unload"):
        r = httpx.post(f"{gw.url}/v2/repository/models/add/{action}", json={})
        assert r.status_code in (404, 405), r.text
    assert httpx.post(f"{gw.url}/v2/models/add/infer", json={"inputs": []}).status_code == 400  # still serving
