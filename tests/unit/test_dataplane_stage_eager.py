"""A stage's Unix socket starts each message eagerly unless a user's async script runs inside.

Eager means the message's first step runs inside the socket's read, outside any task: right for
the stage's own code and for sync scripts (on the loop, or handed to the thread pool), wrong for
an async script that needs a task of its own (asyncio.timeout refuses to run without one).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tritium.api.spec import InferenceServiceSpec
from tritium.dataplane.http.stage_wire import StageWireClient, serve_wire
from tritium.dataplane.stages.server import StageProcessor, StageService
from tritium.dataplane.tensors import pack_message, unpack_message

MODEL = {"name": "m", "max_batch_size": 0, "inputs": {"x": ["FP32", [2]]}}
SCRIPTS = {
    "on the loop": "import asyncio\nBLOCKING = False\n\ndef preprocess(inputs, parameters):\n"
                   "    return {'x': [2.0, 4.0], 'task': asyncio.current_task() is not None}\n",
    "thread pool": "def preprocess(inputs, parameters):\n    return {'x': [2.0, 4.0]}\n",
    "async with a timeout": "import asyncio\n\nasync def preprocess(inputs, parameters):\n"
                            "    async with asyncio.timeout(1):\n        await asyncio.sleep(0)\n"
                            "    return {'x': [2.0, 4.0]}\n",
}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """AF_UNIX paths must stay under about 107 bytes."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="eager"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _service(directory: Path, script: str | None) -> StageService:
    pre: dict[str, object] = {"builtin": {"format": "json"}}
    if script is not None:
        (directory / "pre.py").write_text(script)
        pre = {"script": {"path": str(directory / "pre.py")}}
    spec = InferenceServiceSpec.model_validate({
        "model": {"name": "m", "storageUri": "file:///m", "format": "python"}, "preprocess": pre})
    return StageService(StageProcessor("pre", spec))


@pytest.mark.parametrize(("kind", "eager"), [("on the loop", True), ("thread pool", True),
                                             ("async with a timeout", False), ("built-in", True)])
async def test_each_kind_of_stage_answers_over_its_socket(short_dir: Path, kind: str, eager: bool) -> None:
    service = _service(short_dir, SCRIPTS.get(kind))
    assert service.eager is eager
    path = str(short_dir / "s.sock")
    server = await serve_wire(service.wire, path, eager=service.eager)
    client = StageWireClient(path)
    try:
        body, length = pack_message({"mode": "json", "model": MODEL, "parameters": {}, "inputs": {"x": [1, 2]}})
        async with asyncio.timeout(5):
            answers = await asyncio.gather(*(client.call(body, length, request_id=f"r{i}", timeout=1)
                                             for i in range(5)))
        for status, answer, answer_length in answers:
            assert status == 200, answer
            _, tensors, _ = unpack_message(answer, answer_length)
            expected = [2.0, 4.0] if kind != "built-in" else [1.0, 2.0]
            assert np.array_equal(tensors["x"], np.array(expected, dtype=np.float32))
            if kind == "on the loop":
                assert not tensors["task"].any()  # it ran inside the read, outside any task
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
