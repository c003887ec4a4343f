"""A stage's TCP port: probes and /metrics for anyone who reaches it, message processing for its own pod only.

The port listens on the pod IP (kubelet probes) and the NetworkPolicy admits other pods to it
(the PodMonitor scrapes it), so POST /v1/process there must not be a way around the gateway.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tritium.api.spec import InferenceServiceSpec
from tritium.dataplane.http.client import Http11Pool
from tritium.dataplane.http.sidecar_server import Reply, Request, serve, serve_unix
from tritium.dataplane.stages.server import StageProcessor, StageService
from tritium.dataplane.tensors import HEADER_LENGTH, STAGE_CONTENT_TYPE, pack_message

MODEL = {"name": "m", "max_batch_size": 0, "inputs": {"x": ["FP32", [2]]}}


def _service(tcp_processing: bool = True) -> StageService:
    spec = InferenceServiceSpec.model_validate({
        "model": {"name": "m", "storageUri": "file:///m", "format": "python"},
        "preprocess": {"builtin": {"format": "json"}},
    })
    return StageService(StageProcessor("pre", spec), tcp_processing=tcp_processing)


def _process(peer: str) -> Request:
    body, length = pack_message({"mode": "json", "model": MODEL, "parameters": {}, "inputs": {"x": [1, 2]}})
    headers = {"content-type": STAGE_CONTENT_TYPE, HEADER_LENGTH.lower(): str(length), "x-request-id": "r-1"}
    return Request("POST", "/v1/process", headers, body, peer)


def _counted(service: StageService) -> dict[str, float]:
    """tritium_stage_requests_total by code, as a scrape reads it."""
    text = generate_latest(service.metrics.registry).decode()
    return {s.labels["code"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "tritium_stage_requests_total"}


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", ""])
async def test_loopback_and_unix_socket_peers_are_processed(peer: str) -> None:
    service = _service()
    reply = await service.http(_process(peer))
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == STAGE_CONTENT_TYPE
    assert _counted(service) == {"200": 1.0}


@pytest.mark.parametrize("peer", ["10.1.2.3", "192.0.2.7", "fd00::7", "::ffff:10.1.2.3", "not-an-address"])
async def test_other_peers_are_refused_before_processing(peer: str) -> None:
    service = _service()
    reply = await service.http(_process(peer))
    assert reply.status == 403
    error = orjson.loads(reply.body)["error"]
    assert error["code"] == "forbidden" and error["request_id"] == "r-1"
    assert "gateway" in error["message"]
    assert _counted(service) == {}, "a refused message is not processed, so not counted"


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.6", "::1", ""])
async def test_with_tcp_processing_off_no_peer_is_processed(peer: str) -> None:
    """A stage on a Unix socket (every pod): behind a mesh, other pods arrive from 127.0.0.6 too."""
    service = _service(tcp_processing=False)
    reply = await service.http(_process(peer))
    assert reply.status == 403
    error = orjson.loads(reply.body)["error"]
    assert error["code"] == "forbidden" and error["request_id"] == "r-1"
    assert "Unix socket" in error["message"] and "gateway" in error["message"]
    assert _counted(service) == {}, "a refused message is not processed, so not counted"
    probe = await service.http(Request("GET", "/healthz", {}, b"", peer))
    assert probe.status == 200


async def test_with_tcp_processing_off_the_socket_still_processes() -> None:
    service = _service(tcp_processing=False)
    request = _process("")
    status, _, _ = await service.wire(request.body, int(request.headers[HEADER_LENGTH.lower()]), "r-1", 5.0)
    assert status == 200
    assert _counted(service) == {"200": 1.0}


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_probes_and_scrapes_answer_any_peer(path: str) -> None:
    service = _service()
    await service.http(_process("127.0.0.1"))
    reply = await service.http(Request("GET", path, {}, b"", "10.1.2.3"))
    assert reply.status == 200
    if path == "/metrics":
        assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert 'tritium_stage_requests_total{code="200",stage="pre"} 1.0' in reply.body.decode()


def _non_loopback_address() -> str:
    """An IPv4 address of this machine other than loopback (the route a datagram would take)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, only a route is chosen
        except OSError:
            pytest.skip("this machine has no route off loopback")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _peer_of(request: Request) -> Reply:
    return Reply(200, request.peer.encode())


async def test_the_server_hands_the_peer_address_over(tmp_path: Path) -> None:
    port = _free_port()
    server = await serve(_peer_of, "127.0.0.1", port)
    path = str(tmp_path / "stage.sock")
    unix = await serve_unix(_peer_of, path)
    pools = [Http11Pool("127.0.0.1", port), Http11Pool("localhost", 0, path=path)]
    try:
        assert [(await pool.request("GET", "/")).body for pool in pools] == [b"127.0.0.1", b""]
    finally:
        for pool in pools:
            await pool.close()
        for s in (server, unix):
            s.close()
            await s.wait_closed()


async def test_a_real_connection_from_the_pod_network_is_refused_and_scraped() -> None:
    """Over a real socket from a non-loopback address, as another pod's connection arrives."""
    address = _non_loopback_address()
    service = _service()
    port = _free_port()
    server = await serve(service.http, "0.0.0.0", port)
    pool = Http11Pool(address, port)
    try:
        request = _process("")
        refused = await pool.request("POST", "/v1/process", request.body,
                                     {"Content-Type": STAGE_CONTENT_TYPE,
                                      HEADER_LENGTH: request.headers[HEADER_LENGTH.lower()]})
        assert refused.status == 403
        scraped = await pool.request("GET", "/metrics")
        assert scraped.status == 200 and b"tritium_stage_duration_seconds" in scraped.body
        local = Http11Pool("127.0.0.1", port)
        try:
            processed = await local.request("POST", "/v1/process", request.body,
                                            {HEADER_LENGTH: request.headers[HEADER_LENGTH.lower()]})
        finally:
            await local.close()
        assert processed.status == 200
        assert _counted(service) == {"200": 1.0}
    finally:
        await pool.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
