"""Stage sidecars for real: built-in and script stages as processes between the gateway and Triton."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium.dataplane.tensors import HEADER_LENGTH, parse_v2_request
from tritium.local.tritonserver import TritonServer

PRE_SCRIPT = '''
import time

import numpy as np

SCALE = None

def setup(options):
    global SCALE
    SCALE = float(options["scale"])

def preprocess(inputs, parameters):
    if "a" not in inputs:
        err = ValueError("give 'a' (a list of numbers)")
        err.field = "inputs.a"
        raise err
    if parameters.get("started"):  # a slow request, for the test that others pass it
        open(parameters["started"], "w").close()
        time.sleep(float(parameters["sleep"]))
    a = np.asarray(inputs["a"], dtype=np.float64) * SCALE
    return {"INPUT0": a[None, :], "INPUT1": np.full((1, a.size), float(parameters.get("offset", 0)))}
'''

POST_SCRIPT = '''
import numpy as np

def postprocess(outputs, parameters):
    total = float(np.asarray(outputs["SUM"]).sum())
    return {"total": total, "sum": outputs["SUM"], "text": f"total is {total:g}"}
'''


@pytest.fixture(scope="module")
def builtin(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    schema = {
        "type": "object", "required": ["INPUT0", "INPUT1"],
        "properties": {"INPUT0": {"type": "array", "items": {"type": "number"}},
                       "INPUT1": {"type": "array", "items": {"type": "number", "minimum": 0}}},
    }
    spec = base_spec(
        "add",
        preprocess={"builtin": {"format": "json"}, "inputSchema": schema},
        postprocess={"builtin": {"format": "json", "topK": {"output": "SUM", "k": 2}},
                     "filter": {"include": ["SUM", "SUM_indices"], "rename": {"SUM": "top"}}},
    )
    dep = deploy(tmp_path_factory.mktemp("builtin"), triton, spec, name="builtin")
    yield dep
    dep.stop()


@pytest.fixture(scope="module")
def scripted(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = tmp_path_factory.mktemp("scripted")
    (d / "pre.py").write_text(PRE_SCRIPT)
    (d / "post.py").write_text(POST_SCRIPT)
    spec = base_spec(
        "add",
        preprocess={"script": {"path": str(d / "pre.py"), "options": {"scale": "2"}}},
        postprocess={"script": {"path": str(d / "post.py")}},
    )
    dep = deploy(d, triton, spec, name="scripted")
    yield dep
    dep.stop()


def test_builtin_stages_topk_and_filter(builtin: Deployment) -> None:
    r = httpx.post(f"{builtin.url}/v1/models/add/invoke",
                   json={"inputs": {"INPUT0": [1, 9, 5, 7], "INPUT1": [0, 0, 0, 1]}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out == {"top": [[9.0, 8.0]], "SUM_indices": [[1, 3]]}


def test_builtin_schema_violation_names_the_field(builtin: Deployment) -> None:
    r = httpx.post(f"{builtin.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1], "INPUT1": [-1]}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["field"] == "inputs.INPUT1[0]" and err["code"] == "schema_violation"
    r = httpx.post(f"{builtin.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1]}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "inputs.INPUT1"


def test_v2_client_through_stages(builtin: Deployment) -> None:
    client = httpclient.InferenceServerClient(builtin.url.removeprefix("http://"))
    a = np.array([[3, 1, 2]], dtype=np.float32)
    inputs = [httpclient.InferInput("INPUT0", [1, 3], "FP32"), httpclient.InferInput("INPUT1", [1, 3], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    result = client.infer("add", inputs)
    np.testing.assert_array_equal(result.as_numpy("top"), [[6, 4]])
    np.testing.assert_array_equal(result.as_numpy("SUM_indices"), [[0, 2]])


def test_stage_metrics_and_health(builtin: Deployment) -> None:
    pre = builtin.stages["pre"].health_url.removesuffix("/healthz")
    assert httpx.get(f"{pre}/healthz").json()["stage"] == "pre"
    assert 'tritium_stage_requests_total{code="200",stage="pre"}' in httpx.get(f"{pre}/metrics").text


def _stage_samples(dep: Deployment, stage: str) -> tuple[str, dict[tuple[str, str], float]]:
    """What Prometheus reads from a stage's TCP port (the pod's pre-http / post-http): the content
    type and the tritium_stage_* samples by (name, code)."""
    url = dep.stages[stage].health_url.removesuffix("/healthz") + "/metrics"
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    samples = {(s.name, s.labels.get("code", "")): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples
               if s.name.startswith("tritium_stage_") and s.labels.get("stage") == stage}
    assert not any(s.startswith("tritium_gateway_") for s in r.text.splitlines()), "the stage's own registry"
    return r.headers["content-type"], samples


def test_stage_metrics_count_a_request_made_through_the_gateway(builtin: Deployment) -> None:
    before = {stage: _stage_samples(builtin, stage)[1] for stage in ("pre", "post")}
    r = httpx.post(f"{builtin.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}})
    assert r.status_code == 200, r.text
    for stage in ("pre", "post"):
        content_type, after = _stage_samples(builtin, stage)
        assert content_type == CONTENT_TYPE_LATEST
        for key in (("tritium_stage_requests_total", "200"), ("tritium_stage_duration_seconds_count", "")):
            assert after[key] - before[stage].get(key, 0.0) == 1.0, (stage, key)


def test_script_stages(scripted: Deployment) -> None:
    r = httpx.post(f"{scripted.url}/v1/models/add/invoke",
                   json={"inputs": {"a": [1, 2, 3]}, "parameters": {"offset": 1}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"] == {"total": 15.0, "sum": [[3.0, 5.0, 7.0]]}
    assert body["text"] == "total is 15"


def test_script_value_error_is_400(scripted: Deployment) -> None:
    r = httpx.post(f"{scripted.url}/v1/models/add/invoke", json={"inputs": {"b": [1]}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["field"] == "inputs.a" and "give 'a'" in err["message"]


def test_a_form_encoded_body_is_read_as_json(scripted: Deployment) -> None:
    """curl -d without a Content-Type sends application/x-www-form-urlencoded."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = httpx.post(f"{scripted.url}/v1/models/add/invoke", content=b"text=hi", headers=form)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["field"] == "body" and err["message"].startswith("body is not JSON"), err
    assert err["request_id"] == r.headers["X-Request-Id"]
    r = httpx.post(f"{scripted.url}/v1/models/add/invoke", content=b'{"inputs": {"a": [1]}}', headers=form)
    assert r.status_code == 200 and r.json()["outputs"]["total"] == 2.0, r.text


