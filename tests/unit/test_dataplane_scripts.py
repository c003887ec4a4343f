"""User scripts: where their functions run, so that one slow request cannot stall a stage.

The waits below are threading.Events the test sets itself: the assertions are about order (the
quick call finished while the slow one was still held), never about how long anything took.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tritium.dataplane.config import ConfigError
from tritium.dataplane.stages.scripts import UserScript

# The test reaches into the loaded module to hold and release the slow call.
HELD = '''
import threading

{settings}
HOLD = threading.Event()
RUNNING = []
PEAK = [0]

def preprocess(inputs, parameters):
    RUNNING.append(1)
    PEAK[0] = max(PEAK[0], len(RUNNING))
    try:
        if parameters.get("hold"):
            assert HOLD.wait(30), "never released"
        return {{"thread": threading.current_thread().name}}
    finally:
        RUNNING.pop()
'''


def load(tmp_path: Path, settings: str = "") -> UserScript:
    path = tmp_path / "pre.py"
    path.write_text(HELD.format(settings=settings))
    return UserScript("pre", path, None)


async def test_a_sync_script_runs_in_the_pool_and_a_held_call_blocks_nobody(tmp_path: Path) -> None:
    script = load(tmp_path)
    slow = asyncio.ensure_future(script({}, {"hold": True}))
    while not script.module.RUNNING:
        await asyncio.sleep(0.001)
    quick = await script({}, {})
    assert quick["thread"].startswith("tritium-pre-script")
    assert not slow.done(), "the held call returned before it was released"
    script.module.HOLD.set()
    assert (await slow)["thread"].startswith("tritium-pre-script")


@pytest.mark.parametrize("threads", [1, 2])
async def test_threads_bounds_the_calls_running_at_once(tmp_path: Path, threads: int) -> None:
    script = load(tmp_path, f"THREADS = {threads}")
    calls = [asyncio.ensure_future(script({}, {"hold": True})) for _ in range(3)]
    while len(script.module.RUNNING) < threads:  # as many as the pool has threads get in
        await asyncio.sleep(0.001)
    script.module.HOLD.set()
    await asyncio.gather(*calls)
    assert script.module.PEAK[0] == threads


async def test_blocking_false_calls_on_the_event_loop(tmp_path: Path) -> None:
    script = load(tmp_path, "BLOCKING = False")
    assert script.executor is None
    assert (await script({}, {}))["thread"] == threading.current_thread().name


async def test_an_async_script_runs_on_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "pre.py"
    path.write_text("import threading\n\nasync def preprocess(inputs, parameters):\n"
                    "    return {'thread': threading.current_thread().name}\n")
    script = UserScript("pre", path, None)
    assert script.executor is None
    assert (await script({}, {}))["thread"] == threading.current_thread().name


@pytest.mark.parametrize(("settings", "message"), [
    ("THREADS = 0", "THREADS must be an integer from 1 to 64, not 0"),
    ("THREADS = 65", "THREADS must be an integer from 1 to 64, not 65"),
    ("THREADS = '4'", "THREADS must be an integer from 1 to 64, not '4'"),
    ("THREADS = True", "THREADS must be an integer from 1 to 64, not True"),
    ("BLOCKING = 'no'", "BLOCKING must be True or False, not 'no'"),
])
def test_bad_settings_are_refused_at_start_naming_them(tmp_path: Path, settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, settings)
