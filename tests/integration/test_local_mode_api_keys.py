"""`tritium up --secrets DIR` with spec.security.apiKeysSecretRef: the local gateway reads DIR/NAME/KEY.

A real `tritium up` (Triton with the small adder model of examples/rollout, the gateway) whose key
file holds an entry made by the real `tritium keys create`. Inference answers 401 (with
WWW-Authenticate) without a key or with a wrong one and 200 with the key in either header, while
the readiness probe stays open; then the file is replaced by another key's entry and the running
gateway accepts the new key and refuses the old one without a restart, as a pod does when kubelet
swaps the mounted Secret.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import yaml

from tests.support.local_up import ROOT, require_tritonserver, start_up, tritium_exe
from tritium.local.runner import free_ports

EXAMPLE = ROOT / "examples" / "rollout"
BODY = orjson.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})
JSON = {"Content-Type": "application/json"}
SECRET, SECRET_KEY = "adder-keys", "keys"


def _create_key(key_id: str) -> tuple[str, str]:
    """(key, Secret entry) from the real CLI: the key on line 1, its `ID:SHA256HEX` line on line 2."""
    done = subprocess.run([*tritium_exe(), "keys", "create", "--id", key_id], capture_output=True, text=True,
                          timeout=60, check=True, cwd=ROOT)
    key, line = done.stdout.splitlines()
    assert key.startswith("tk_") and line.startswith(f"{key_id}:"), done.stdout
    assert key not in line  # the Secret holds the hash only
    return key, line


def _replace(text: str, dst: Path) -> None:
    """Write a file as an editor saving it would: a new file renamed over the old one."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, dst)


def _infer(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/adder/infer", content=BODY, headers={**JSON, **(headers or {})}, timeout=10)


def test_up_takes_api_keys_from_the_secrets_dir_and_follows_their_rotation(tmp_path: Path) -> None:
    require_tritonserver()
    first_key, first_line = _create_key("team-a")
    second_key, second_line = _create_key("team-b")
    assert first_key != second_key
    secrets = tmp_path / "secrets"
    (secrets / SECRET).mkdir(parents=True)
    key_file = secrets / SECRET / SECRET_KEY
    key_file.write_text(first_line + "\n")
    doc = yaml.safe_load((EXAMPLE / "isvc.yaml").read_text().replace("file://./", f"file://{EXAMPLE}/"))
    doc["spec"]["security"] = {"apiKeysSecretRef": {"name": SECRET, "key": SECRET_KEY}}
    spec = tmp_path / "isvc.yaml"
    spec.write_text(yaml.safe_dump(doc))

    (port,) = free_ports(1)
    up = start_up(spec, "--port", str(port), "--secrets", str(secrets))
    try:
        url = up.wait_ready()
        assert url == f"http://127.0.0.1:{port}"

        anonymous = _infer(url)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer"), anonymous.headers
        bearer = _infer(url, {"Authorization": f"Bearer {first_key}"})
        assert bearer.status_code == 200, bearer.text
        assert bearer.json()["outputs"][0]["data"] == [2, 3], bearer.text  # Y = X + 1: Triton answered
        header = _infer(url, {"X-API-Key": first_key})
        assert header.status_code == 200, header.text
        wrong = _infer(url, {"Authorization": f"Bearer {second_key}"})  # a real key, not yet in the Secret
        assert wrong.status_code == 401, wrong.text
        assert "invalid_token" in wrong.headers["WWW-Authenticate"], wrong.headers
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200  # probes need no key

        _replace(second_line + "\n", key_file)
        deadline = time.monotonic() + 10
        while _infer(url, {"X-API-Key": second_key}).status_code != 200:
            assert time.monotonic() < deadline, "the rotated key file was not picked up"
            time.sleep(0.1)
        assert _infer(url, {"Authorization": f"Bearer {second_key}"}).status_code == 200
        old = _infer(url, {"Authorization": f"Bearer {first_key}"})
        assert old.status_code == 401, old.text
        assert _infer(url, {"X-API-Key": first_key}).status_code == 401
        assert _infer(url).status_code == 401
        assert up.process.poll() is None  # the same process throughout: no restart
    finally:
        assert up.stop() == 0, "\n".join(up.lines[-30:])
    for secret_text in (first_key, second_key):
        assert not any(secret_text in line for line in up.lines)  # no key reaches the output
