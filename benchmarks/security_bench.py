"""What the gateway's security layers cost a request: API key + IP allowlist + rate limit.

The gateway's real dispatcher (build_handler: routing, request id, metrics, and the security
layers) in one event loop, the model call replaced by an immediate answer, so the difference
between modes is the layers' own CPU. Modes alternate in rounds (the first one moving on by
one each round), medians reported; time.process_time over --dispatches requests per mode and round.

    python benchmarks/security_bench.py [--rounds 7] [--dispatches 50000]

With --tls it measures TLS on the API port instead: the same dispatcher behind the real server
(HttpServer on uvloop) in a child process, one loopback client sending requests one after
another, plain HTTP vs HTTPS (TLS 1.2 and 1.3) on one keep-alive connection, and a new TLS 1.3
connection (full handshake) per request. The figure is the server process' CPU per request
(utime + stime from /proc), so the client's own cost is left out; latency is the client's median.

    python benchmarks/security_bench.py --tls [--rounds 5] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workdir import work_dir  # noqa: E402

from tests.support.dataplane import base_spec, write_config  # noqa: E402
from tritium.dataplane.config import load_config  # noqa: E402
from tritium.dataplane.gateway import Gateway, GatewaySettings, build_handler  # noqa: E402
from tritium.dataplane.http.server import Request, Response  # noqa: E402
from tritium.dataplane.security.apikeys import entry, new_key  # noqa: E402
from tritium.dataplane.security.layers import SecuritySettings  # noqa: E402

KEY = new_key()
HEADERS = {"content-type": "application/json", "content-length": "128", "host": "127.0.0.1:8080",
           "user-agent": "bench", "accept": "*/*", "authorization": f"Bearer {KEY}"}
BODY = json.dumps({"inputs": []}).encode()
KEYS = {"apiKeysSecretRef": {"name": "k", "key": "keys"}}
ALLOW = {"ipAllowlist": ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"]}
LIMIT = {"rateLimit": {"requestsPerSecond": 1e9, "burst": 10}}  # never refuses: the check's cost alone
AUDIT = {"audit": {"enabled": True}}  # its lines go to /dev/null here (a pod's stdout is a pipe)
ALL_LAYERS = {**KEYS, **ALLOW, **LIMIT, **AUDIT}  # also what gateway_path_bench.py --security runs
MODES: dict[str, dict[str, Any]] = {
    "no security": {},
    "API key (10 keys in the file)": KEYS,
    "API key + allowlist": {**KEYS, **ALLOW},
    "API key + allowlist + rate limit (memory)": {**KEYS, **ALLOW, **LIMIT},
    "all four: + audit (a JSON line per request)": ALL_LAYERS,
}


def _dispatcher(work: Path, security: dict[str, Any], keys_file: Path) -> Callable[[Request], Any]:
    config = load_config(write_config(work, base_spec("add", security=security), name=f"bench{len(security)}"))
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the audit log's stream, kept open
    try:
        gateway = Gateway(GatewaySettings(config=config, triton_grpc="127.0.0.1:1",
                                          triton_http="http://127.0.0.1:1",
                                          security=SecuritySettings(api_keys_file=str(keys_file))))
    finally:
        sys.stdout = stdout
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


_REQUEST = (b"POST /v2/models/add/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(BODY), BODY))


def _serve(port: int, cert: str, key: str) -> None:
    """The child: the dispatcher on an HTTP port (port) and an HTTPS one (port + 1), until killed."""
    import uvloop

    from tritium.dataplane.http.server import HttpServer
    from tritium.dataplane.security.tls import CertificateReloader, TlsSettings

    work = work_dir("tritium-tls-bench-")

    async def run() -> None:
        dispatch = _dispatcher(work, {}, work / "none")
        server = HttpServer(dispatch)
        await server.listen("127.0.0.1", port)
        await server.listen("127.0.0.1", port + 1, CertificateReloader(TlsSettings(cert, key)).listening)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


def _cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tls_main(args: argparse.Namespace) -> int:
    import socket
    import ssl
    import subprocess

    from tests.support.certs import serving_ca, serving_cert
    from tritium.local.runner import free_ports

    work = work_dir("tritium-tls-bench-")
    ca = serving_ca(work)
    cert, key = serving_cert(work, "gateway")
    port = free_ports(1)[0]
    while True:  # port + 1 must be free too
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) != 0:
                break
        port = free_ports(1)[0]
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(cert), str(key)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"

    def context(version: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.minimum_version = ctx.maximum_version = version
        return ctx

    def exchange(sock: socket.socket | ssl.SSLSocket) -> None:
        sock.sendall(_REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head

    def connect(tls: ssl.SSLContext | None) -> socket.socket | ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port + (1 if tls else 0)))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw

    def keep_alive(tls: ssl.SSLContext | None) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            with connect(tls) as sock:
                exchange(sock)
                latencies = []
                cpu = _cpu_seconds(child.pid)
                for _ in range(args.requests):
                    began = time.perf_counter()
                    exchange(sock)
                    latencies.append(time.perf_counter() - began)
                cpu = _cpu_seconds(child.pid) - cpu
            return cpu / args.requests * 1e6, statistics.median(latencies) * 1e6
        return run

    def per_connection(tls: ssl.SSLContext) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            count = max(200, args.requests // 10)
            latencies = []
            cpu = _cpu_seconds(child.pid)
            for _ in range(count):
                began = time.perf_counter()
                with connect(tls) as sock:
                    exchange(sock)
                latencies.append(time.perf_counter() - began)
            cpu = _cpu_seconds(child.pid) - cpu
            return cpu / count * 1e6, statistics.median(latencies) * 1e6
        return run

    modes = {
        "HTTP, keep-alive": keep_alive(None),
        "HTTPS TLS 1.2, keep-alive": keep_alive(context(ssl.TLSVersion.TLSv1_2)),
        "HTTPS TLS 1.3, keep-alive": keep_alive(context(ssl.TLSVersion.TLSv1_3)),
        "HTTPS TLS 1.3, new connection each": per_connection(context(ssl.TLSVersion.TLSv1_3)),
    }
    try:
        names = list(modes)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                results[name].append(modes[name]())
    finally:
        child.kill()
        child.wait()
    base = results["HTTP, keep-alive"]
    print(f"{'mode':<40} {'server CPU us/req':>18} {'extra':>8} {'client p50 us':>14}")
    for name, samples in results.items():
        extra = statistics.median(s[0] - b[0] for s, b in zip(samples, base, strict=True))
        print(f"{name:<40} {statistics.median(s[0] for s in samples):>18.1f} {extra:>+8.1f} "
              f"{statistics.median(s[1] for s in samples):>14.1f}")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dispatches", type=int, default=50_000)
    parser.add_argument("--tls", action="store_true", help="measure TLS on the API port (see above)")
    parser.add_argument("--requests", type=int, default=5_000, help="--tls: requests per mode and round")
    args = parser.parse_args()
    if args.tls:
        return _tls_main(args)
    work = work_dir("tritium-security-bench-")
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
