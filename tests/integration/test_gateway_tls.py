"""TLS on the gateway's API port, with real handshakes: versions, rotation, HTTPS requests, the SDK.

The gateway runs in this test's loop (tests/support/gateway_inproc.py) behind the listening
context dataplane/security/tls.py builds; one test runs the real `tritium gateway` process wired as the
pod is (TRITIUM_TLS_* from render/deployment.py) to prove the HTTPS probe and the plain metrics port.
Certificates come from a test CA made with the openssl command line (tests/support/certs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.certs import serial_of, serving_ca, serving_cert
from tests.support.dataplane import Proc, base_spec, write_config
from tests.support.gateway_inproc import HOST, INFER_BODY, serving
from tritium.client import APIConnectionError, InferenceClient
from tritium.dataplane.security.tls import (
    CERT_FILE_ENV,
    KEY_FILE_ENV,
    MIN_VERSION_ENV,
    CertificateReloader,
    TlsSettings,
)
from tritium.local.tritonserver import free_port

JSON = {"Content-Type": "application/json"}
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: gateway\r\n\r\n"


@dataclass(frozen=True)
class Pki:
    ca: Path  # trusted by the clients
    first: tuple[Path, Path]  # (tls.crt, tls.key)
    second: tuple[Path, Path]  # the renewed certificate, same CA, another serial
    other_ca: Path  # trusted by nobody's server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = serving_ca(directory)
    first, second = serving_cert(directory, "first"), serving_cert(directory, "second")
    return Pki(ca, first, second, serving_ca(directory, "other-ca"))


class TlsSecretDir:
    """A kubernetes.io/tls Secret volume as kubelet keeps it: tls.crt and tls.key -> ..data/, swapped whole."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert, self.key = directory / "tls.crt", directory / "tls.key"
        self.generation = 0

    def write(self, cert: Path, key: Path) -> None:
        self.generation += 1
        data = self.directory / f"..gen{self.generation}"
        data.mkdir()
        (data / "tls.crt").write_bytes(cert.read_bytes())
        (data / "tls.key").write_bytes(key.read_bytes())
        tmp = self.directory / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.directory / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.directory / name).is_symlink():
                (self.directory / name).symlink_to(f"..data/{name}")

    def settings(self, min_version: str = "1.2") -> TlsSettings:
        return TlsSettings(str(self.cert), str(self.key), min_version)


def client_context(ca: Path, versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None) -> ssl.SSLContext:
    """A verifying client; ``versions`` (lowest, highest) pins what it offers."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if versions is not None:
        ctx.minimum_version, ctx.maximum_version = versions
    return ctx


def old_versions_client(ca: Path) -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only, with the ciphers they need (@SECLEVEL=0): it would
    take either, so a failed handshake is the server's refusal, not the client's own limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1 and TLSv1_1 are deprecated
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_verify_locations(str(ca))
    return ctx


@dataclass
class Session:
    """One TLS connection to the gateway, kept open for keep-alive requests."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def version(self) -> str:
        return str(self.writer.get_extra_info("ssl_object").version())

    @property
    def serial(self) -> int:
        return int(self.writer.get_extra_info("peercert")["serialNumber"], 16)

    async def live(self) -> bytes:
        """GET /v2/health/live on this connection; the status line."""
        self.writer.write(LIVE)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length"))
        await self.reader.readexactly(length)
        return head.split(b"\r\n", 1)[0]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await self.writer.wait_closed()


async def connect(url: str, ctx: ssl.SSLContext) -> Session:
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, ssl=ctx), 5)
    return Session(reader, writer)


async def refused(url: str, ctx: ssl.SSLContext) -> None:
    """The handshake fails (the test fails if it succeeds).

    asyncio's server drops the connection without flushing its alert, so the client sees an
    SSL error or a reset; why the server refused is asserted by server_refusal().
    """
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        session = await connect(url, ctx)
        await session.close()


