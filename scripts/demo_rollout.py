"""`make demo-rollout`: blue-green rollouts in local mode, with a real Triton server per revision.

1. runs `tritium up -f COPY --watch` on a copy of examples/rollout/isvc.yaml (version 1, Y = X + 1)
   and starts a load generator: 8 requests in flight on the user's port, every answer counted;
2. changes the copy to version 2 (Y = X + 2): it gets 20 % of requests, passes analysis (every
   5 s, 15 s in all) and is promoted; the old revision is stopped 5 s later;
3. changes it to the broken version (30 % of its requests fail): analysis fails, it is rolled back;
4. stops the load and prints what served the requests, then stops `tritium up` with SIGTERM.

Exits non-zero when a rollout does not end as it should or a request failed on the stable path
(the broken version's own errors are the canary's, which analysis is there to catch).
`--verbose` shows every log line of the pipelines.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "rollout"
BODY = b'{"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}'


class DemoError(Exception):
    """A step failed: printed as one line, exit 1."""


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


class Up:
    """`tritium up --watch` as a subprocess; its rollout lines are shown, the rest kept for errors."""

    def __init__(self, manifest: Path, verbose: bool) -> None:
        exe = Path(sys.executable).with_name("tritium")
        argv = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from tritium.cli import main; main()"]
        self.process = subprocess.Popen([*argv, "up", "-f", str(manifest), "--watch"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.verbose = verbose
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.verbose or line.startswith(("[rollout]", "gateway:")):
                print(f"    {line}", flush=True)

    def wait(self, pattern: str, since: int = 0, timeout: float = 120.0) -> re.Match[str]:
        """The first line from line ``since`` on that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline, seen = time.monotonic() + timeout, since
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if m := regex.search(line):
                    return m
            seen = len(self.lines)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise DemoError(f"no line matching {pattern!r}; last lines:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Load:
    """8 requests in flight until stopped; answers counted by (status, revision that served it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: collections.Counter[tuple[int, str]] = collections.Counter()
        self.stable_failures = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            async def worker() -> None:
                while not self.done.is_set():
                    try:
                        async with session.post(f"{self.url}/v2/models/adder/infer", data=BODY,
                                                headers={"Content-Type": "application/json"}) as resp:
                            body = await resp.read()
                            broken = resp.status == 500 and b"regression" in body
                            who = resp.headers.get("X-Tritium-Revision") or ("broken canary" if broken else "?")
                            self.counts[(resp.status, who)] += 1
                            self.stable_failures += resp.status != 200 and not broken
                    except aiohttp.ClientError as exc:
                        self.counts[(0, type(exc).__name__)] += 1
                        self.stable_failures += 1
            await asyncio.gather(*(worker() for _ in range(8)))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(30)


def change_model(spec: Path, version: str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    text = re.sub(r"model-[a-z0-9]+", f"model-{version}", spec.read_text())
    tmp = spec.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(spec)


def run(verbose: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="tritium-demo-rollout-") as tmp:
        spec = Path(tmp) / "isvc.yaml"
        spec.write_text((EXAMPLE / "isvc.yaml").read_text().replace("file://./", f"file://{EXAMPLE}/"))
        step(f"1. tritium up -f {spec} --watch (version 1), and a load of 8 requests in flight")
        up = Up(spec, verbose)
        load: Load | None = None
        try:
            url = up.wait(r"^gateway: (http://\S+)")[1]
            stable = up.wait(r"Promoted: revision (\w+) is Ready and serves")[1]
            load = Load(url)
            time.sleep(2)

            step("2. version 2 (Y = X + 2): 20 % canary, analysis every 5 s for 15 s, then promotion")
            began, mark = time.monotonic(), len(up.lines)
            change_model(spec, "v2")
            good = up.wait(r"changed: revision (\w+) \(stable", mark)[1]
            up.wait(rf"Promoted: revision {good} is promoted", mark)
            up.wait(rf"revision {stable}: stopping its pipeline", mark)
            print(f"    promoted after {time.monotonic() - began:.1f}s")
            time.sleep(2)

            step("3. the broken version (30 % of its requests fail): analysis fails, rollback")
            began, mark = time.monotonic(), len(up.lines)
            change_model(spec, "broken")
            broken = up.wait(r"changed: revision (\w+) \(stable", mark)[1]
            up.wait(rf"RolledBack: revision {broken}", mark)
            print(f"    rolled back after {time.monotonic() - began:.1f}s")
            time.sleep(3)
        finally:
            if load is not None:
                load.stop()
            step("4. what served the requests; stop (SIGTERM)")
            if load is not None:
                print("    status  served by         requests")
                for (status, who), n in sorted(load.counts.items(), key=lambda kv: -kv[1]):
                    print(f"    {status:>6}  {who:<16}  {n:>8}")
            code = up.stop()
            print(f"    tritium up exited with code {code}")
        if load is None:
            raise DemoError("the load never started")
        print(f"    failed requests on the stable path: {load.stable_failures}")
        if load.stable_failures:
            raise DemoError(f"{load.stable_failures} request(s) failed on the stable path")
        if code != 0:
            raise DemoError(f"tritium up exited with code {code}; last lines:\n" + "\n".join(up.lines[-30:]))


def main() -> int:
    parser = argparse.ArgumentParser(description="Blue-green rollouts in local mode: one promoted, one rolled back.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every log line of the pipelines")
    args = parser.parse_args()
    try:
        run(args.verbose)
    except DemoError as exc:
        print(f"\ndemo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("\ndemo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