def test_a_slow_script_call_holds_up_neither_other_requests_nor_the_probe(
        scripted: Deployment, tmp_path: Path) -> None:
    """A plain script function runs in the stage's thread pool: the event loop stays free."""
    url = f"{scripted.url}/v1/models/add/invoke"
    started = tmp_path / "started"
    slow_answer: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: slow_answer.append(httpx.post(
        url, json={"inputs": {"a": [1]}, "parameters": {"sleep": 6, "started": str(started)}}, timeout=60)))
    slow.start()
    try:
        while not started.exists():  # the slow call is inside the script now
            assert slow.is_alive(), slow_answer
            time.sleep(0.01)
        probe = httpx.get(scripted.stages["pre"].health_url)
        quick = httpx.post(url, json={"inputs": {"a": [1, 2]}})
        still_held = slow.is_alive()
    finally:
        slow.join(60)
    assert probe.status_code == 200
    assert quick.status_code == 200 and quick.json()["outputs"]["total"] == 6.0, quick.text
    assert still_held, "the slow call ended before the quick one was answered: nothing was shown"
    assert slow_answer[0].status_code == 200, slow_answer[0].text


def test_stage_crash_is_503_naming_the_stage(scripted: Deployment) -> None:
    scripted.stages["post"].kill()
    r = httpx.post(f"{scripted.url}/v1/models/add/invoke", json={"inputs": {"a": [1]}})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "stage_unavailable" and err["field"] == "post" and "post stage" in err["message"]
    assert r.headers["Retry-After"]
    ready = httpx.get(f"{scripted.url}/v2/health/ready")
    assert ready.status_code == 503 and "post" in ready.text