def server_refusal(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """Why ``server`` refuses ``client``: the same handshake over memory BIOs, the server's own error."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(to_server, from_server, server_side=True)
    cli = client.wrap_bio(to_client, from_client, server_hostname=HOST)
    for _ in range(10):
        with contextlib.suppress(ssl.SSLWantReadError):
            cli.do_handshake()
        to_server.write(from_client.read())
        try:
            srv.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            return str(exc)
        to_client.write(from_server.read())
    raise AssertionError("the server accepted the handshake")


async def _eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[misc]
        assert asyncio.get_running_loop().time() < deadline, "not picked up in time"
        await asyncio.sleep(0.05)


async def test_tls_1_2_and_1_3_are_served(tmp_path: Path, pki: Pki) -> None:
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    reloader = CertificateReloader(secret.settings())
    async with serving(tmp_path, {"tls": {"secretName": "t"}}, tls=reloader.listening) as (url, _):
        assert url.startswith("https://")
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            session = await connect(url, client_context(pki.ca, (version, version)))
            assert session.version == name
            assert session.serial == serial_of(pki.first[0])
            assert await session.live() == b"HTTP/1.1 200 OK"
            assert await session.live() == b"HTTP/1.1 200 OK"  # keep-alive over TLS
            assert session.writer.get_extra_info("ssl_object").selected_alpn_protocol() in (None, "http/1.1")
            await session.close()
        # A client that offers anything gets the newest version.
        session = await connect(url, client_context(pki.ca))
        assert session.version == "TLSv1.3"
        await session.close()


async def _control_server_accepts_old_versions(pki: Pki) -> bool:
    """Whether this machine's OpenSSL can make a TLS 1.0/1.1 handshake at all (a server that allows them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_ctx.load_cert_chain(*pki.first)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, HOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        session = await connect(f"https://{HOST}:{port}", old_versions_client(pki.ca))
        ok = session.version in ("TLSv1", "TLSv1.1")
        await session.close()
        return ok
    except ssl.SSLError:
        return False
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_1_0_and_1_1_are_refused_by_the_server(tmp_path: Path, pki: Pki) -> None:
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    reloader = CertificateReloader(secret.settings())
    client_can_offer_them = await _control_server_accepts_old_versions(pki)
    async with serving(tmp_path, {"tls": {"secretName": "t"}}, tls=reloader.listening) as (url, _):
        await refused(url, old_versions_client(pki.ca))
    why = server_refusal(reloader.listening, old_versions_client(pki.ca))
    if client_can_offer_them:
        # The same client just made a TLS 1.0/1.1 handshake with a server that allows them: the
        # refusal is the gateway's, for the version.
        assert "UNSUPPORTED_PROTOCOL" in why, why
    else:
        # This OpenSSL cannot make a TLS 1.0/1.1 handshake at all (built without them): all that can
        # be asserted is that no such handshake succeeds.
        assert why


async def test_min_version_1_3_refuses_a_tls_1_2_client(tmp_path: Path, pki: Pki) -> None:
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    reloader = CertificateReloader(secret.settings("1.3"))
    tls12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    async with serving(tmp_path, {"tls": {"secretName": "t", "minVersion": "1.3"}}, tls=reloader.listening) as (
            url, _):
        await refused(url, client_context(pki.ca, tls12))
        assert "UNSUPPORTED_PROTOCOL" in server_refusal(reloader.listening, client_context(pki.ca, tls12))
        session = await connect(url, client_context(pki.ca))
        assert session.version == "TLSv1.3"
        await session.close()


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path, pki: Pki) -> None:
    await _renewal(tmp_path, pki)


