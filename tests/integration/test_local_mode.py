"""`tritium up` end to end: ready -> requests -> SIGTERM -> nothing left running.

Local mode is started once for the module (a real Triton with the MiniLM model, both stage
sidecars and the gateway); the SIGTERM test runs last and ends it. Leftover processes are found
by an environment marker every process of the run inherits, so even a process that escaped its
process group and was re-parented would be caught.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.local_up import MINILM, UpProcess, marked_pids, require_minilm_parts, start_up, tritium_exe


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def up() -> Iterator[tuple[UpProcess, int]]:
    require_minilm_parts()
    port = _free_port()
    run = start_up(MINILM / "isvc.yaml", "--port", str(port))
    try:
        run.wait_ready()
        yield run, port
    finally:
        run.stop()


def test_gateway_line_uses_the_fixed_port(up: tuple[UpProcess, int]) -> None:
    run, port = up
    assert f"gateway: http://127.0.0.1:{port}" in run.lines
    assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200


def test_request_through_the_pipeline_and_the_cache(up: tuple[UpProcess, int]) -> None:
    _, port = up
    url = f"http://127.0.0.1:{port}/v1/models/minilm/invoke"
    body = {"inputs": {"text": ["local mode works", "a second sentence"]}, "parameters": {}}
    first = httpx.post(url, json=body, timeout=60)
    assert first.status_code == 200, first.text
    embeddings = first.json()["outputs"]["embeddings"]
    assert len(embeddings) == 2 and len(embeddings[0]) == 384
    assert first.headers["x-tritium-cache"] == "miss"
    second = httpx.post(url, json=body, timeout=60)
    assert second.headers["x-tritium-cache"] == "hit"
    assert second.json()["outputs"] == first.json()["outputs"]


def test_logs_carry_stage_prefixes(up: tuple[UpProcess, int]) -> None:
    run, _ = up
    prefixes = {line.split("]", 1)[0] + "]" for line in run.lines if line.startswith("[")}
    assert {"[tritium]", "[fetch]", "[triton]", "[pre]", "[post]", "[gateway]"} <= prefixes, prefixes


def test_sigterm_stops_everything(up: tuple[UpProcess, int]) -> None:
    run, port = up
    running = marked_pids(run.marker)
    assert len(running) >= 5, "up, triton (+ its python stub), pre, post and gateway should be running"
    workdir = next(line.rsplit(" ", 1)[1] for line in run.lines if "working directory" in line)
    assert run.stop(signal.SIGTERM) == 0, "\n".join(run.lines[-30:])
    assert run.leftovers() == [], "processes of the run survived SIGTERM"
    assert not Path(workdir).exists(), "the working directory is removed"
    stopped = [line for line in run.lines if line.startswith("[tritium]") and "stopped" in line]
    assert [line.split()[1] for line in stopped] == ["gateway", "pre", "post", "triton"], stopped
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)


def test_ctrl_c_while_starting_leaves_nothing() -> None:
    require_minilm_parts()
    run = start_up(MINILM / "isvc.yaml")
    run.wait_for_line("[triton]")
    assert run.stop(signal.SIGINT) == 0, "\n".join(run.lines[-30:])
    assert any("interrupted while starting" in line for line in run.lines)
    assert run.leftovers() == []


def test_a_crashed_process_stops_the_run() -> None:
    """No half-working pipeline: when a stage dies, everything stops and the exit code says so."""
    require_minilm_parts()
    run = start_up(MINILM / "isvc.yaml")
    run.wait_ready()
    pre = [pid for pid in marked_pids(run.marker) if b"\0pre\0" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(pre) == 1
    os.kill(pre[0], signal.SIGKILL)
    assert run.process.wait(60) == 1
    assert any("pre exited with code -9; stopping" in line for line in run.lines)
    assert run.leftovers() == []


def test_bad_manifest_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((MINILM / "isvc.yaml").read_text().replace("storageUri: file://./model", "storageUri: ftp://x/m"))
    result = subprocess.run([*tritium_exe(), "up", "-f", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unsupported scheme ftp://" in result.stderr, result.stderr

    missing = tmp_path / "missing-script.yaml"
    missing.write_text((MINILM / "isvc.yaml").read_text().replace("path: pre.py", "path: nope.py"))
    result = subprocess.run([*tritium_exe(), "up", "-f", str(missing)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "nope.py" in result.stderr, result.stderr


BROKEN_MODEL = """
apiVersion: serving.tritium.dev/v1alpha1
kind: InferenceService
metadata: {name: broken}
spec:
  model:
    name: broken
    storageUri: file://./model
    format: python
    maxBatchSize: 0
    inputs: [{name: X, dataType: FP32, dims: [1]}]
    outputs: [{name: Y, dataType: FP32, dims: [1]}]
"""


def test_a_model_that_fails_to_load_says_why_in_one_line(tmp_path: Path) -> None:
    """A missing dependency of the model: the reason, not only Triton's exit code."""
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "model" / "1" / "model.py").write_text("import tritium_no_such_weights\n")
    (tmp_path / "isvc.yaml").write_text(BROKEN_MODEL)
    result = subprocess.run([*tritium_exe(), "up", "-f", str(tmp_path / "isvc.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    failed = [line for line in result.stdout.splitlines() if "failed to start" in line]
    assert len(failed) == 1, result.stdout
    assert "model 'broken' (version 1) failed to load" in failed[0], failed
    assert "No module named 'tritium_no_such_weights'" in failed[0], failed
    if not Path("/dev/nvidiactl").exists():
        for noise in ("CudaDriverHelper has not been initialized", "Failed to initialize NVML", "DCGM unable to start"):
            assert noise not in result.stdout


def test_port_in_use_fails_before_starting_anything() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([*tritium_exe(), "up", "-f", str(MINILM / "isvc.yaml"), "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stdout
