"""`tritium up --secrets DIR` with spec.security.tls: the local gateway serves DIR/NAME/tls.crt and tls.key.

A real `tritium up` (Triton with the small adder model of examples/rollout, the gateway) whose
certificate comes from a test CA; the request goes over HTTPS, verified against that CA, and a
certificate replaced in DIR is served to the next handshake without a restart, as in a pod.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from pathlib import Path

import httpx
import orjson
import yaml

from tests.support.certs import serial_of, serving_ca, serving_cert
from tests.support.local_up import ROOT, require_tritonserver, start_up
from tritium.local.runner import free_ports

EXAMPLE = ROOT / "examples" / "rollout"
BODY = orjson.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})


def _serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="127.0.0.1") as sock:
        return int(sock.getpeercert()["serialNumber"], 16)  # type: ignore[index]


def _replace(src: Path, dst: Path) -> None:
    """Write a file as an editor saving it would: a new file renamed over the old one."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def test_up_serves_the_tls_secret_from_the_secrets_dir_and_follows_its_renewal(tmp_path: Path) -> None:
    require_tritonserver()
    pki = tmp_path / "pki"
    ca = serving_ca(pki)
    first, second = serving_cert(pki, "first"), serving_cert(pki, "second")
    secrets = tmp_path / "secrets"
    (secrets / "adder-tls").mkdir(parents=True)
    for src, name in zip(first, ("tls.crt", "tls.key"), strict=True):
        shutil.copyfile(src, secrets / "adder-tls" / name)
    doc = yaml.safe_load((EXAMPLE / "isvc.yaml").read_text().replace("file://./", f"file://{EXAMPLE}/"))
    doc["spec"]["security"] = {"tls": {"secretName": "adder-tls", "minVersion": "1.3"}}
    spec = tmp_path / "isvc.yaml"
    spec.write_text(yaml.safe_dump(doc))

    (port,) = free_ports(1)
    up = start_up(spec, "--port", str(port), "--secrets", str(secrets))
    try:
        assert up.wait_ready() == f"https://127.0.0.1:{port}"
        verified = ssl.create_default_context(cafile=str(ca))
        answer = httpx.post(f"https://127.0.0.1:{port}/v2/models/adder/infer", content=BODY, verify=verified,
                            headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert _serial(port, ca) == serial_of(first[0])

        _replace(second[1], secrets / "adder-tls" / "tls.key")  # key first: the pair mismatches a moment
        _replace(second[0], secrets / "adder-tls" / "tls.crt")
        deadline = time.monotonic() + 10
        while _serial(port, ca) != serial_of(second[0]):
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.1)
        assert up.process.poll() is None
    finally:
        assert up.stop() == 0, "\n".join(up.lines[-30:])
