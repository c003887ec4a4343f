"""Failover and drain of one pod's processes, measured for real on loopback.

The processes are those `tritium up` runs and a pod holds (a real Triton, stage sidecars on Unix
sockets, the gateway: tests/support/dataplane.deploy), started directly because `tritium up`
stops its whole run as soon as one process dies, which is the event measured here.

- Triton SIGKILLed under steady load: the gateway's readiness fails within READY_WITHIN seconds
  and the requests of the outage are answered 503 at once, not held.
- A stage SIGKILLed: readiness fails within READY_WITHIN seconds and names the stage.
- The gateway SIGTERMed under load (the kubelet's signal after the preStop sleep): every request
  in flight is answered 200, new connections are refused (the listening socket is closed: the
  client gets ECONNREFUSED, not a 503), and the process exits within its drain bound
  (render/deployment.GATEWAY_DRAIN).

The measurements are functions so that benchmarks/failover_bench.py repeats them.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.dataplane import Deployment, base_spec, deploy, start_triton
from tritium.local.tritonserver import TritonServer
from tritium.render.deployment import GATEWAY_DRAIN

READY_WITHIN = 1.0  # the readiness promise: seconds from a process dying to /v2/health/ready failing
BODY = {"inputs": {"INPUT0": [1, 2], "INPUT1": [3, 4]}}

# A post stage whose requests take `parameters.sleep` seconds (asyncio: any number at once), and
# which notes each request it starts in the file `options.log`: the test knows what is in flight.
SLOW_POST = '''
import asyncio

LOG = None

def setup(options):
    global LOG
    LOG = options.get("log")

async def postprocess(outputs, parameters):
    if LOG:
        with open(LOG, "a") as f:
            f.write("started\\n")
    await asyncio.sleep(float(parameters.get("sleep", 0)))
    return {"SUM": outputs["SUM"]}
'''


@dataclass(frozen=True)
class Answer:
    started: float  # monotonic, before connecting
    ended: float
    status: int | None  # None: no HTTP answer
    error: str = ""  # "refused" (ECONNREFUSED), or the httpx error's class name


class Load:
    """`clients` threads, each sending one request after another (closed loop) until stopped.

    keep_alive: each client keeps its connection between requests (a browser, an SDK, a proxy
    in front); otherwise every request opens a new connection (Connection: close).
    """

    def __init__(self, url: str, body: dict[str, object], clients: int, keep_alive: bool = True) -> None:
        self.url, self.body, self.clients, self.keep_alive = url, body, clients, keep_alive
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=None if self.keep_alive else 0)
        headers = {} if self.keep_alive else {"Connection": "close"}
        with httpx.Client(timeout=30, limits=limits, headers=headers) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status: int | None = client.post(self.url, json=self.body).status_code
                    error = ""
                except httpx.ConnectError:
                    status, error = None, "refused"
                except httpx.HTTPError as exc:
                    status, error = None, type(exc).__name__
                with self._lock:
                    self.answers.append(Answer(started, time.monotonic(), status, error))
                if status is None:
                    time.sleep(0.02)  # nothing listens: do not spin

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


@dataclass(frozen=True)
class Probe:
    sent: float
    answered: float
    status: int | None
    body: str


class ReadinessPoller:
    """GET /v2/health/ready every `every` seconds in a thread, every answer kept."""

    def __init__(self, url: str, every: float = 0.01) -> None:
        self.url, self.every = f"{url}/v2/health/ready", every
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadinessPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.get(self.url)
                    status, body = r.status_code, r.text
                except httpx.HTTPError as exc:
                    status, body = None, type(exc).__name__
                self.probes.append(Probe(sent, time.monotonic(), status, body))
                self._stop.wait(self.every)

    def failed_after(self, since: float) -> Probe | None:
        """The first probe answered after `since` that did not get 200."""
        return next((p for p in list(self.probes) if p.answered >= since and p.status != 200), None)


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- Triton killed under load --------------------------------------------------------------------

@dataclass
class TritonKill:
    ready_failed_after: float  # seconds from SIGKILL to the first non-200 readiness answer
    ready_answer: Probe
    probes_after: list[Probe]  # readiness probes sent once it had failed
    before: list[Answer]  # requests answered before the kill
    outage: list[Answer]  # requests sent after the kill

    @property
    def outage_statuses(self) -> set[int | None]:
        return {a.status for a in self.outage}

    @property
    def outage_slowest(self) -> float:
        return max(a.ended - a.started for a in self.outage)


def measure_triton_kill(dep: Deployment, triton: TritonServer, clients: int = 4, outage: float = 1.5) -> TritonKill:
    """Steady load on `add`, SIGKILL Triton, watch readiness and the requests for `outage` seconds."""
    with Load(f"{dep.url}/v1/models/add/invoke", BODY, clients) as load, ReadinessPoller(dep.url) as poller:
        _wait(lambda: sum(a.status == 200 for a in load.snapshot()) >= 20 * clients, 20, "steady load")
        killed = time.monotonic()
        triton.kill()  # SIGKILL to Triton's process group (its Python stubs too)
        _wait(lambda: poller.failed_after(killed) is not None, 10, "readiness to fail")
        time.sleep(outage)
        load.stop()
    failed = poller.failed_after(killed)
    assert failed is not None
    answers = load.snapshot()
    return TritonKill(
        ready_failed_after=failed.answered - killed, ready_answer=failed,
        probes_after=[p for p in poller.probes if p.sent > failed.answered],
        before=[a for a in answers if a.ended < killed], outage=[a for a in answers if a.started > killed],
    )


# -- the gateway drained under load --------------------------------------------------------------

@dataclass
class Drain:
    in_flight: list[Answer]  # requests the post stage was running at SIGTERM
    after: list[Answer]  # requests started after SIGTERM
    refused_after: float | None  # seconds from SIGTERM until a new connection was refused
    exited_after: float  # seconds from SIGTERM until the gateway process had exited
    exit_code: int | None

    @property
    def in_flight_answered(self) -> int:
        return sum(a.status == 200 for a in self.in_flight)

    @property
    def accepted_after(self) -> list[Answer]:
        """Requests started after SIGTERM that the gateway took (any HTTP answer)."""
        return [a for a in self.after if a.status is not None]

    @property
    def refused(self) -> int:
        return sum(a.error == "refused" for a in self.after)

    @property
    def lost(self) -> list[Answer]:
        """Requests that got no HTTP answer for another reason than a refused connection (reset, timeout)."""
        return [a for a in (*self.in_flight, *self.after) if a.status is None and a.error != "refused"]


def _first_refusal(port: int, since: float, until: float) -> float | None:
    """Connect to the port every 5 ms: seconds from `since` to the first ECONNREFUSED."""
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except ConnectionRefusedError:
            return time.monotonic() - since
        except OSError:
            pass
        time.sleep(0.005)
    return None


def measure_drain(dep: Deployment, log: Path, clients: int = 6, seconds: float = 1.5,
                  keep_alive: bool = False) -> Drain:
    """`clients` clients in a closed loop on requests of `seconds` each; SIGTERM the gateway mid-way.

    The signal goes once every client's request is in the post stage (its log file says so) and
    half of `seconds` has passed: `clients` requests in flight, each with ~seconds/2 to go.
    """
    gateway = dep.gateway.popen
    assert gateway is not None
    port = int(dep.url.rsplit(":", 1)[1])
    log.write_text("")
    body = {**BODY, "parameters": {"sleep": seconds}}
    with Load(f"{dep.url}/v1/models/add/invoke", body, clients, keep_alive=keep_alive) as load:
        _wait(lambda: log.read_text().count("started") >= clients, 20, f"{clients} requests in the post stage")
        time.sleep(seconds / 2)
        signalled = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        refused_after = _first_refusal(port, signalled, signalled + 2)
        try:
            code: int | None = gateway.wait(GATEWAY_DRAIN + 10)
        except subprocess.TimeoutExpired:
            code = None
        exited = time.monotonic()
        time.sleep(0.2)  # the clients' attempts after the exit: refused too
        load.stop()
    answers = load.snapshot()
    return Drain(
        in_flight=[a for a in answers if a.started < signalled < a.ended],
        after=[a for a in answers if a.started > signalled],
        refused_after=refused_after, exited_after=exited - signalled, exit_code=code,
    )


def slow_deployment(directory: Path, triton: TritonServer, name: str) -> tuple[Deployment, Path]:
    """`add` behind a post stage whose requests sleep as long as they ask; -> (deployment, its start log)."""
    script, log = directory / "slow_post.py", directory / "post-started.log"
    script.write_text(SLOW_POST)
    spec = base_spec("add", postprocess={"script": {"path": str(script), "options": {"log": str(log)}}})
    return deploy(directory, triton, spec, name=name), log


# -- the tests -----------------------------------------------------------------------------------

@pytest.fixture
def private_triton() -> Iterator[TritonServer]:
    server = start_triton(models=("add",))  # not the session's: this one is killed
    try:
        yield server
    finally:
        server.stop()


def test_triton_killed_under_load_readiness_fails_within_a_second(tmp_path: Path,
                                                                   private_triton: TritonServer) -> None:
    dep = deploy(tmp_path, private_triton, base_spec("add"), name="killtriton")
    try:
        result = measure_triton_kill(dep, private_triton)
    finally:
        dep.stop()
    assert result.ready_failed_after <= READY_WITHIN, result.ready_answer
    assert result.ready_answer.status == 503 and "triton" in result.ready_answer.body, result.ready_answer
    assert result.probes_after and all(p.status == 503 for p in result.probes_after), "readiness came back"
    assert len(result.before) >= 80 and all(a.status == 200 for a in result.before)
    # The outage: every request is answered 503 (triton_unavailable, Retry-After), none is held.
    assert len(result.outage) >= 20, result.outage
    assert result.outage_statuses == {503}, result.outage_statuses
    assert result.outage_slowest < 1.0, f"a request of the outage took {result.outage_slowest:.2f} s"


@pytest.mark.parametrize("stage", ["pre", "post"])
def test_stage_killed_readiness_fails_within_a_second_and_names_it(tmp_path: Path, triton: TritonServer,
                                                                   stage: str) -> None:
    # Both stages on every invoke request (a post stage that changes nothing is skipped, pipeline.py).
    spec = base_spec("add", preprocess={"builtin": {"format": "json"}},
                     postprocess={"builtin": {"format": "json"}, "filter": {"include": ["SUM"]}})
    dep = deploy(tmp_path, triton, spec, name=f"kill{stage}")
    try:
        url = f"{dep.url}/v1/models/add/invoke"
        with ReadinessPoller(dep.url) as poller:
            _wait(lambda: any(p.status == 200 for p in poller.probes), 10, "readiness")
            killed = time.monotonic()
            dep.stages[stage].kill()  # SIGKILL
            _wait(lambda: poller.failed_after(killed) is not None, 10, "readiness to fail")
            started = time.monotonic()
            r = httpx.post(url, json=BODY, timeout=10)
            took = time.monotonic() - started
        failed = poller.failed_after(killed)
        assert failed is not None
        assert failed.answered - killed <= READY_WITHIN, failed
        assert failed.status == 503 and f"not ready: {stage}" in failed.body, failed
        assert r.status_code == 503 and r.json()["error"]["code"] == "stage_unavailable", r.text
        assert r.json()["error"]["field"] == stage and r.headers["Retry-After"] == "1"
        assert took < 1.0, f"a request to the dead {stage} stage took {took:.2f} s"
    finally:
        dep.stop()


def test_sigterm_under_load_answers_in_flight_and_refuses_new_connections(tmp_path: Path,
                                                                          triton: TritonServer) -> None:
    dep, log = slow_deployment(tmp_path, triton, "drain")
    try:
        result = measure_drain(dep, log, clients=6, seconds=1.5, keep_alive=False)
    finally:
        dep.stop()
    assert len(result.in_flight) == 6, result.in_flight
    assert result.in_flight_answered == 6, result.in_flight
    # What the server does once the drain starts: it closes its listening socket, so a new
    # connection is refused (ECONNREFUSED) at once; nothing is answered 503.
    assert result.refused_after is not None and result.refused_after < 0.5, result.refused_after
    assert result.accepted_after == [], result.accepted_after
    assert result.refused >= 6, result.after
    assert result.lost == [], result.lost
    assert result.exit_code == 0
    assert result.exited_after < GATEWAY_DRAIN, f"exited {result.exited_after:.1f} s after SIGTERM"
    assert result.exited_after < 1.5 + 2.0, "the drain waits for the requests in flight, not for its bound"


def test_sigterm_under_keep_alive_load_takes_no_new_requests(tmp_path: Path, triton: TritonServer) -> None:
    """Clients that keep their connections (the usual case behind a Service) must be told to go.

    Once the drain starts, an answer must carry `Connection: close` and end its connection, so
    that the client's next request goes to a new connection (refused here; another pod in a
    cluster). A connection left open gets the client's next request, which is either served
    after the drain began or lost when the server closes the connection under it; and clients
    that keep sending keep the drain from ending until its grace runs out, when the requests
    in flight are cut.
    """
    dep, log = slow_deployment(tmp_path, triton, "drainka")
    try:
        result = measure_drain(dep, log, clients=6, seconds=1.5, keep_alive=True)
    finally:
        dep.stop()
    assert result.in_flight_answered == len(result.in_flight) == 6, result.in_flight
    assert result.accepted_after == [], f"{len(result.accepted_after)} requests taken after SIGTERM"
    assert result.lost == [], f"{len(result.lost)} requests got no answer: {result.lost[:3]}"
    assert result.exit_code == 0
    assert result.exited_after < 1.5 + 2.0, f"exited {result.exited_after:.1f} s after SIGTERM"