def test_xml_in_and_out(triton: TritonServer, tmp_path: Path) -> None:
    spec = base_spec("add", preprocess={"builtin": {"format": "xml"}}, postprocess={"builtin": {"format": "xml"}})
    dep = deploy(tmp_path, triton, spec, name="xml")
    try:
        xml = b'<request><input name="INPUT0">1 2 3</input><input name="INPUT1">1, 1, 1</input></request>'
        r = httpx.post(f"{dep.url}/v1/models/add/invoke", content=xml, headers={"Content-Type": "application/xml"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/xml")
        assert '<output name="SUM" datatype="FP32" shape="1,3">2.0 3.0 4.0</output>' in r.text
        bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                b'<request><input name="INPUT0">&b;</input></request>')
        r = httpx.post(f"{dep.url}/v1/models/add/invoke", content=bomb, headers={"Content-Type": "application/xml"})
        assert r.status_code == 400 and "forbidden XML" in r.json()["error"]["message"]
        r = httpx.post(f"{dep.url}/v1/models/add/invoke", json={"inputs": {"INPUT0": [1]}})
        assert r.status_code == 415
    finally:
        dep.stop()


def test_binary_in_and_out(triton: TritonServer, tmp_path: Path) -> None:
    spec = base_spec("identity", preprocess={"builtin": {"format": "binary"}},
                     postprocess={"builtin": {"format": "binary"}})
    dep = deploy(tmp_path, triton, spec, name="binary")
    try:
        x = np.array([1.5, -2.0, 3.25], dtype=np.float32)
        url = f"{dep.url}/v1/models/identity/invoke"
        for content, ctype in ((x.tobytes(), "application/octet-stream"),
                               (base64.b64encode(x.tobytes()), "text/plain")):
            r = httpx.post(url, content=content, headers={"Content-Type": ctype})
            assert r.status_code == 200, r.text
            resp = parse_v2_request_like(r)
            np.testing.assert_array_equal(resp["OUTPUT0"].reshape(-1), x)
        # the KServe v2 binary tensor extension as the payload
        header = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,3],"parameters":{"binary_data_size":12}}]}'
        r = httpx.post(url, content=header + x.tobytes(),
                       headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(parse_v2_request_like(r)["OUTPUT0"].reshape(-1), x)
        r = httpx.post(url, content=b"\x00\x01\x02", headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "inputs.INPUT0"
    finally:
        dep.stop()


def parse_v2_request_like(r: httpx.Response) -> dict[str, np.ndarray]:
    """A binary v2 response has the request's framing with outputs instead of inputs."""
    length = int(r.headers[HEADER_LENGTH])
    body = r.content.replace(b'"outputs"', b'"inputs" ', 1)
    return parse_v2_request(body, length).inputs


def test_stages_with_nothing_to_do_are_not_called(triton: TritonServer, tmp_path: Path) -> None:
    """Plain JSON stages hand v2 tensors back unchanged: the gateway answers v2 without them, while
    invoke (JSON values -> tensors in pre, xml formatting in post) still goes through each stage."""
    spec = base_spec("add", preprocess={"builtin": {"format": "json"}}, postprocess={"builtin": {"format": "xml"}})
    dep = deploy(tmp_path, triton, spec, name="skips")
    try:
        v2 = {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                         {"name": "INPUT1", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}
        invoke = {"inputs": {"INPUT0": [[1, 2]], "INPUT1": [[3, 4]]}}
        for stage in ("pre", "post"):
            assert httpx.post(f"{dep.url}/v1/models/add/invoke", json=invoke).status_code == 200
            dep.stages[stage].kill()
            r = httpx.post(f"{dep.url}/v2/models/add/infer", json=v2)
            assert r.status_code == 200, r.text
            assert {o["name"]: o["data"] for o in r.json()["outputs"]}["SUM"] == [4, 6]
            r = httpx.post(f"{dep.url}/v1/models/add/invoke", json=invoke)
            assert r.status_code == 503 and r.json()["error"]["field"] == stage, r.text
            dep.stages[stage].start()
    finally:
        dep.stop()


def _process_over_tcp(base: str) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """POST /v1/process at a stage's TCP port: a good message, a schema violation, a bad header."""
    from tritium.dataplane.tensors import STAGE_CONTENT_TYPE, pack_message

    model = {"name": "add", "max_batch_size": 8, "inputs": {"INPUT0": ["FP32", [-1, -1]], "INPUT1": ["FP32", [-1, -1]]}}
    good, length = pack_message({"mode": "json", "model": model, "parameters": {},
                                 "inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}})
    bad, bad_length = pack_message({"mode": "json", "model": model, "parameters": {}, "inputs": {"INPUT0": [1]}})
    return (httpx.post(f"{base}/v1/process", content=good,
                       headers={"Content-Type": STAGE_CONTENT_TYPE, HEADER_LENGTH: str(length)}),
            httpx.post(f"{base}/v1/process", content=bad, headers={HEADER_LENGTH: str(bad_length)}),
            httpx.post(f"{base}/v1/process", content=bad, headers={HEADER_LENGTH: "x"}))


def test_a_stage_without_a_socket_processes_messages_on_its_tcp_port(builtin: Deployment) -> None:
    """What a gateway given an http:// stage URL calls: the stage started without --socket."""
    from tests.support.dataplane import Proc
    from tritium.dataplane.tensors import unpack_message
    from tritium.local.tritonserver import free_port

    port = free_port()
    stage = Proc(["stage", "pre", "--spec", str(builtin.config), "--host", "127.0.0.1", "--port", str(port)],
                 f"http://127.0.0.1:{port}/healthz").start()
    try:
        good, violation, bad_header = _process_over_tcp(f"http://127.0.0.1:{port}")
    finally:
        stage.stop()
    assert good.status_code == 200, good.text
    _, tensors, _ = unpack_message(good.content, int(good.headers[HEADER_LENGTH]))
    assert tensors["INPUT1"].dtype == np.float32 and tensors["INPUT1"].ravel().tolist() == [3, 4]
    assert violation.status_code == 400 and violation.json()["error"]["code"] == "schema_violation"
    assert bad_header.status_code == 400 and bad_header.json()["error"]["field"] == HEADER_LENGTH


def test_a_stage_on_a_socket_processes_nothing_on_its_tcp_port(builtin: Deployment) -> None:
    """Wired as in a pod (--socket): even a loopback peer of the TCP port is refused, since behind a
    service mesh other pods' connections arrive from loopback too; the gateway's socket path works."""
    pre = builtin.stages["pre"].health_url.removesuffix("/healthz")
    for r in _process_over_tcp(pre):
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden" and "Unix socket" in r.json()["error"]["message"]
    assert httpx.get(f"{pre}/healthz").status_code == 200
    through = httpx.post(f"{builtin.url}/v2/models/add/infer", json={"inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
        {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]}]})
    assert through.status_code == 200, through.text
