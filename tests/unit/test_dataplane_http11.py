"""The minimal HTTP/1.1 client and server of the gateway -> stage hop, over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tritium.dataplane.http.client import Http11Pool, HttpError
from tritium.dataplane.http.sidecar_server import Reply, Request, serve, serve_unix
from tritium.dataplane.http.stage_client import StageClient


async def _echo(request: Request) -> Reply:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    return Reply(200, request.method.encode() + b" " + request.body, {"X-Len": str(len(request.body))})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(65536), 2)
    writer.close()
    return out


async def test_keep_alive_roundtrips_and_errors() -> None:
    port = _port()
    server = await serve(_echo, "127.0.0.1", port, max_body=1000)
    pool = Http11Pool("127.0.0.1", port)
    try:
        for body in (b"", b"x" * 999, b"\r\n\r\n"):
            resp = await pool.request("POST", "/p", body)
            assert resp.status == 200 and resp.body == b"POST " + body and resp.headers["x-len"] == str(len(body))
        assert len(pool._idle) == 1  # one connection reused throughout
        assert (await pool.request("GET", "/boom")).status == 500
        assert (await pool.request("POST", "/p", b"y" * 1001)).status == 413
        # concurrent requests open more connections, all returned to the pool
        results = await asyncio.gather(*(pool.request("POST", "/p", b"%d" % i) for i in range(10)))
        assert [r.body for r in results] == [b"POST %d" % i for i in range(10)]
        # two pipelined requests on one connection are answered in order
        raw = await _raw(port, b"GET /a HTTP/1.1\r\nContent-Length: 1\r\n\r\naGET /b HTTP/1.1\r\n\r\n")
        assert raw.count(b"HTTP/1.1 200 OK") in (1, 2)
        assert (await _raw(port, b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")).startswith(
            b"HTTP/1.1 411")
        assert (await _raw(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


async def test_server_gone_is_an_http_error_and_a_restart_is_survived() -> None:
    port = _port()
    pool = Http11Pool("127.0.0.1", port)
    with pytest.raises(HttpError, match="cannot connect"):
        await pool.request("GET", "/")
    server = await serve(_echo, "127.0.0.1", port)
    assert (await pool.request("GET", "/")).status == 200
    server.close()
    await server.wait_closed()
    server = await serve(_echo, "127.0.0.1", port)  # the idle connection is stale: retried on a fresh one
    try:
        assert (await pool.request("GET", "/")).status == 200
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


async def test_unix_socket_roundtrips_and_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stage.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # what a killed stage leaves behind
    stale.close()
    server = await serve_unix(_echo, path, max_body=1000)
    pool = Http11Pool("localhost", 0, path=path)
    try:
        for body in (b"", b"z" * 999):
            resp = await pool.request("POST", "/p", body, {"X-Request-Id": "r-1"})
            assert resp.status == 200 and resp.body == b"POST " + body
        assert len(pool._idle) == 1
        assert (await pool.request("POST", "/p", b"y" * 1001)).status == 413
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    with pytest.raises(HttpError, match="cannot connect"):
        await Http11Pool("localhost", 0, path=str(tmp_path / "absent.sock")).request("GET", "/")


async def test_chunked_responses_are_read_whole() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)  # the rest arrives in a later read
            writer.write(b"2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
            await writer.drain()

    port = _port()
    server = await asyncio.start_server(chunked, "127.0.0.1", port)
    pool = Http11Pool("127.0.0.1", port)
    try:
        for _ in range(2):  # and the connection stays usable
            assert (await pool.request("GET", "/")).body == b"abcde"
    finally:
        await pool.close()
        server.close()


def test_stage_client_urls() -> None:
    assert StageClient("pre", "unix:/tmp/tritium-pre.sock")._wire.path == "/tmp/tritium-pre.sock"
    assert StageClient("post", "http://127.0.0.1:9002")._pool.port == 9002
    for bad in ("unix:relative.sock", "https://127.0.0.1:9001", "http://127.0.0.1"):
        with pytest.raises(ValueError):
            StageClient("pre", bad)
