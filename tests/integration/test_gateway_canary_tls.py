"""The canary split when the gateways serve TLS: the stable gateway forwards over HTTPS.

Both revisions mount the same Secret, so the canary presents the very certificate the stable
gateway serves; the forwarder pins it (its SHA-256 fingerprint) rather than asking the system's
CAs, which know nothing of a cluster's private issuer nor of the per-revision Service names. A
canary presenting another certificate is not trusted: its share is served by the stable revision.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_gateway_canary_split import BODY, JSON, REVISION, TrafficDir
from tests.support.certs import serving_ca, serving_cert
from tests.support.dataplane import Proc, base_spec, write_config
from tritium.local.tritonserver import TritonServer, free_port

STABLE, CANARY, IMPOSTOR = "stable0001", "canary0001", "other0001"


def _gateway(directory: Path, triton: TritonServer, revision: str, cert: tuple[Path, Path],
             traffic: TrafficDir) -> tuple[str, Proc]:
    spec = base_spec("add", security={"tls": {"secretName": "serving"}})
    config = write_config(directory, spec, revision=revision)
    port, metrics_port = free_port(), free_port()
    env = {"TRITIUM_TLS_CERT_FILE": str(cert[0]), "TRITIUM_TLS_KEY_FILE": str(cert[1])}
    proc = Proc(["gateway", "--spec", str(config), "--host", "127.0.0.1", "--port", str(port),
                 "--metrics-port", str(metrics_port), "--triton-grpc", triton.grpc_address,
                 "--triton-http", triton.http_url, "--traffic-file", str(traffic.path)],
                f"http://127.0.0.1:{metrics_port}/metrics", env=env)
    return f"https://127.0.0.1:{port}", proc


@pytest.fixture(scope="module")
def tls_gateways(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    d = tmp_path_factory.mktemp("canary-tls")
    ca = serving_ca(d / "pki")
    shared = serving_cert(d / "pki", "shared")
    other = serving_cert(d / "pki", "other")  # same CA, another certificate
    traffic = {rev: TrafficDir(d / f"traffic-{rev}") for rev in (STABLE, CANARY, IMPOSTOR)}
    gateways = {STABLE: _gateway(d, triton, STABLE, shared, traffic[STABLE]),
                CANARY: _gateway(d, triton, CANARY, shared, traffic[CANARY]),
                IMPOSTOR: _gateway(d, triton, IMPOSTOR, other, traffic[IMPOSTOR])}
    for t in traffic.values():
        t.split(STABLE, None, 0, None)
    try:
        for _, proc in gateways.values():
            proc.launch()
        for _, proc in gateways.values():
            proc.wait_ready()
        yield {"ca": ca, "traffic": traffic[STABLE], "urls": {rev: url for rev, (url, _) in gateways.items()},
               "stable": gateways[STABLE][1]}
    finally:
        for _, proc in gateways.values():
            proc.stop()


def _revisions(url: str, ca: Path, n: int) -> list[str]:
    context = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=context) as client:
        answers = [client.post(f"{url}/v2/models/add/infer", content=BODY, headers=JSON) for _ in range(n)]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    return [r.headers[REVISION] for r in answers]


def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not applied in time"
        time.sleep(0.05)


def test_the_stable_gateway_forwards_to_a_tls_canary_with_the_same_certificate(tls_gateways: dict) -> None:
    urls, ca, traffic = tls_gateways["urls"], tls_gateways["ca"], tls_gateways["traffic"]
    traffic.split(STABLE, CANARY, 100, urls[CANARY])
    _until(lambda: _revisions(urls[STABLE], ca, 3) == [CANARY] * 3)
    assert _revisions(urls[STABLE], ca, 20) == [CANARY] * 20


def test_a_canary_with_another_certificate_is_not_trusted(tls_gateways: dict) -> None:
    urls, ca, traffic = tls_gateways["urls"], tls_gateways["ca"], tls_gateways["traffic"]
    traffic.split(STABLE, IMPOSTOR, 100, urls[IMPOSTOR])
    time.sleep(1.5)  # the file is read every second
    assert _revisions(urls[STABLE], ca, 20) == [STABLE] * 20  # served here: not one failed
    assert "unreachable" in tls_gateways["stable"].output()
