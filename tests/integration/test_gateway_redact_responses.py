"""spec.security.redactResponses with real processes: a real Triton, a real post stage, the gateway.

The post script writes personal data into each kind of answer it can give (a BYTES output, a JSON
value, the text); the stream model echoes a prompt word by word. With redactResponses the client
sees tags where the data was, and the numbers as the model computed them; without it, the data.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.support.dataplane import Deployment, base_spec, deployed
from tritium.local.tritonserver import TritonServer

POST = '''
import logging
import sys

import numpy as np

def postprocess(outputs, parameters):
    print("post saw", parameters.get("who", "nobody"), flush=True)
    print("to stderr:", parameters.get("who", "nobody"), file=sys.stderr, flush=True)
    logging.getLogger("script").warning("logged %s", parameters.get("who", "nobody"))
    return {"SUM": outputs["SUM"], "MESSAGE": np.array([b"reply to alice@example.com"], dtype=object),
            "account": {"iban": "DE89 3704 0044 0532 0130 00"}, "text": "card 4111 1111 1111 1111 on file"}
'''
SECURITY = {"redactPII": True, "redactResponses": True}
INVOKE = {"inputs": {"INPUT0": [[1, 2]], "INPUT1": [[3, 4]]}}
V2 = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
                 {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]}]}


@pytest.fixture(scope="module")
def services(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Deployment]]:
    d = tmp_path_factory.mktemp("redact-responses")
    (d / "post.py").write_text(POST)
    post = {"script": {"path": str(d / "post.py")}}
    specs = {
        "redacted": base_spec("add", postprocess=post, security=SECURITY),
        "plain": base_spec("add", postprocess=post, security={"redactPII": True}),
        "stream": base_spec("stream", security=SECURITY),
    }
    with deployed(d, triton, specs, "redact") as deps:
        yield deps


def test_invoke_answers_are_redacted_and_the_numbers_kept(services: dict[str, Deployment]) -> None:
    r = httpx.post(f"{services['redacted'].url}/v1/models/add/invoke", json=INVOKE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"]["SUM"] == [[4.0, 6.0]]
    assert body["outputs"]["MESSAGE"] == ["reply to [email]"]
    assert body["outputs"]["account"] == {"iban": "[iban]"}
    assert body["text"] == "card [card] on file"
    plain = httpx.post(f"{services['plain'].url}/v1/models/add/invoke", json=INVOKE).json()
    assert plain["outputs"]["MESSAGE"] == ["reply to alice@example.com"]  # redactPII alone: the logs only
    assert plain["text"] == "card 4111 1111 1111 1111 on file"


def test_v2_answers_are_redacted_json_and_binary(services: dict[str, Deployment]) -> None:
    url = f"{services['redacted'].url}/v2/models/add/infer"
    outputs = {o["name"]: o for o in httpx.post(url, content=orjson.dumps(V2)).json()["outputs"]}
    assert outputs["MESSAGE"]["data"] == ["reply to [email]"]
    assert outputs["SUM"]["data"] == [4.0, 6.0]
    # The binary extension: the BYTES element is length-prefixed, redacted before it is framed.
    wanted = {**V2, "outputs": [{"name": "MESSAGE", "parameters": {"binary_data": True}}]}
    r = httpx.post(url, content=orjson.dumps(wanted))
    assert r.status_code == 200, r.text
    assert b"reply to [email]" in r.content and b"alice@example.com" not in r.content


def test_streamed_tokens_are_redacted(services: dict[str, Deployment]) -> None:
    with httpx.stream("POST", f"{services['stream'].url}/v1/models/stream/stream",
                      json={"inputs": {"PROMPT": "mail alice@example.com now"}}) as r:
        assert r.status_code == 200
        raw = b"".join(r.iter_raw())
    assert b"alice@example.com" not in raw
    events = [e for e in raw.decode().split("\n\n") if e.startswith("data: ")]
    assert "".join(orjson.loads(e.removeprefix("data: "))["text"] for e in events) == "mail [email] now"


def test_what_a_stage_script_prints_or_logs_is_redacted(services: dict[str, Deployment]) -> None:
    """redactPII covers the stages' output too: they run user code, which may print what it got."""
    for name in ("redacted", "plain"):  # redactPII, with and without redactResponses
        dep = services[name]
        r = httpx.post(f"{dep.url}/v1/models/add/invoke", json={**INVOKE, "parameters": {"who": "eve@example.net"}})
        assert r.status_code == 200, r.text
        out = dep.stages["post"].output()
        assert "eve@example.net" not in out, out[-2000:]
        assert "post saw [email]" in out and "to stderr: [email]" in out and "logged [email]" in out, out[-2000:]
