"""API keys on the gateway: 401 without a valid key, either header accepted, health open, rotation live.

The gateway runs in this test's loop on a loopback port (tests/support/gateway_inproc.py); one
test runs the real `tritium gateway` process to prove the pod's wiring (TRITIUM_API_KEYS_FILE).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.dataplane import Proc, base_spec, write_config
from tests.support.gateway_inproc import INFER_BODY, serving
from tritium.dataplane.security import apikeys
from tritium.dataplane.security.apikeys import entry, new_key
from tritium.dataplane.security.layers import SecuritySettings
from tritium.local.tritonserver import free_port

KEYS = {"apiKeysSecretRef": {"name": "keys", "key": "keys"}}
JSON = {"Content-Type": "application/json"}


class SecretDir:
    """A Secret volume as kubelet keeps it: keys -> ..data/keys, ..data swapped whole on an edit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "keys"
        self.generation = 0

    def write(self, text: str) -> None:
        self.generation += 1
        data = self.directory / f"..gen{self.generation}"
        data.mkdir()
        (data / "keys").write_text(text)
        tmp = self.directory / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.directory / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/keys")


async def _infer(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post(f"{url}/v2/models/add/infer", content=INFER_BODY, headers={**JSON, **(headers or {})})


async def _eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[misc]
        assert asyncio.get_running_loop().time() < deadline, "not picked up in time"
        await asyncio.sleep(0.05)


async def test_keys_guard_metadata_and_inference_not_health(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path)
    key = new_key()
    secret.write(f"# issued for the test\n{entry('alice', key)}\n")
    async with serving(tmp_path, KEYS, SecuritySettings(api_keys_file=str(secret.path))) as (url, gateway), \
            httpx.AsyncClient() as client:
        missing = await _infer(client, url)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="tritium"'
        assert missing.json()["code"] == "unauthorized" and missing.json()["request_id"]
        wrong = await _infer(client, url, {"Authorization": f"Bearer {new_key()}"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        assert (await _infer(client, url, {"X-API-Key": key[:-1]})).status_code == 401
        assert (await client.get(f"{url}/v2/models/add")).status_code == 401  # metadata is closed too
        assert (await client.get(f"{url}/v2/models/nope")).status_code == 401  # unknown paths tell nothing
        invoke = await client.post(f"{url}/v1/models/add/invoke", content=b"{}", headers=JSON)
        assert invoke.status_code == 401 and invoke.json()["error"]["code"] == "unauthorized"  # the invoke envelope

        bearer = await _infer(client, url, {"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200, bearer.text
        assert bearer.json()["outputs"][0]["data"] == [4, 6]
        assert (await _infer(client, url, {"X-API-Key": key})).status_code == 200
        assert (await client.get(f"{url}/v2/models/add", headers={"X-API-Key": key})).status_code == 200
        assert (await client.get(f"{url}/v2/health/live")).status_code == 200

        from prometheus_client import generate_latest

        scrape = generate_latest(gateway.metrics.registry).decode()
        assert 'tritium_gateway_key_requests_total{code="200",endpoint="infer",key="alice"} 2.0' in scrape
        assert key not in scrape
        assert 'tritium_gateway_requests_total{code="401",endpoint="infer",model="add"}' in scrape


async def test_rotation_is_picked_up_without_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apikeys, "POLL_SECONDS", 0.05)
    secret = SecretDir(tmp_path)
    old, new = new_key(), new_key()
    secret.write(entry("v1", old) + "\n")
    async with serving(tmp_path, KEYS, SecuritySettings(api_keys_file=str(secret.path))) as (url, _), \
            httpx.AsyncClient() as client:
        assert (await _infer(client, url, {"X-API-Key": old})).status_code == 200
        assert (await _infer(client, url, {"X-API-Key": new})).status_code == 401

        secret.write(f"{entry('v1', old)}\n{entry('v2', new)}\n")  # step 1: both keys work

        async def new_works() -> bool:
            return (await _infer(client, url, {"X-API-Key": new})).status_code == 200

        await _eventually(new_works)
        assert (await _infer(client, url, {"X-API-Key": old})).status_code == 200

        secret.write(entry("v2", new) + "\n")  # step 2: the old key is retired

        async def old_refused() -> bool:
            return (await _infer(client, url, {"X-API-Key": old})).status_code == 401

        await _eventually(old_refused)
        assert (await _infer(client, url, {"X-API-Key": new})).status_code == 200

        secret.write("not a key line\n")  # a broken edit keeps the last good keys
        await asyncio.sleep(0.3)
        assert (await _infer(client, url, {"X-API-Key": new})).status_code == 200


async def test_a_missing_key_file_accepts_no_key(tmp_path: Path) -> None:
    settings = SecuritySettings(api_keys_file=str(tmp_path / "absent"))
    async with serving(tmp_path, KEYS, settings) as (url, _), httpx.AsyncClient() as client:
        assert (await _infer(client, url, {"X-API-Key": new_key()})).status_code == 401
        assert (await client.get(f"{url}/v2/health/live")).status_code == 200


def test_gateway_process_reads_the_key_file_named_by_the_pod_env(tmp_path: Path) -> None:
    """The real `tritium gateway`, wired like the pod (render/deployment.py sets TRITIUM_API_KEYS_FILE)."""
    key = new_key()
    keys = tmp_path / "keys"
    keys.write_text(entry("ci", key) + "\n")
    config = write_config(tmp_path, base_spec("add", security=KEYS))
    port, metrics_port, triton_port = free_port(), free_port(), free_port()
    gateway = Proc(["gateway", "--spec", str(config), "--host", "127.0.0.1", "--port", str(port),
                    "--metrics-port", str(metrics_port), "--triton-grpc", f"127.0.0.1:{triton_port}",
                    "--triton-http", f"http://127.0.0.1:{triton_port}"],
                   f"http://127.0.0.1:{port}/v2/health/live", {"TRITIUM_API_KEYS_FILE": str(keys)})
    gateway.start()
    try:
        url = f"http://127.0.0.1:{port}/v2/models/add/infer"
        assert httpx.post(url, content=INFER_BODY, headers=JSON).status_code == 401
        # Past the key, the request reaches for Triton (not running here): 503, not 401.
        answer = httpx.post(url, content=INFER_BODY, headers={**JSON, "Authorization": f"Bearer {key}"})
        assert answer.status_code == 503, answer.text
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200  # scrapes stay open
    finally:
        gateway.stop()


def test_gateway_process_refuses_to_start_without_its_key_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, base_spec("add", security=KEYS))
    env = {k: v for k, v in os.environ.items() if k != "TRITIUM_API_KEYS_FILE"}
    proc = Proc(["gateway", "--spec", str(config), "--host", "127.0.0.1", "--port", str(free_port()),
                 "--metrics-port", str(free_port()), "--triton-grpc", "127.0.0.1:1", "--triton-http",
                 "http://127.0.0.1:1"], "http://127.0.0.1:1/", env)
    proc.env = env
    proc.launch()
    assert proc.popen is not None
    assert proc.popen.wait(30) != 0
    assert "TRITIUM_API_KEYS_FILE" in proc.output()
