"""A v2 request relayed as bytes through the stages answers exactly what the decoded path answers.

The decoded path is rebuilt here from the gateway's own steps (parse, pre in tensor mode, Triton's
request, Triton's answer, post in v2 mode, the client's answer); Triton is an identity model
written with the same encoder Triton's answers are parsed with. Both paths share one pair of
StageProcessors with real scripts, so only the relay's own work can make them differ.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritium.api.spec import InferenceServiceSpec
from tritium.dataplane.errors import ApiError
from tritium.dataplane.http.stage_client import StageClient
from tritium.dataplane.pipeline import Pipeline, Result
from tritium.dataplane.stages import v2_relay
from tritium.dataplane.stages.server import StageProcessor, StageService
from tritium.dataplane.tensors import (
    HTTP_ONLY_PARAMETERS,
    V2Request,
    encode_v2_request,
    encode_v2_response,
    pack_message,
    parse_v2_request,
    parse_v2_response,
)
from tritium.dataplane.triton import TritonHttp

MODEL = {"name": "m", "max_batch_size": 0, "inputs": {"x": ["FP32", [-1]], "t": ["BYTES", [-1]]}}

PRE = """
def preprocess(inputs, parameters):
    scale = parameters.get("scale", 2)
    return {"x": [v * scale for v in inputs["x"]], "t": [s.upper() for s in inputs["t"]]}
"""
POST = """
def postprocess(outputs, parameters):
    # The parameters it was given, named in an output: the client's answer encoding is not among them.
    return {"y": outputs["x"] + 1, "t": outputs["t"], "label": ",".join(sorted(parameters)) or "-",
            "text": "not in a v2 answer"}
