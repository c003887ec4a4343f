"""Serve the Kubernetes API emulator on a port, in its own process (for the operator benchmark).

kmock keeps every request for assertions and matches each new request against that whole
history, which makes it quadratic in the number of requests. The benchmark needs no history, so
this server forgets each request once answered and only counts the writes:
GET /_writes answers how many write calls (POST/PATCH/PUT/DELETE) it has served so far.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.kube_emulator import ClusterEmulator, running_emulator

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


class BenchEmulator(ClusterEmulator):
    """The test emulator without request history."""

    writes = 0

    async def _handle(self, request: Any) -> Any:
        if str(getattr(request.method, "value", request.method)).upper() in WRITE_METHODS:
            BenchEmulator.writes += 1
        try:
            return await super()._handle(request)
        finally:
            history = self._requests
            for i in range(len(history) - 1, -1, -1):
                if history[i] is request:
                    del history[i]
                    break


async def main(port: int) -> None:
    async with running_emulator(port, cls=BenchEmulator) as (emulator, url):
        emulator["get /_writes"] << (lambda: {"writes": BenchEmulator.writes})
        print(url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main(int(sys.argv[1])))
