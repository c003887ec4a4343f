"""`tritium invoke` / `tritium stream` as subprocesses, and the README's SDK example run as printed.

Both against real gateways: the test models behind a gateway for the CLI, and the MiniLM example
started by `tritium up` for the README (the example reads its endpoint from TRITIUM_ENDPOINT,
which is what the test sets: the code block runs unmodified).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dataplane import Deployment, base_spec, deploy
from tests.support.local_up import MINILM, ROOT, require_minilm_parts, start_up, tritium_exe
from tritium.cli import main
from tritium.local.tritonserver import TritonServer, free_port


@pytest.fixture(scope="module")
def gw(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = deploy(tmp_path_factory.mktemp("sdkcli"), triton, base_spec("add"), name="sdkcli")
    yield dep
    dep.stop()


def tritium(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tritium_exe(), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_invoke_prints_a_table(gw: Deployment) -> None:
    r = tritium("invoke", "add", "--input", "INPUT0=[1, 2, 3]", "-i", "INPUT1=[10,20,30]", "--param", "k=1",
                "--endpoint", gw.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["OUTPUT", "TYPE", "SHAPE", "VALUE"]
    assert any(re.match(r"SUM\s+float64\s+1x3\s+\[\[11\.0, 22\.0, 33\.0\]\]$", line) for line in lines), r.stdout
    assert re.search(r"request \w+\s+revision r1\s+cache miss\s+[\d.]+ ms", r.stderr)


def test_invoke_json_with_endpoint_from_the_environment(gw: Deployment) -> None:
    r = tritium("invoke", "add", "--input", "INPUT0=[1]", "--input", "INPUT1=[2]", "--json",
                env={"TRITIUM_ENDPOINT": gw.url})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["outputs"]["SUM"] == [[3.0]] and doc["revision"] == "r1" and doc["request_id"]


@pytest.mark.parametrize("command", [["invoke", "add", "-i", "INPUT0=[1]", "-i", "INPUT1=[2]", "--json"],
                                     ["stream", "stream", "-i", "PROMPT=a b c", "--json"]])
def test_a_closed_stdout_is_not_a_traceback(gw: Deployment, command: list[str]) -> None:
    """`tritium invoke ... --json | head`: the reader is gone before the answer is printed."""
    proc = subprocess.Popen([*tritium_exe(), *command, "--endpoint", gw.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_stream_prints_chunks_as_they_arrive(gw: Deployment) -> None:
    r = tritium("stream", "stream", "--input", "PROMPT=tokens arrive one by one", "--endpoint", gw.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "tokens arrive one by one\n"
    r = tritium("stream", "stream", "--input", "PROMPT=a b", "--endpoint", gw.url, "--json")
    assert [json.loads(line)["outputs"]["INDEX"] for line in r.stdout.splitlines()] == [[0], [1]]


def test_a_server_error_in_a_subprocess(gw: Deployment) -> None:
    r = tritium("invoke", "nope", "--input", "x=1", "--endpoint", gw.url)
    assert r.returncode == 2 and r.stderr.startswith("tritium invoke: 404 model_not_found: ")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["invoke", "add", "--input", "INPUT0"], 2, "expected NAME=VALUE"),
    (["invoke", "add"], 2, "give at least one --input"),
    (["invoke", "add", "--input", "INPUT0=@/nonexistent.json"], 2, "No such file"),
    (["invoke", "add", "--input", "INPUT0=[1]", "--input", "NOPE=[1]"], 2, "field inputs.NOPE"),
    (["invoke", "slow", "--input", "SECONDS=[1.0]", "--timeout", "0.2"], 1, "504 deadline_exceeded"),
    (["stream", "nope", "--input", "x=1"], 2, "404 model_not_found"),
    (["stream", "stream", "--input", "NOPE=x"], 2, "400 "),
])
def test_errors_are_one_line_with_the_exit_code(gw: Deployment, capsys: pytest.CaptureFixture[str],
                                                args: list[str], code: int, message: str) -> None:
    assert main([*args, "--endpoint", gw.url]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith(f"tritium {args[0]}: ")


def test_unreachable_and_missing_endpoint(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["invoke", "add", "--input", "x=1", "--endpoint", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and len(err.strip().splitlines()) == 1
    monkeypatch.delenv("TRITIUM_ENDPOINT", raising=False)
    assert main(["invoke", "add", "--input", "x=1"]) == 2
    assert "TRITIUM_ENDPOINT" in capsys.readouterr().err


# -- the README's example --------------------------------------------------------------------------

def readme_example() -> str:
    """The first ```python block of README.md's "Python SDK" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md's Python SDK section has no python code block"
    return match.group(1)


def test_readme_example_runs_as_printed(tmp_path: Path) -> None:
    code = readme_example()
    assert 'model_id="minilm"' in code and "InferenceClient(" in code
    require_minilm_parts()
    up = start_up(MINILM / "isvc.yaml")
    try:
        endpoint = up.wait_ready()
        script = tmp_path / "example.py"
        script.write_text(code)
        env = {k: v for k, v in os.environ.items() if k != "TRITIUM_API_KEY"}
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                           env={**env, "TRITIUM_ENDPOINT": endpoint}, cwd=tmp_path)
    finally:
        up.stop()
    assert r.returncode == 0, r.stderr
    # The outputs the example's comments promise.
    expected = [m.group(1) for m in re.finditer(r"print\(.*\)\s+# (.+)", code)]
    assert r.stdout.splitlines() == expected, r.stdout