"""


def _spec(tmp: Path) -> InferenceServiceSpec:
    (tmp / "pre.py").write_text(PRE)
    (tmp / "post.py").write_text(POST)
    return InferenceServiceSpec.model_validate({
        "model": {"name": "m", "storageUri": "file:///m", "format": "python"},
        "preprocess": {"script": {"path": str(tmp / "pre.py")}},
        "postprocess": {"script": {"path": str(tmp / "post.py")}},
    })


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[StageProcessor, StageProcessor]:
    spec = _spec(tmp_path_factory.mktemp("relay"))
    return StageProcessor("pre", spec), StageProcessor("post", spec)


def _triton(body: bytes, header_length: int) -> tuple[bytes, int | None]:
    """An identity model at version 3, answering every output in binary as Triton does when asked."""
    req = parse_v2_request(body, header_length)
    return encode_v2_response("m", "3", V2Request(id=None, inputs={}, parameters={"binary_data_output": True}),
                              req.inputs)


async def _decoded(pre: StageProcessor, post: StageProcessor, body: bytes, hl: int | None) -> tuple[bytes, int | None]:
    req = parse_v2_request(body, hl)
    params = {k: v for k, v in req.parameters.items() if k not in HTTP_ONLY_PARAMETERS}
    _, tensors, _ = await pre.process({"mode": "tensors", "model": MODEL, "parameters": params}, req.inputs, None)
    triton_body, triton_hl = encode_v2_request(tensors, None, "rid", params)
    answer, answer_hl = _triton(triton_body, triton_hl)
    triton_head, outputs = parse_v2_response(answer, answer_hl)
    head, out, _ = await post.process({"mode": "v2", "parameters": params}, outputs, None)
    result = Result(tensors=out, values=head.get("values") or {}, version=str(triton_head["model_version"]))
    return encode_v2_response("m", result.version or None, req, result.all_tensors())


async def _relayed(pre: StageProcessor, post: StageProcessor, body: bytes, hl: int | None) -> tuple[bytes, int | None]:
    asked, _, triton_body = await pre.process(
        {"mode": v2_relay.REQUEST_MODE, "model": MODEL, "request_id": "rid", "header_length": hl}, {}, body)
    answer, answer_hl = _triton(triton_body, asked["header_length"])
    # The header goes through the wire as JSON: what the stage gets is what orjson gives back.
    header = orjson.loads(orjson.dumps({
        "mode": v2_relay.ANSWER_MODE, "model_name": "m", "version": "", "header_length": answer_hl,
        "parameters": asked["parameters"], "request": asked["request"]}))
    head, _, payload = await post.process(header, {}, answer)
    return payload, head["header_length"]


def _body(x: list[float], t: list[str], binary_inputs: bool, outputs: list[tuple[str, bool]] | None,
          parameters: dict[str, Any], request_id: str | None) -> tuple[bytes, int | None]:
    head: dict[str, Any] = {"inputs": [], "parameters": parameters}
    if request_id is not None:
        head["id"] = request_id
    if outputs is not None:
        head["outputs"] = [{"name": n, "parameters": {"binary_data": b}} for n, b in outputs]
    if not binary_inputs:
        head["inputs"] = [{"name": "x", "datatype": "FP32", "shape": [len(x)], "data": x},
                          {"name": "t", "datatype": "BYTES", "shape": [len(t)], "data": t}]
        return orjson.dumps(head), None
    xs = np.asarray(x, np.float32).tobytes()
    ts = b"".join(len(s.encode()).to_bytes(4, "little") + s.encode() for s in t)
    head["inputs"] = [
        {"name": "x", "datatype": "FP32", "shape": [len(x)], "parameters": {"binary_data_size": len(xs)}},
        {"name": "t", "datatype": "BYTES", "shape": [len(t)], "parameters": {"binary_data_size": len(ts)}}]
    encoded = orjson.dumps(head)
    return encoded + xs + ts, len(encoded)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    x=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=5),
    t=st.lists(st.text(max_size=6), min_size=1, max_size=3),
    binary_inputs=st.booleans(),
    outputs=st.none() | st.lists(st.tuples(st.sampled_from(["y", "t", "label", "absent"]), st.booleans()),
                                 max_size=3, unique_by=lambda o: o[0]),
    binary_output=st.none() | st.booleans(),
    scale=st.none() | st.integers(-3, 3),
    request_id=st.none() | st.text(max_size=8),
)
def test_the_relay_answers_byte_for_byte_what_the_decoded_path_answers(
        stages: tuple[StageProcessor, StageProcessor], x: list[float], t: list[str], binary_inputs: bool,
        outputs: list[tuple[str, bool]] | None, binary_output: bool | None, scale: int | None,
        request_id: str | None) -> None:
    params: dict[str, Any] = {}
    if binary_output is not None:
        params["binary_data_output"] = binary_output
    if scale is not None:
        params["scale"] = scale
    body, hl = _body(x, t, binary_inputs, outputs, params, request_id)
    pre, post = stages
    expected = asyncio.run(_decoded(pre, post, body, hl))
    assert asyncio.run(_relayed(pre, post, body, hl)) == expected
    # And the answer is the scripts' work, not an echo: y = x * scale + 1 whenever it is sent.
    answer = parse_v2_response(*expected)
    if "y" in answer[1]:
        factor = 2 if scale is None else scale
        np.testing.assert_allclose(answer[1]["y"], np.asarray(x, np.float32) * factor + 1, rtol=1e-5)
    assert answer[0]["model_version"] == "3"


@pytest.mark.parametrize(("body", "hl", "field"), [
    (b'{"inputs": []}', None, "inputs"),
    (b"not json", None, "body"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}', None,
     "inputs[0].parameters"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": 3}', None, "outputs"),
])
def test_a_malformed_body_is_the_pre_stages_400_naming_the_field(
        stages: tuple[StageProcessor, StageProcessor], body: bytes, hl: int | None, field: str) -> None:
    pre, _ = stages
    with pytest.raises(ApiError) as err:
        asyncio.run(pre.process({"mode": v2_relay.REQUEST_MODE, "model": MODEL, "header_length": hl}, {}, body))
    assert err.value.status == 400 and err.value.field == field


def test_each_mode_belongs_to_its_own_stage(stages: tuple[StageProcessor, StageProcessor]) -> None:
    pre, post = stages
    for proc, mode in ((post, v2_relay.REQUEST_MODE), (pre, v2_relay.ANSWER_MODE)):
        with pytest.raises(ApiError) as err:
            asyncio.run(proc.process({"mode": mode}, {}, b"{}"))
        assert err.value.status == 400 and err.value.field == "mode"


def test_the_gateway_relays_only_when_both_stages_take_v2_and_nothing_reads_the_answer() -> None:
    pre, post, http = StageClient("pre", "unix:/nonexistent/pre"), StageClient("post", "unix:/nonexistent/post"), \
        TritonHttp("http://127.0.0.1:1")
    both = Pipeline(None, pre, post, http)  # type: ignore[arg-type]  # the gRPC client is not used here
    assert both.relays_v2
    both.redact = lambda result: result
    assert not both.relays_v2  # redaction reads the answer's tensors in the gateway
    assert not Pipeline(None, pre, None, http).relays_v2  # type: ignore[arg-type]
    assert not Pipeline(None, None, post, http).relays_v2  # type: ignore[arg-type]
    assert not Pipeline(None, pre, post, http, pre_skips_tensors=True).relays_v2  # type: ignore[arg-type]
    assert not Pipeline(None, pre, post, http, post_skips=frozenset({"v2"})).relays_v2  # type: ignore[arg-type]
    grpc_unary = object()
    assert not Pipeline(None, pre, post, grpc_unary).relays_v2  # type: ignore[arg-type]



@pytest.mark.parametrize("where", ["parameters", "outputs"])
def test_client_json_too_deep_to_write_again_is_a_400_not_a_stage_failure(
        stages: tuple[StageProcessor, StageProcessor], where: str) -> None:
    """orjson reads 1024 levels but writes 254: what the relay writes back out (Triton's request,
    the answer header for the post stage) is refused as the decoded path refuses it."""
    head: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]},
                                       {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    head.update({"parameters": {"p": "DEEP"}} if where == "parameters" else
                {"outputs": [{"name": "y", "parameters": {"p": "DEEP"}}]})
    body = orjson.dumps(head).replace(b'"DEEP"', b"[" * 300 + b"1" + b"]" * 300)  # orjson writes 254 at most
    message, length = pack_message({"mode": v2_relay.REQUEST_MODE, "model": MODEL, "header_length": None},
                                   None, body)
    status, answer, _ = asyncio.run(StageService(stages[0]).process(message, length, "rid"))
    error = orjson.loads(answer)["error"]
    assert status == 400 and error["field"] == "body" and "too deeply" in error["message"], error
