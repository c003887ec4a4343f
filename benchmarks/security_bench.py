"""What the gateway's security layers cost a request: API key + IP allowlist + rate limit.

The gateway's real dispatcher (build_handler: routing, request id, metrics, and the security
layers) in one event loop, the model call replaced by an immediate answer, so the difference
between modes is the layers' own CPU. Modes alternate in rounds (the first one moving on by
one each round), medians reported; time.process_time over --dispatches requests per mode and round.

    python benchmarks/security_bench.py [--rounds 7] [--dispatches 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dataplane import base_spec, write_config  # noqa: E402
from tritium.dataplane.apikeys import entry, new_key  # noqa: E402
from tritium.dataplane.config import load_config  # noqa: E402
from tritium.dataplane.gateway import Gateway, GatewaySettings, build_handler  # noqa: E402
from tritium.dataplane.http_server import Request, Response  # noqa: E402
from tritium.dataplane.security import SecuritySettings  # noqa: E402

KEY = new_key()
HEADERS = {"content-type": "application/json", "content-length": "128", "host": "127.0.0.1:8080",
           "user-agent": "bench", "accept": "*/*", "authorization": f"Bearer {KEY}"}
BODY = json.dumps({"inputs": []}).encode()
KEYS = {"apiKeysSecretRef": {"name": "k", "key": "keys"}}
ALLOW = {"ipAllowlist": ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"]}
LIMIT = {"rateLimit": {"requestsPerSecond": 1e9, "burst": 10}}  # never refuses: the check's cost alone
MODES: dict[str, dict[str, Any]] = {
    "no security": {},
    "API key (10 keys in the file)": KEYS,
    "API key + allowlist": {**KEYS, **ALLOW},
    "API key + allowlist + rate limit (memory)": {**KEYS, **ALLOW, **LIMIT},
}


def _dispatcher(work: Path, security: dict[str, Any], keys_file: Path) -> Callable[[Request], Any]:
    config = load_config(write_config(work, base_spec("add", security=security), name=f"bench{len(security)}"))
    gateway = Gateway(GatewaySettings(config=config, triton_grpc="127.0.0.1:1", triton_http="http://127.0.0.1:1",
                                      security=SecuritySettings(api_keys_file=str(keys_file))))
    if gateway.security.keys is not None:
        gateway.security.keys.poll()
    answer = Response(200, b"{}", {"Content-Type": "application/json"})

    async def local(request: Request) -> Response:
        return answer

    gateway.v2_infer = local  # type: ignore[method-assign]
    return build_handler(gateway)


def _rounds(modes: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    names = list(modes)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(modes[name]())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dispatches", type=int, default=50_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tritium-security-bench-"))
    keys_file = work / "keys"
    keys_file.write_text("".join(entry(f"k{i}", new_key()) + "\n" for i in range(9)) + entry("bench", KEY) + "\n")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    dispatchers = {name: _dispatcher(work, sec, keys_file) for name, sec in MODES.items()}

    def measure(dispatch: Callable[[Request], Any]) -> float:
        async def run() -> float:
            start = time.process_time()
            for _ in range(args.dispatches):
                response = await dispatch(Request("POST", "/v2/models/add/infer", "", dict(HEADERS), BODY,
                                                  peer="127.0.0.1"))
                assert response.status == 200, response.body
            return (time.process_time() - start) / args.dispatches * 1e6

        return loop.run_until_complete(run())

    results = _rounds({name: (lambda d=d: measure(d)) for name, d in dispatchers.items()}, args.rounds)
    base = results["no security"]
    print(f"{'mode':<45} {'us/request':>10} {'extra (median of rounds)':>25}")
    for name, samples in results.items():
        extra = statistics.median(s - b for s, b in zip(samples, base, strict=True))
        print(f"{name:<45} {statistics.median(samples):>10.2f} {extra:>+25.2f}")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
