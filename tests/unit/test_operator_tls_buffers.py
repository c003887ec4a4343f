"""The operator's TLS connections read through 64 KiB buffers instead of asyncio's 256 KiB.

A real TLS server and client on loopback (asyncio, a test CA): after the setting, the client
connection's buffer is 64 KiB, and a message of several MiB, many buffers long, arrives intact.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import serving_ca, serving_cert
from tritium.controller.main import TLS_READ_BUFFER, shrink_tls_read_buffers

MESSAGE = os.urandom(3 * 2**20 + 12345)


@pytest.fixture
def restored() -> Iterator[None]:
    before = asyncio.sslproto.SSLProtocol.max_size
    yield
    asyncio.sslproto.SSLProtocol.max_size = before


async def _exchange(pki: Path) -> tuple[bytes, int]:
    ca = serving_ca(pki)
    cert, key = serving_cert(pki, "server")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(MESSAGE)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=str(ca))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="127.0.0.1")
        protocol = writer.transport._ssl_protocol  # type: ignore[attr-defined]
        buffer = len(protocol._ssl_buffer)
        received = await reader.read(-1)
        writer.close()
        return received, buffer
    finally:
        server.close()
        await server.wait_closed()


def test_tls_connections_read_through_the_smaller_buffer_and_lose_nothing(tmp_path: Path, restored: None) -> None:
    received, buffer = asyncio.run(_exchange(tmp_path / "before"))
    assert buffer == 256 * 1024 and received == MESSAGE  # asyncio's own size: what the setting changes
    shrink_tls_read_buffers()
    received, buffer = asyncio.run(_exchange(tmp_path / "after"))
    assert buffer == TLS_READ_BUFFER == 64 * 1024
    assert received == MESSAGE


def test_a_python_without_the_setting_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(asyncio.sslproto.SSLProtocol, "max_size")
    with pytest.raises(RuntimeError, match="max_size is gone"):
        shrink_tls_read_buffers()
