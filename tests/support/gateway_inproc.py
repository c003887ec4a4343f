"""The gateway in this test's event loop, on a loopback port, in front of a stand-in Triton.

The stand-in answers Triton's HTTP API for the `add` model only as far as the gateway's
pass-through path needs (no stage, no cache: v2 infer goes to Triton byte for byte), so the
security layers are tested through the real server, dispatcher and handlers without a Triton
binary. What is tested here is the gateway's side of the request, never Triton's answer.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from tests.support.dataplane import base_spec, write_config
from tritium.dataplane.config import load_config
from tritium.dataplane.gateway import Gateway, GatewaySettings, build_handler, error_body
from tritium.dataplane.http.server import HttpServer, Request, Response
from tritium.dataplane.security.layers import SecuritySettings
from tritium.local.tritonserver import free_port

HOST = "127.0.0.1"
INFER_BODY = orjson.dumps({"inputs": [
    {"name": "INPUT0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
    {"name": "INPUT1", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]},
]})
_ANSWER = orjson.dumps({"model_name": "add", "model_version": "1", "outputs": [
    {"name": "SUM", "datatype": "FP32", "shape": [1, 2], "data": [4, 6]}]})
_METADATA = orjson.dumps({"name": "add", "versions": ["1"], "platform": "python"})


async def _fake_triton(request: Request) -> Response:
    if request.method == "POST" and request.path in ("/v2/models/add/infer", "/v2/models/add/versions/1/infer"):
        return Response(200, _ANSWER, {"Content-Type": "application/json"})
    if request.method == "GET" and request.path == "/v2/models/add":
        return Response(200, _METADATA, {"Content-Type": "application/json"})
    return Response(404, b'{"error": "unknown model"}', {"Content-Type": "application/json"})


@asynccontextmanager
async def serving(directory: Path, security: dict[str, Any], settings: SecuritySettings | None = None,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Gateway]]:
    """(gateway URL, gateway) with spec.security = ``security``; everything stops on exit.

    With ``tls`` (dataplane/security/tls.py's listening context) the API port is HTTPS, as in a pod.
    """
    triton = HttpServer(_fake_triton)
    triton_port = free_port()
    await triton.listen(HOST, triton_port)
    config = load_config(write_config(directory, base_spec("add", security=security)))
    gateway = Gateway(GatewaySettings(config=config, triton_grpc=f"{HOST}:1", triton_http=f"http://{HOST}:{triton_port}",
                                      security=settings))
    await gateway.start()
    api = HttpServer(build_handler(gateway), max_body=gateway.max_bytes, error_body=error_body)
    port = free_port()
    try:
        await api.listen(HOST, port, tls)
        yield f"{'https' if tls else 'http'}://{HOST}:{port}", gateway
    finally:
        await api.shutdown(grace=1.0)
        await gateway.stop()
        await triton.shutdown(grace=1.0)