def test_renewal_and_refusal_on_uvloop(tmp_path: Path, pki: Pki) -> None:
    """The gateway runs on uvloop, whose TLS transport is its own code: the context swap and the
    version refusal hold there too."""
    uvloop = pytest.importorskip("uvloop")

    async def both() -> None:
        await _renewal(tmp_path / "renewal", pki)
        secret = TlsSecretDir(tmp_path)
        secret.write(*pki.first)
        reloader = CertificateReloader(secret.settings("1.3"))
        async with serving(tmp_path, {"tls": {"secretName": "t"}}, tls=reloader.listening) as (url, _):
            await refused(url, old_versions_client(pki.ca))
            await refused(url, client_context(pki.ca, (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)))

    (tmp_path / "renewal").mkdir()
    uvloop.run(both())


async def _renewal(tmp_path: Path, pki: Pki) -> None:
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    reloader = CertificateReloader(secret.settings())
    watch = asyncio.create_task(reloader.watch(0.05))
    try:
        async with serving(tmp_path, {"tls": {"secretName": "t"}}, tls=reloader.listening) as (url, _):
            before = await connect(url, client_context(pki.ca))
            assert before.serial == serial_of(pki.first[0])

            secret.write(*pki.second)  # kubelet's swap, as cert-manager's renewal causes it

            async def renewed() -> bool:
                session = await connect(url, client_context(pki.ca))
                serial = session.serial
                await session.close()
                return serial == serial_of(pki.second[0])

            await _eventually(renewed)
            assert reloader.reloads == 1
            # The connection made before the swap goes on, with the certificate it was made with.
            assert await before.live() == b"HTTP/1.1 200 OK"
            assert before.serial == serial_of(pki.first[0])
            await before.close()

            # A broken edit (a key that does not match the certificate) keeps the last good pair.
            secret.write(pki.first[0], pki.second[1])
            await asyncio.sleep(0.3)
            assert reloader.reloads == 1
            session = await connect(url, client_context(pki.ca))
            assert session.serial == serial_of(pki.second[0])
            assert await session.live() == b"HTTP/1.1 200 OK"
            await session.close()
    finally:
        watch.cancel()


async def test_inference_over_https_and_the_sdk_verifies_the_certificate(tmp_path: Path, pki: Pki,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    reloader = CertificateReloader(secret.settings())
    async with serving(tmp_path, {"tls": {"secretName": "t"}}, tls=reloader.listening) as (url, _):
        async with httpx.AsyncClient(verify=client_context(pki.ca)) as client:
            answer = await client.post(f"{url}/v2/models/add/infer", content=INFER_BODY, headers=JSON)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [4, 6]

        def sdk(verify: bool | str) -> object:
            with InferenceClient(endpoint=url, verify=verify, retries=0) as sdk_client:
                return sdk_client.model("add")

        meta = await asyncio.to_thread(sdk, str(pki.ca))  # the SDK is synchronous: off this loop
        assert meta.name == "add"  # type: ignore[attr-defined]
        for untrusted in (str(pki.other_ca), True):  # another CA; the system's (certifi) roots
            with pytest.raises(APIConnectionError, match="TLS certificate is not trusted") as caught:
                await asyncio.to_thread(sdk, untrusted)
            assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) and "--cacert" in str(caught.value)

        def sdk_with_retries() -> float:
            began = time.monotonic()
            with InferenceClient(endpoint=url, verify=str(pki.other_ca), retries=5) as sdk_client, \
                    pytest.raises(APIConnectionError):
                sdk_client.model("add")
            return time.monotonic() - began

        # Not retried: five retries with backoff would take a second or more.
        assert await asyncio.to_thread(sdk_with_retries) < 0.5

        def cli(*args: str) -> int:
            from tritium.cli import main

            return main(["invoke", "add", "-i", "INPUT0=[1,2]", "--endpoint", url, "--timeout", "1", *args])

        # The CLI gets through TLS with --cacert; the answer is then the gateway's (no Triton here:
        # 503, exit 1), not a certificate failure.
        capsys.readouterr()
        assert await asyncio.to_thread(cli, "--cacert", str(pki.ca)) == 1
        trusted = capsys.readouterr().err
        assert "not trusted" not in trusted and "nvalid" not in trusted and "unavailable" in trusted.lower(), trusted
        assert await asyncio.to_thread(cli, "--cacert", str(pki.other_ca)) == 1
        assert "TLS certificate is not trusted" in capsys.readouterr().err


