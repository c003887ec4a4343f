"""Retries, authentication errors, environment settings and TLS, observed through a scripted front server.

The front server is a real HTTP server on 127.0.0.1 that answers the next scripted replies
(503 with Retry-After, 429, 502, 401...) and forwards every other request to a real gateway in
front of a real Triton, recording what it received: retries are counted, not guessed.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dataplane import Deployment, base_spec, deploy
from tritium import InferenceClient
from tritium.client import (
    APIConnectionError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
)
from tritium.local.tritonserver import TritonServer

ADD = {"INPUT0": [1.0, 2.0], "INPUT1": [3.0, 4.0]}
FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.02)
Reply = tuple[int, dict[str, str], bytes]


def tritium_error(code: str, message: str, field: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "request_id": "front"}
    if field:
        err["field"] = field
    return json.dumps({"error": err}).encode()


class Front(ThreadingHTTPServer):
    """Scripted replies first, then forwarding to ``upstream``; records (method, path, headers) per request."""

    daemon_threads = True

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.script: deque[Reply] = deque()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.http = httpx.Client(base_url=upstream, timeout=10)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list[dict[str, str]]:
        return [h for m, _, h in self.seen if m == "POST"]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.http.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.server.script:
            status, headers, payload = self.server.script.popleft()
        else:
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            resp = self.server.http.request(self.command, self.path, content=body, headers=fwd)
            status, payload = resp.status_code, resp.content
            headers = {k: v for k, v in resp.headers.items()
                       if k.lower() in ("content-type", "x-request-id", "x-tritium-revision", "x-tritium-cache",
                                        "retry-after")}
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gw(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = deploy(tmp_path_factory.mktemp("sdkretry"), triton, base_spec("add"), name="sdkretry")
    yield dep
    dep.stop()


@pytest.fixture
def front(gw: Deployment) -> Iterator[Front]:
    server = Front(gw.url)
    yield server
    server.close()


UNAVAILABLE: Reply = (503, {"Content-Type": "application/json", "Retry-After": "1"},
                      tritium_error("triton_unavailable", "Triton is unavailable: restarting"))


def test_503_with_retry_after_is_retried_after_waiting(front: Front) -> None:
    front.script.append(UNAVAILABLE)
    with InferenceClient(endpoint=front.url, retries=FAST) as client:
        start = time.monotonic()
        r = client.invoke(model_id="add", inputs=ADD)
        elapsed = time.monotonic() - start
    assert r.outputs["SUM"].tolist() == [[4.0, 6.0]] and r.attempts == 2
    assert elapsed >= 1.0, "Retry-After: 1 was not honoured"
    posts = front.posts()
    assert len(posts) == 2 and posts[0]["x-request-id"] == posts[1]["x-request-id"] == r.request_id


def test_429_is_retried_then_raised_with_retry_after(front: Front) -> None:
    busy: Reply = (429, {"Content-Type": "application/json", "Retry-After": "0"},
                   tritium_error("overloaded", "no free model instance"))
    front.script.extend([busy, busy])
    with InferenceClient(endpoint=front.url, retries=FAST) as client:
        assert client.invoke(model_id="add", inputs=ADD).attempts == 3
        front.script.extend([busy] * 4)
        with pytest.raises(RateLimitError) as info:
            client.invoke(model_id="add", inputs=ADD)
    assert info.value.retry_after == 0.0 and info.value.code == "overloaded" and info.value.request_id == "front"
    assert len(front.posts()) == 3 + 4


def test_invoke_is_not_retried_when_it_may_have_run(front: Front) -> None:
    bad_gateway: Reply = (502, {"Content-Type": "text/html"}, b"<h1>502 Bad Gateway</h1>")
    no_hint: Reply = (503, {"Content-Type": "application/json"}, tritium_error("triton_unavailable", "gone"))
    after_model: Reply = (503, {"Content-Type": "application/json", "Retry-After": "0"},
                          tritium_error("stage_unavailable", "the post stage is unavailable", "post"))
    with InferenceClient(endpoint=front.url, retries=FAST) as client:
        front.script.append(bad_gateway)
        with pytest.raises(ServerError, match="502 Bad Gateway"):
            client.invoke(model_id="add", inputs=ADD)
        front.script.append(no_hint)
        with pytest.raises(ServiceUnavailableError):
            client.invoke(model_id="add", inputs=ADD)
        front.script.append(after_model)
        with pytest.raises(ServiceUnavailableError):
            client.invoke(model_id="add", inputs=ADD)
        assert len(front.posts()) == 3
        # Reads are always safe to repeat.
        front.script.extend([bad_gateway, no_hint])
        assert client.model("add").name == "add"
        assert [p for m, p, _ in front.seen if m == "GET"] == ["/v2/models/add"] * 3
    with InferenceClient(endpoint=front.url, retries=RetryPolicy(max_retries=1, backoff_base=0.01,
                                                                    idempotent=True)) as client:
        front.script.append(bad_gateway)
        assert client.invoke(model_id="add", inputs=ADD).attempts == 2


def test_waits_longer_than_the_budget_are_not_taken(front: Front) -> None:
    with InferenceClient(endpoint=front.url, retries=RetryPolicy(max_retry_after=0.5)) as client:
        front.script.append(UNAVAILABLE)  # Retry-After 1 > max_retry_after
        start = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as info:
            client.invoke(model_id="add", inputs=ADD)
        assert info.value.retry_after == 1.0
        front.script.append(UNAVAILABLE)
        with pytest.raises(ServiceUnavailableError):
            client.invoke(model_id="add", inputs=ADD, timeout=0.5)  # the wait would pass the total timeout
        assert time.monotonic() - start < 0.5
    assert len(front.posts()) == 2
    assert front.posts()[1]["x-request-timeout"]  # the remaining budget went to the server as its deadline


def test_stream_opening_is_retried(front: Front) -> None:
    front.script.append((503, {"Content-Type": "application/json", "Retry-After": "0"},
                         tritium_error("triton_unavailable", "restarting")))
    with InferenceClient(endpoint=front.url, retries=FAST) as client:
        chunks = list(client.stream(model_id="stream", inputs={"PROMPT": "one two"}))
    assert [c.text for c in chunks] == ["one", " two"]
    assert len(front.posts()) == 2


def test_auth_errors_and_settings_from_the_environment(front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITIUM_ENDPOINT", front.url)
    monkeypatch.setenv("TRITIUM_API_KEY", "env-key")
    with InferenceClient(retries=FAST) as client:
        assert client.endpoint == front.url
        front.script.append((401, {"Content-Type": "application/json"}, tritium_error("unauthorized", "bad key")))
        with pytest.raises(AuthenticationError, match="bad key"):
            client.invoke(model_id="add", inputs=ADD)
        front.script.append((403, {"Content-Type": "application/json"}, tritium_error("forbidden", "not yours")))
        with pytest.raises(PermissionDeniedError):
            client.invoke(model_id="add", inputs=ADD)
        assert client.invoke(model_id="add", inputs=ADD).status_code == 200
    assert [p["authorization"] for p in front.posts()] == ["Bearer env-key"] * 3
    with InferenceClient(api_key="arg-key") as client:
        client.invoke(model_id="add", inputs=ADD)
    assert front.posts()[-1]["authorization"] == "Bearer arg-key"


# -- TLS -----------------------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path_factory.mktemp("pki")
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                 "-days", "1", "-subj", "/CN=tritium-test-ca", cwd=d)
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        for name in ("server", "client"):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                     "-subj", f"/CN={name}", cwd=d)
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", f"{name}.pem", "-days", "1", *(["-extfile", "san.ext"] if name == "server" else []),
                     cwd=d)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make test certificates: {exc}")
    return d


def test_tls_verification_ca_bundle_and_client_certificate(gw: Deployment, pki: Path) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki / "server.pem", pki / "server.key")
    tls.load_verify_locations(pki / "ca.pem")
    tls.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the client must present a certificate of the CA
    front = Front(gw.url, tls)
    try:
        with InferenceClient(endpoint=front.url, retries=0) as client, \
                pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.invoke(model_id="add", inputs=ADD)  # verification is on by default: a private CA fails
        with InferenceClient(endpoint=front.url, verify=str(pki / "ca.pem"), retries=0) as client, \
                pytest.raises(APIConnectionError):
            client.invoke(model_id="add", inputs=ADD)  # trusted server, but no client certificate
        cert = (str(pki / "client.pem"), str(pki / "client.key"))
        with InferenceClient(endpoint=front.url, verify=pki / "ca.pem", cert=cert, retries=0) as client:
            assert client.invoke(model_id="add", inputs=ADD).outputs["SUM"].tolist() == [[4.0, 6.0]]
    finally:
        front.close()
