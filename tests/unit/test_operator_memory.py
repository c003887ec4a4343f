"""The operator process leaves out what it never uses (its memory target is in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from tritium.cli import without_kubernetes_client
without_kubernetes_client()
import tritium.controller.main, tritium.controller.handlers, kopf
assert sys.modules.get("kubernetes") is None, "kubernetes was imported"
assert not [m for m in sys.modules if m.startswith("kubernetes.")], "a kubernetes submodule was imported"
from kopf._cogs.helpers import thirdparty
assert thirdparty.V1ObjectMetaSync is None  # kopf took its path without the library
print("ok")
"""


def test_the_operator_process_does_not_load_the_kubernetes_client() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_without_it_kopf_would_load_it() -> None:
    """The probe above can fail: kopf does import the library when it is not marked absent."""
    probe = "import sys, kopf; print('kubernetes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


WORKER_PROBE = """
import asyncio, gc, logging, sys, weakref
import kopf
from kopf._core.reactor import queueing
from tritium.controller import handlers

settings = kopf.OperatorSettings()
if sys.argv[1] == "operator":
    handlers.configure(settings=settings, logger=logging.getLogger("probe"))


class Body(dict):
    pass  # a dict that a weak reference can follow


async def main() -> None:
    body = Body(metadata={"uid": "u-1", "name": "child", "resourceVersion": "1"})
    gone = weakref.ref(body)
    key = ("deployments", "u-1")
    streams = {key: queueing.Stream(backlog=asyncio.Queue(), pressure=asyncio.Event())}
    await streams[key].backlog.put({"type": "MODIFIED", "object": body})
    del body

    async def processor(*, raw_event, **_):
        return None

    worker = asyncio.create_task(queueing.worker(signaller=asyncio.Condition(), settings=settings,
                                                 processor=processor, streams=streams, key=key))
    await asyncio.sleep(1.5)
    gc.collect()
    print(settings.queueing.idle_timeout, worker.done(), gone() is None)
    worker.cancel()


asyncio.run(main())
"""


def _worker_after(settings: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", WORKER_PROBE, settings], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_an_idle_kopf_worker_lets_go_of_the_last_body_soon() -> None:
    """Under the operator's settings, a worker with no more events exits within 1.5 s and the last
    object it handled can be freed (a burst of 200 services otherwise kept ~50 MB of bodies)."""
    from tritium.controller.handlers import IDLE_WORKER_SECONDS

    assert _worker_after("operator") == [str(IDLE_WORKER_SECONDS), "True", "True"]


def test_with_kopfs_default_the_body_is_still_held() -> None:
    """The test above can fail: kopf's own 5 s keeps the worker, and the body, alive."""
    assert _worker_after("kopf") == ["5.0", "False", "False"]