def _wait_https(url: str, ctx: ssl.SSLContext, proc: Proc, timeout: float = 20.0) -> None:
    assert proc.popen is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            if httpx.get(url, verify=ctx, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gateway not ready at {url}:\n{proc.output()}")


def test_gateway_process_serves_https_on_the_api_port_and_http_on_metrics(tmp_path: Path, pki: Pki) -> None:
    """The real `tritium gateway`, with the environment render/deployment.py gives it."""
    secret = TlsSecretDir(tmp_path)
    secret.write(*pki.first)
    config = write_config(tmp_path, base_spec("add", security={"tls": {"secretName": "t", "minVersion": "1.3"}}))
    port, metrics_port = free_port(), free_port()
    env = {CERT_FILE_ENV: str(secret.cert), KEY_FILE_ENV: str(secret.key), MIN_VERSION_ENV: "1.3"}
    gateway = Proc(["gateway", "--spec", str(config), "--host", HOST, "--port", str(port),
                    "--metrics-port", str(metrics_port), "--triton-grpc", f"{HOST}:1",
                    "--triton-http", f"http://{HOST}:1"], "", env)
    gateway.launch()
    try:
        # What the kubelet's HTTPS probe asks (it does not verify the certificate; this client does).
        _wait_https(f"https://{HOST}:{port}/v2/health/live", client_context(pki.ca), gateway)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://{HOST}:{port}/v2/health/live", timeout=2,
                      verify=client_context(pki.ca, (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)))
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no HTTP answer
            httpx.get(f"http://{HOST}:{port}/v2/health/live", timeout=2)
        assert httpx.get(f"http://{HOST}:{metrics_port}/metrics", timeout=2).status_code == 200
    finally:
        gateway.stop()


@pytest.mark.parametrize(("env", "says"), [
    ({}, CERT_FILE_ENV),
    ({CERT_FILE_ENV: "/nonexistent/tls.crt", KEY_FILE_ENV: "/nonexistent/tls.key"}, "cannot be loaded"),
])
def test_gateway_process_refuses_to_start_without_a_servable_certificate(tmp_path: Path, env: dict[str, str],
                                                                           says: str) -> None:
    config = write_config(tmp_path, base_spec("add", security={"tls": {"secretName": "t"}}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRITIUM_TLS_")}
    proc = Proc(["gateway", "--spec", str(config), "--host", HOST, "--port", str(free_port()),
                 "--metrics-port", str(free_port()), "--triton-grpc", f"{HOST}:1", "--triton-http",
                 f"http://{HOST}:1"], "", env)
    proc.env = {**base, **env}
    proc.launch()
    assert proc.popen is not None
    assert proc.popen.wait(30) == 2  # a usage error: what the pod's log says, no HTTP fallback
    assert says in proc.output()


def test_settings_come_from_the_pod_env_and_refuse_an_unknown_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from tritium.api.spec import TlsSpec

    spec = TlsSpec.model_validate({"secretName": "t", "minVersion": "1.3"})
    monkeypatch.setenv(CERT_FILE_ENV, "/c")
    monkeypatch.setenv(KEY_FILE_ENV, "/k")
    monkeypatch.delenv(MIN_VERSION_ENV, raising=False)
    assert TlsSettings.from_env(None) is None  # no tls in the spec: plain HTTP, whatever the env says
    assert TlsSettings.from_env(spec) == TlsSettings("/c", "/k", "1.3")  # the spec's, without the variable
    monkeypatch.setenv(MIN_VERSION_ENV, "1.2")
    assert TlsSettings.from_env(spec) == TlsSettings("/c", "/k", "1.2")  # the renderer's variable wins
    monkeypatch.setenv(MIN_VERSION_ENV, "1.1")
    with pytest.raises(ValueError, match=r"1\.1"):
        TlsSettings.from_env(spec)
