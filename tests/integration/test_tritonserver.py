"""The local Triton launcher against the real binary: readiness, inference, a clean stop, no orphans."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.support.dataplane import base_spec, deploy, start_triton
from tritium.local import tritonserver
from tritium.local.tritonserver import TritonNotFoundError, TritonServer


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_shared_server_answers_inference(triton: TritonServer) -> None:
    client = httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    inputs = [httpclient.InferInput("INPUT0", a.shape, "FP32"), httpclient.InferInput("INPUT1", a.shape, "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    result = client.infer("add", inputs)
    np.testing.assert_array_equal(result.as_numpy("SUM"), a * 2)
    assert {m["name"] for m in client.get_model_repository_index()} == {"add", "identity", "stream", "slow"}


def test_stop_leaves_no_processes() -> None:
    server = start_triton()
    pid = server.pid
    assert pid is not None
    stubs = _children(pid)
    assert stubs, "python backend stubs should run as children of tritonserver"
    server.stop()
    assert not _alive(pid)
    assert not [s for s in stubs if _alive(s)]


def test_stop_removes_the_python_backend_directory() -> None:
    """The python backend makes /tmp/python_env_XXXXXX (a fixed path) and leaves it behind."""
    server = start_triton()
    try:
        owned = set(server._own_envs)
        assert owned and all(os.path.isdir(p) for p in owned), "the python backend makes its directory"
    finally:
        server.stop()
    assert not [p for p in owned if os.path.exists(p)]


def test_a_deployment_removes_its_socket_directory(triton: TritonServer, tmp_path) -> None:
    dep = deploy(tmp_path, triton, base_spec("add", postprocess={"builtin": {"format": "json"}}), name="sockets")
    assert dep.sockets is not None and (dep.sockets / "tritium-post.sock").exists()
    dep.stop()
    assert not dep.sockets.exists()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TRITONSERVER", str(tmp_path / "nope"))
    with pytest.raises(TritonNotFoundError, match="not an executable"):
        tritonserver.find_tritonserver()
    monkeypatch.delenv("TRITONSERVER")
    monkeypatch.setattr(tritonserver, "_pytriton_root", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TritonNotFoundError, match="pip install nvidia-pytriton"):
        tritonserver.find_tritonserver()


def test_environment_puts_this_interpreter_first() -> None:
    env = tritonserver.triton_environment({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert env["LD_LIBRARY_PATH"].endswith("/opt/lib")


def test_a_broken_start_reports_the_log(tmp_path) -> None:
    server = TritonServer(tmp_path / "no-such-repository")
    with pytest.raises(tritonserver.TritonStartError, match="exited with code"):
        server.start(timeout=30)
