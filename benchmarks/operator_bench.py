"""Operator benchmark: N InferenceServices created at once (`make bench-operator`, `make bench-operator-real`).

Runs `tritium operator` as a process of its own (so its RSS is its own) against one of:

- the API emulator (default; kmock, `benchmarks/emulator_server.py`), another process;
- with --real and no KUBECONFIG: a control plane of its own (tests/support/cluster.py: etcd,
  kube-apiserver, kube-controller-manager, simulated nodes that run pods Ready), started in a temp
  directory with the CRD installed and a namespace created, stopped afterwards;
- with --real and KUBECONFIG set: that cluster (CRD installed), as the e2e tests do.

It creates N services concurrently and reports: seconds until every one has all its children and
a status (observedGeneration 1 and a phase; followed by one watch per kind, or with --progress poll
by lists every half second), and on its own control plane also until every one is
Ready (status phase Ready, condition Ready=True: the simulated pods come up); the operator's peak
RSS; write calls per service; and, over a steady-state window, write calls and the objects whose
resourceVersion changed (the services and all their children, listed before and after).

Writes are counted in the operator process itself (every non-GET HTTP call it makes, kopf's
bookkeeping included; `aiohttp.ClientSession._request` wrapped), and also read from the operator's
own metric (tritium_operator_api_writes_total); with the emulator, also from the emulator.

With --rollouts (real mode only), the services are created with
`rollout: {analysis: {intervalSeconds: 30, durationSeconds: 86400}}` and, once all are Ready and the
steady state above is measured, each one's spec.model.maxBatchSize is patched at once: a canary
revision each, analysed every 30 s for a day, so all canaries stay in flight. It reports the
seconds until every service's canary is started (its children applied and the status saying so:
the rollout's "done"), the seconds until every service has its canary Ready at its weight (status.rollout.phase Canary,
status.canaryWeight 5), the write calls per service for starting the rollout, and over a second
steady window the write calls per service per analysis interval (the builtin provider finds
nothing listening on the simulated pods, so each measurement is Inconclusive: one status write per
service per interval by design) and the objects other than the services whose resourceVersion
changed (none expected: children are not rewritten while a canary waits).

With --floor (a control plane of its own, KUBECONFIG unset), no operator runs: the benchmark does
the same cluster work itself, to tell what this machine's control plane takes for it at all. It
creates the N services as above and, for each as soon as it is created, renders its children with
the operator's renderer (`render_children(parse_inference_service(created))`, the operator's
default images) and applies them in that order with server-side apply (KubeClient.apply, the
operator's client, so the same field manager and pool of CONNECTIONS connections; the creates and
the polling go through a second client, as in the normal mode), all services at once. It reports
the seconds until every child is applied (to compare with "done") and until every Deployment is
available (observedGeneration current, availableReplicas at spec.replicas: to compare with
"Ready"), the CPU seconds of each process until then, what the API server was busy with, and the
write calls per service. What the operator does besides is left out: its watches, its reads, its
status writes, kopf's finalizer and bookkeeping, the Events. A call that fails retriably is
retried after 1 s (at most 5 tries) and counted.

On a control plane of its own, --controller-manager-qps N raises the API request rate of
kube-controller-manager's controllers (--kube-api-qps N, --kube-api-burst 2N; Kubernetes' default is
20 and 30). With the default, the ReplicaSet controller creating hundreds of pods at 20 per second is
what "Ready" waits for; raised, what is left is this machine's CPU and the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.operator_scenarios import CHILD_KINDS, make_isvc  # noqa: E402
from tritium.controller.kube import ApiError, KubeClient, object_path  # noqa: E402

CHILDREN = tuple(CHILD_KINDS)  # every kind the operator makes for one service (the e2e tests' list)
MANAGED = "app.kubernetes.io/managed-by=tritium-operator"
OWNER_LABEL = "serving.tritium.dev/inferenceservice"
ISVCS = "/apis/serving.tritium.dev/v1alpha1/namespaces/{ns}/inferenceservices"
# --rollouts: each canary is analysed every 30 s for a day, so it stays in flight; weight 5 % (the default).
ROLLOUT = {"analysis": {"intervalSeconds": 30, "durationSeconds": 86400}}
CANARY_WEIGHT = 5

# Started instead of `python -m tritium.cli`: counts every write call the operator process makes
# (kopf's and the operator's own) in a metric on the operator's metrics port, then runs the CLI.
OPERATOR_MAIN = '''\
import os
import re
import sys

import aiohttp
from prometheus_client import Counter
from yarl import URL

WRITES = Counter("bench_operator_process_writes_total", "Write calls of this process.", ["verb", "resource"])
_PATH = re.compile(r"^(?:/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/([^/?]+)(?:/[^/?]+(/[^/?]+)?)?")
_request = aiohttp.ClientSession._request


async def _counted(self, method, str_or_url, *args, **kwargs):
    if str(method).upper() not in ("GET", "HEAD", "OPTIONS"):
        found = _PATH.match(URL(str_or_url).path)
        resource = (found.group(1) + (found.group(2) or "")) if found else "other"
        WRITES.labels(str(method).lower(), resource).inc()
    return await _request(self, method, str_or_url, *args, **kwargs)


aiohttp.ClientSession._request = _counted

if os.environ.get("BENCH_OPERATOR_TRACEMALLOC"):  # a file: SIGUSR1 writes Python allocations there
    import signal
    import tracemalloc

    tracemalloc.start(int(os.environ.get("BENCH_OPERATOR_TRACEMALLOC_FRAMES", "1")))

    def _dump(*_):
        current, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        with open(os.environ["BENCH_OPERATOR_TRACEMALLOC"], "w") as out:
            out.write(f"traced now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB\\n")
            for group in ("filename", "traceback"):
                out.write(f"--- by {group}\\n")
                for stat in snapshot.statistics(group)[:25]:
                    where = " > ".join(str(frame) for frame in stat.traceback)
                    out.write(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d} blocks  {where}\\n")

    signal.signal(signal.SIGUSR1, _dump)

from tritium.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (not its children)."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def nodes_for(n: int, canaries: bool = False) -> int:
    """Simulated nodes enough for the pods of n services (the test plane's 2 at least, one spare),
    and with canaries for one canary pod per service as well (the canary's pods are the same)."""
    from tests.support.nodesim import CAPACITY, parse_quantity, pod_requests
    from tritium.api.resource import parse_inference_service
    from tritium.images import DEFAULT_IMAGES
    from tritium.render import render_children
    from tritium.render.metadata import revision_of

    body = make_isvc("sizing", "sizing")
    isvc = parse_inference_service(body)
    deployment = next(o for o in render_children(isvc, revision_of(isvc.spec, DEFAULT_IMAGES), DEFAULT_IMAGES)
                      if o["kind"] == "Deployment")
    wanted = pod_requests(deployment["spec"]["template"])
    per_node = min([int(parse_quantity(CAPACITY["pods"]))] + [
        int(parse_quantity(CAPACITY[k]) // v) for k, v in wanted.items() if k in CAPACITY and v > 0])
    pods = n * int(body["spec"]["autoscaling"]["minReplicas"]) + (n if canaries else 0)
    return max(2, math.ceil(pods / per_node) + 1)


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """{metric name: {label string: value}} of a Prometheus text exposition."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        out.setdefault(name, {})[labels.rstrip("}")] = float(value)
    return out


def labelled(samples: dict[str, float], *names: str) -> dict[str, float]:
    """Samples keyed by the values of the given labels, joined with a space."""
    out: dict[str, float] = {}
    for labels, value in samples.items():
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = " ".join(found.get(n, "") for n in names)
        out[key] = out.get(key, 0.0) + value
    return out


def controller_manager_rate(plane: Any) -> int | str:
    """kube-controller-manager's API rate on ``plane``, as the results report it."""
    return plane.controller_manager_qps or "default (20, burst 30)"


class Target:
    """What the operator runs against: the emulator, a control plane of our own, or KUBECONFIG's cluster."""

    def __init__(self, mode: str, workdir: Path, n: int, namespace: str, canaries: bool = False,
                 controller_manager_qps: int | None = None) -> None:
        self.mode, self.workdir, self.namespace = mode, workdir, namespace
        self.emulator: subprocess.Popen[str] | None = None
        self.plane: Any = None
        self.url = ""
        self.env = dict(os.environ)
        if mode == "emulator":
            self._start_emulator()
        elif mode == "plane":
            self._start_plane(n, canaries, controller_manager_qps)
        else:
            self.kubeconfig = os.environ["KUBECONFIG"]

    def _start_emulator(self) -> None:
        python_args = os.environ.get("BENCH_EMULATOR_PY_ARGS", "").split()  # e.g. "-m cProfile -o emu.prof"
        self.emulator = subprocess.Popen([sys.executable, *python_args, str(ROOT / "benchmarks/emulator_server.py"),
                                          str(free_port())], stdout=subprocess.PIPE, text=True)
        self.url = self.emulator.stdout.readline().strip() if self.emulator.stdout else ""
        self.kubeconfig = str(self.workdir / "kubeconfig")
        Path(self.kubeconfig).write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": self.url}}],
            "users": [{"name": "bench", "user": {"token": "bench"}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        }))

    def _start_plane(self, n: int, canaries: bool, controller_manager_qps: int | None) -> None:
        from tests.support.cluster import ControlPlane

        nodes = nodes_for(n, canaries)
        started = time.perf_counter()
        self.plane = ControlPlane(self.workdir / "plane", nodes=nodes, controller_manager_qps=controller_manager_qps)
        self.plane.start()
        self.env = self.plane.env
        self.kubeconfig = str(self.plane.kubeconfig)
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        self.plane.wait_crd_established("inferenceservices.serving.tritium.dev")
        self.kubectl("create", "namespace", self.namespace)
        print(f"control plane with {nodes} simulated nodes ready in {time.perf_counter() - started:.1f} s "
              f"(logs in {self.workdir / 'plane'})", file=sys.stderr)

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(["kubectl", *args], env=self.env, capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apiserver_requests(self) -> dict[str, dict[str, float]]:
        """kube-apiserver's request counts and seconds so far, by 'VERB resource[/subresource]'
        (own control plane only; watches, which stay open, are left out of the seconds)."""
        if self.plane is None:
            return {}
        status, body = self.plane.get("/metrics")
        if status != 200:
            return {}
        found = parse_metrics(body.decode(errors="replace"))
        out: dict[str, dict[str, float]] = {"count": {}, "seconds": {}}
        metrics = (("count", "apiserver_request_total"), ("seconds", "apiserver_request_duration_seconds_sum"))
        for field, metric in metrics:
            for labels, value in found.get(metric, {}).items():
                tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if field == "seconds" and tags.get("verb") in ("WATCH", "WATCHLIST", "CONNECT"):
                    continue
                key = f"{tags.get('verb', '')} {tags.get('resource', '')}" + (
                    f"/{tags['subresource']}" if tags.get("subresource") else "")
                out[field][key] = out[field].get(key, 0.0) + value
        return out

    def pids(self) -> dict[str, int]:
        if self.emulator is not None:
            return {"emulator": self.emulator.pid}
        if self.plane is not None:
            return {name: proc.pid for name, proc in self.plane.processes.items()}
        return {}

    @property
    def real(self) -> bool:
        return self.mode != "emulator"

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.terminate()
            self.emulator.wait(30)
        if self.plane is not None:
            self.plane.stop()


async def children(client: KubeClient, kind: str, namespace: str) -> list[dict[str, Any]]:
    """The operator's children of one kind, from the watch cache; none while the API does not know
    the kind yet (the emulator declares a kind on its first write)."""
    try:
        return await client.list(kind, namespace, MANAGED, from_cache=True)
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise


class Progress:
    """Polls the API: how many services are done (children + status) and how many are Ready.

    From the API server's watch cache, so the benchmark's own lists, several every half second,
    weigh as little as they can on the control plane whose time is measured. Used with
    ``--progress poll``; WatchedProgress (the default) costs the API server less still.
    """

    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.complete: set[str] = set()  # services with every child kind seen
        self.expected: set[str] = set()

    async def start(self) -> None:
        """Nothing to start: each poll lists."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def poll(self) -> tuple[int, int]:
        isvcs = await self.client.list("InferenceService", self.namespace, "", from_cache=True)
        if self.complete < self.expected or not self.expected:
            owned = []
            for kind in CHILDREN:  # children are only listed until every service has all of them
                for item in await children(self.client, kind, self.namespace):
                    owner = (item["metadata"].get("labels") or {}).get(OWNER_LABEL)
                    if owner:
                        owned.append((owner, kind))
            self.complete = with_every_child(owned)
        return count_done_and_ready(isvcs, self.complete)


def with_every_child(owned: list[tuple[str, str]]) -> set[str]:
    """The services that own a child of every kind in CHILDREN, from (owner, child kind) pairs."""
    have: dict[str, set[str]] = {}
    for owner, kind in owned:
        have.setdefault(owner, set()).add(kind)
    return {name for name, kinds in have.items() if kinds >= set(CHILDREN)}


def count_done_and_ready(isvcs: list[dict[str, Any]], complete: set[str]) -> tuple[int, int]:
    """Services with every child and a status of generation 1 (done), and those also Ready."""
    done = ready = 0
    for item in isvcs:
        if item["metadata"]["name"] not in complete:
            continue
        status = item.get("status") or {}
        if status.get("observedGeneration") == 1 and status.get("phase"):
            done += 1
        if status.get("phase") == "Ready" and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            ready += 1
    return done, ready


class WatchedProgress(Progress):
    """The same counts as Progress, kept from one watch per kind instead of lists every half second.

    The lists (8 every half second, each up to 200 whole objects with their managedFields) made the
    API server encode every object again twice a second while the operator's work was measured; a
    watch sends each change once. The streams run on a session of their own, outside the client's
    pool of CONNECTIONS, which the creates and the steady-state reads still use. Each starts with
    one list from the watch cache; a stream the API server ends (its timeout) is opened again from
    the last resourceVersion seen, and an ERROR event (410 Gone) starts again with a list.
    """

    def __init__(self, client: KubeClient, namespace: str) -> None:
        super().__init__(client, namespace)
        self.services: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, dict[str, str]] = {kind: {} for kind in CHILDREN}  # kind -> child name -> owner
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._synced: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        auth = self.client._auth
        assert auth is not None
        self._session = aiohttp.ClientSession(
            headers=auth.headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0, ssl=auth.ssl))
        for kind in ("InferenceService", *CHILDREN):
            self._synced[kind] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._watch(kind)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._synced.values())), 60)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _watch(self, kind: str) -> None:
        """List from the watch cache, then watch from that list's resourceVersion (as kopf does: a
        watch from resourceVersion 0 needs a storage feature this API server may have off)."""
        assert self._session is not None and self.client._auth is not None
        url = self.client._auth.server + object_path(kind, self.namespace)
        selector = {"labelSelector": MANAGED} if kind != "InferenceService" else {}
        version = ""
        while True:
            try:
                if not version:
                    async with self._session.get(url, params={"resourceVersion": "0", **selector}) as resp:
                        if resp.status == 404:  # the emulator declares a kind on its first write
                            self._synced[kind].set()
                            await asyncio.sleep(0.5)
                            continue
                        resp.raise_for_status()
                        listed = await resp.json()
                    for obj in listed.get("items") or []:
                        self._note(kind, "ADDED", obj)
                    version = str(listed["metadata"]["resourceVersion"])
                    self._synced[kind].set()
                params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                          "timeoutSeconds": "300", **selector}
                async with self._session.get(url, params=params) as resp:
                    resp.raise_for_status()
                    async for line in resp.content:
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":  # e.g. 410 Gone: list again
                            version = ""
                            await asyncio.sleep(0.5)
                            break
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if event.get("type") != "BOOKMARK":
                            self._note(kind, str(event.get("type")), obj)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)

    def _note(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "InferenceService":
            if type_ == "DELETED":
                self.services.pop(name, None)
            else:
                self.services[name] = {"metadata": {"name": name}, "status": obj.get("status") or {}}
            return
        owner = (obj["metadata"].get("labels") or {}).get(OWNER_LABEL)
        if type_ == "DELETED" or not owner:
            self.owners[kind].pop(name, None)
        else:
            self.owners[kind][name] = owner

    async def poll(self) -> tuple[int, int]:
        self.complete = with_every_child([(owner, kind) for kind, owners in self.owners.items()
                                          for owner in owners.values()])
        return count_done_and_ready(list(self.services.values()), self.complete)


# Writers of the cluster's own controllers (managedFields' manager): a change they make in a steady
# window (the HPA controller rewriting an HPA's status when it cannot read a metric) is not the
# operator's; any other writer's change is counted against it.
CLUSTER_WRITERS = ("kube-controller-manager",)


def last_writer(item: dict[str, Any]) -> str:
    """The field manager (and subresource) of the latest entry in the object's managedFields."""
    entries = (item.get("metadata") or {}).get("managedFields") or []
    if not entries:
        return "unknown"
    last = max(entries, key=lambda e: str(e.get("time") or ""))
    return str(last.get("manager")) + (f"/{last['subresource']}" if last.get("subresource") else "")


async def versions(client: KubeClient, namespace: str) -> dict[str, tuple[str, str]]:
    """(resourceVersion, last writer) of every service and every child in the namespace, by 'Kind/name'."""
    out: dict[str, tuple[str, str]] = {}
    for item in (await client._request("GET", ISVCS.format(ns=namespace))).get("items") or []:
        out[f"InferenceService/{item['metadata']['name']}"] = (str(item["metadata"]["resourceVersion"]),
                                                               last_writer(item))
    for kind in CHILDREN:
        for item in await children(client, kind, namespace):
            out[f"{kind}/{item['metadata']['name']}"] = (str(item["metadata"]["resourceVersion"]), last_writer(item))
    return out


def changed_between(before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]],
                    kinds: tuple[str, ...] | None = None) -> tuple[list[str], Counter[str]]:
    """The objects whose resourceVersion changed (of ``kinds``, else all), and their last writers."""
    changed = sorted(k for k in before.keys() | after.keys()
                     if (kinds is None or k.split("/")[0] in kinds)
                     and before.get(k, ("", ""))[0] != after.get(k, ("", ""))[0])
    return changed, Counter(after.get(k, ("", "deleted"))[1] for k in changed)


def not_by_the_cluster(writers: Counter[str]) -> int:
    return sum(n for w, n in writers.items() if not w.startswith(CLUSTER_WRITERS))


def log_summary(path: Path) -> dict[str, Any]:
    """Warning and error lines of the operator's log, counted, with the most frequent messages."""
    if not path.exists():
        return {}
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        found = re.search(r"\b(WARNING|ERROR|CRITICAL)\b\s*(.*)", line)
        if found:
            levels[found.group(1)] += 1
            # One entry per kind of message: names and numbers vary between services.
            messages[re.sub(r"\b(svc-\d+\S*|[0-9a-f]{6,}|\d+(\.\d+)?)\b", "#", found.group(2))[:160]] += 1
        elif "Traceback" in line:
            levels["Traceback"] += 1
    return {"levels": dict(levels), "top": dict(messages.most_common(5))}


def login(kubeconfig: str) -> KubeClient:
    """A client of the operator's own kind (its pool of CONNECTIONS) on the kubeconfig's credentials."""
    os.environ["KUBECONFIG"] = kubeconfig
    client = KubeClient()
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    client.set_credentials(info)
    return client


def top_requests(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What the API server was busy with between two apiserver_requests() (everyone's requests)."""
    out: dict[str, Any] = {}
    for field in after:
        grown = {k: v - before.get(field, {}).get(k, 0.0) for k, v in after[field].items()}
        top = sorted(grown.items(), key=lambda kv: -kv[1])[:8]
        out[f"apiserver_top_requests_by_{field}"] = {k: round(v, 1) for k, v in top}
    return out


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def canary_started(item: dict[str, Any], old_revision: str | None) -> bool:
    """The operator took the change up: a canary revision other than the old one is in flight.

    The status (phase Pending) is written at the end of the reconcile that applied the canary's
    children, so this is the rollout's "done" (the creation's counterpart: children applied, status
    written); its pods being Ready is what canary_at_weight waits for, as "Ready" does after the
    creation.
    """
    status = item.get("status") or {}
    canary = status.get("canaryRevision")
    return bool(canary) and canary != old_revision and (status.get("rollout") or {}).get("phase") in (
        "Pending", "Starting", "Canary")


def canary_at_weight(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    return (status.get("rollout") or {}).get("phase") == "Canary" and status.get("canaryWeight") == CANARY_WEIGHT


def analysis_results(items: list[dict[str, Any]]) -> Counter[str]:
    """The measurements recorded in the services' status.analysis (the last 10 of each), by result."""
    return Counter(str(a.get("result")) for item in items for a in (item.get("status") or {}).get("analysis") or [])


async def run(n: int, steady_seconds: float, timeout: float, mode: str, ns: str,
              rollouts: bool = False, controller_manager_qps: int | None = None,
              progress_mode: str = "watch") -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tritium-opbench-"))
    target = Target(mode, workdir, n, ns, canaries=rollouts, controller_manager_qps=controller_manager_qps)
    metrics_port = free_port()
    log_path = Path(os.environ.get("BENCH_OPERATOR_LOG") or workdir / "operator.log")
    log = open(log_path, "w")  # noqa: SIM115
    main_script = workdir / "operator_main.py"
    main_script.write_text(OPERATOR_MAIN)
    operator = subprocess.Popen(
        [sys.executable, *os.environ.get("BENCH_OPERATOR_PY_ARGS", "").split(), str(main_script),
         "operator", "--metrics-port", str(metrics_port), "--liveness-port", str(free_port()),
         *(["--namespace", ns] if target.real else [])],
        env={**target.env, "KUBECONFIG": target.kubeconfig}, stdout=subprocess.DEVNULL, stderr=log,
    )
    client = login(target.kubeconfig)
    results: dict[str, Any] = {"n": n, "target": {"emulator": "API emulator", "plane": "own control plane",
                                                  "kubeconfig": "KUBECONFIG cluster"}[mode],
                               "load_average_1m_at_start": load_average()}
    if target.plane is not None:
        results["simulated_nodes"] = target.plane.nodes
        results["controller_manager_qps"] = controller_manager_rate(target.plane)
    names = [f"svc-{i:04d}" for i in range(n)]
    try:
        async with aiohttp.ClientSession() as session:
            async def metrics() -> dict[str, dict[str, float]]:
                async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                    return parse_metrics(await resp.text())

            async def counts() -> dict[str, float]:
                """Write calls so far: the operator process's, the operator's own metric, the emulator's."""
                m = await metrics()
                out = {"process": sum(m.get("bench_operator_process_writes_total", {}).values()),
                       "own": sum(m.get("tritium_operator_api_writes_total", {}).values())}
                if target.emulator is not None:
                    async with session.get(f"{target.url}/_writes") as resp:
                        out["emulator"] = float((await resp.json())["writes"])
                return out

            deadline = time.monotonic() + 60
            while True:  # the operator's metrics answer once it has imported and started
                try:
                    await metrics()
                    break
                except aiohttp.ClientError:
                    if operator.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the operator did not start; its log: {log_path}") from None
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # operator start-up (login, discovery, watches)
            base = await counts()
            base_by_kind = await metrics()
            pids = {"operator": operator.pid, **target.pids(), "benchmark": os.getpid()}
            cpu_before = cpu_seconds(pids)
            requests_before = target.apiserver_requests()
            results["operator_rss_before_mb"] = round(rss_mb(operator.pid), 1)
            progress = (WatchedProgress if progress_mode == "watch" else Progress)(client, ns)
            progress.expected = set(names)
            results["progress"] = progress_mode
            await progress.start()  # before the creates: the streams see each service from its ADDED on
            started = time.perf_counter()
            await asyncio.gather(*(
                client._request("POST", ISVCS.format(ns=ns),
                                body=make_isvc(name, ns, **({"rollout": ROLLOUT} if rollouts else {})))
                for name in names
            ))
            # The creates themselves (the schema's CEL rules run on each) bound "done" from below.
            results["seconds_to_all_created"] = round(time.perf_counter() - started, 2)
            if "emulator" in base:
                base["emulator"] += n  # the benchmark's own creates
            done = ready = 0
            wait_ready = mode == "plane"  # only simulated pods are sure to come up
            quartiles: dict[str, float] = {}  # when a quarter, half, ... of the services were done
            while time.perf_counter() - started < timeout:
                await asyncio.sleep(0.5)
                done, ready = await progress.poll()
                for share in (25, 50, 75):
                    if done * 100 >= share * n and f"{share}%" not in quartiles:
                        quartiles[f"{share}%"] = round(time.perf_counter() - started, 1)
                if done == n and "seconds_to_all_done" not in results:
                    results["seconds_to_share_done"] = quartiles
                    results["seconds_to_all_done"] = round(time.perf_counter() - started, 2)
                if done == n and (not wait_ready or ready == n):
                    break
            await progress.stop()
            cpu_after = cpu_seconds(pids)
            results["cpu_seconds_until_then"] = {k: round(v - cpu_before.get(k, 0.0), 1) for k, v in cpu_after.items()}
            results.update(top_requests(requests_before, target.apiserver_requests()))
            results.setdefault("seconds_to_all_done", None)
            results["done"] = done
            if wait_ready:
                results["seconds_to_all_ready"] = round(time.perf_counter() - started, 2) if ready == n else None
                results["ready"] = ready
            await asyncio.sleep(5)  # late events (e.g. watch echoes of our own writes)
            after_create = await counts()
            by_kind = await metrics()
            for key in after_create:
                label = {"process": "writes_per_service", "own": "operator_own_writes_per_service",
                         "emulator": "emulator_writes_per_service"}[key]
                results[label] = round((after_create[key] - base[key]) / n, 2)
            for name, labels, field in (("bench_operator_process_writes_total", ("verb", "resource"),
                                         "writes_by_call"),
                                        ("tritium_operator_api_writes_total", ("verb", "kind"), "own_writes_by_kind")):
                now, before = labelled(by_kind.get(name, {}), *labels), labelled(base_by_kind.get(name, {}), *labels)
                results[field] = {k: round(v - before.get(k, 0.0)) for k, v in sorted(now.items())
                                  if v != before.get(k, 0.0)}

            before_versions = await versions(client, ns)
            before_steady = await counts()
            cpu_before = cpu_seconds(pids)
            await asyncio.sleep(steady_seconds)
            cpu_after = cpu_seconds(pids)
            after_steady = await counts()
            after_versions = await versions(client, ns)
            changed, writers = changed_between(before_versions, after_versions)
            results["steady_state_seconds"] = steady_seconds
            results["steady_state_writes"] = round(after_steady["process"] - before_steady["process"])
            results["steady_state_operator_own_writes"] = round(after_steady["own"] - before_steady["own"])
            if "emulator" in after_steady:
                results["steady_state_emulator_writes"] = round(after_steady["emulator"] - before_steady["emulator"])
            results["steady_state_objects_sampled"] = len(before_versions)
            results["steady_state_changed_objects"] = len(changed)
            if changed:
                results["steady_state_changed_by_kind"] = dict(Counter(k.split("/")[0] for k in changed))
                results["steady_state_changed_by_writer"] = dict(writers)
                results["steady_state_changed_examples"] = changed[:5]
            results["steady_state_changed_not_by_cluster_controllers"] = not_by_the_cluster(writers)
            results["steady_state_cpu_seconds"] = {k: round(v - cpu_before.get(k, 0.0), 1)
                                                   for k, v in cpu_after.items()}
            if rollouts:
                results.update(await rollout_phase(client, ns, names, counts, metrics, pids, steady_seconds,
                                                   timeout))
            results["operator_peak_rss_mb"] = round(peak_rss_mb(operator.pid), 1)
            results["operator_rss_at_end_mb"] = round(rss_mb(operator.pid), 1)
            if os.environ.get("BENCH_OPERATOR_TRACEMALLOC"):
                operator.send_signal(signal.SIGUSR1)
                await asyncio.sleep(5)

            final = await metrics()
            duration = final.get("tritium_operator_reconcile_duration_seconds_count", {})
            total = final.get("tritium_operator_reconcile_duration_seconds_sum", {})
            count = sum(duration.values())
            results["reconciles"] = labelled(final.get("tritium_operator_reconciles_total", {}), "result")
            results["reconcile_mean_ms"] = round(1000 * sum(total.values()) / count, 1) if count else None
            results["operator_errors"] = labelled(final.get("tritium_operator_errors_total", {}), "kind")
            if target.real:
                events = await client.list("Event", ns, "")
                results["events_by_source_reason"] = dict(Counter(
                    f"{(e.get('source') or {}).get('component', '')} {e.get('reason', '')}" for e in events))
            if mode == "kubeconfig":  # leave the cluster as it was
                await asyncio.gather(*(client.delete("InferenceService", ns, name) for name in names))
    finally:
        await client.close()
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            print("the operator did not stop within 30 s of SIGTERM: killed", file=sys.stderr)
            operator.kill()
            operator.wait(10)
        log.close()
        results["operator_log"] = log_summary(log_path)
        results["load_average_1m_at_end"] = load_average()
        target.stop()
        keep = os.environ.get("BENCH_KEEP_DIR")
        if keep:
            print(f"benchmark files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


async def rollout_phase(client: KubeClient, ns: str, names: list[str], counts: Any, metrics: Any,
                        pids: dict[str, int], steady_seconds: float, timeout: float) -> dict[str, Any]:
    """--rollouts: every service's model changed at once; its canary to weight, then a steady window."""
    n = len(names)
    interval = float(ROLLOUT["analysis"]["intervalSeconds"])
    out: dict[str, Any] = {}

    async def isvcs() -> list[dict[str, Any]]:
        return (await client._request("GET", ISVCS.format(ns=ns))).get("items") or []

    before_isvcs = await isvcs()
    old_batch = {i["metadata"]["name"]: int(i["spec"]["model"]["maxBatchSize"]) for i in before_isvcs}
    old_revision = {i["metadata"]["name"]: (i.get("status") or {}).get("stableRevision") for i in before_isvcs}
    base = await counts()
    base_by_call = labelled((await metrics()).get("bench_operator_process_writes_total", {}), "verb", "resource")
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    await asyncio.gather(*(
        client._request("PATCH", f"{ISVCS.format(ns=ns)}/{name}",
                        body={"spec": {"model": {"maxBatchSize": old_batch[name] * 2}}},
                        content_type="application/merge-patch+json")
        for name in names
    ))
    out["rollout_patch_seconds"] = round(time.perf_counter() - started, 2)
    at_weight = 0
    all_started: float | None = None
    items: list[dict[str, Any]] = []
    while time.perf_counter() - started < timeout:
        await asyncio.sleep(0.5)
        items = await isvcs()
        if all_started is None and all(canary_started(i, old_revision.get(i["metadata"]["name"])) or canary_at_weight(i)
                                       for i in items):
            all_started = time.perf_counter() - started
        at_weight = sum(1 for item in items if canary_at_weight(item))
        if at_weight == n:
            break
    out["rollout_seconds_to_all_canaries_started"] = round(all_started, 2) if all_started is not None else None
    out["rollout_seconds_to_all_canaries_at_weight"] = (round(time.perf_counter() - started, 2)
                                                        if at_weight == n else None)
    out["rollout_canaries_at_weight"] = at_weight
    out["rollout_cpu_seconds_until_then"] = {k: round(v - cpu_before.get(k, 0.0), 1)
                                             for k, v in cpu_seconds(pids).items()}
    await asyncio.sleep(5)  # late events, as after the creates
    after_start = await counts()
    items = await isvcs()
    by_call = labelled((await metrics()).get("bench_operator_process_writes_total", {}), "verb", "resource")
    measured = analysis_results(items)
    out["rollout_start_writes_per_service"] = round((after_start["process"] - base["process"]) / n, 2)
    out["rollout_start_operator_own_writes_per_service"] = round((after_start["own"] - base["own"]) / n, 2)
    # Canaries that reached weight early may have been measured already within that span (one
    # status write each, by design): counted here so they can be told apart from the start's writes.
    out["rollout_start_measurements_recorded"] = dict(measured)
    out["rollout_start_writes_per_service_less_measurements"] = round(
        (after_start["process"] - base["process"] - sum(measured.values())) / n, 2)
    out["rollout_start_writes_by_call"] = {k: round(v - base_by_call.get(k, 0.0)) for k, v in sorted(by_call.items())
                                           if v != base_by_call.get(k, 0.0)}
    out["rollout_phases_after_start"] = dict(Counter(
        f"{((i.get('status') or {}).get('rollout') or {}).get('phase')} weight "
        f"{(i.get('status') or {}).get('canaryWeight')}" for i in items))

    # Steady window: canaries at weight, analysed every interval (Inconclusive: nothing listens on
    # the simulated pods' addresses). The services' own resourceVersions change with each status write.
    # The write counts, their breakdown and the measurements recorded are read together at each end
    # of the window (the listing of every object, slower, is outside it).
    before_versions = await versions(client, ns)
    before_counts = await counts()
    before_by_call = labelled((await metrics()).get("bench_operator_process_writes_total", {}), "verb", "resource")
    before_measured = analysis_results(await isvcs())
    cpu_before = cpu_seconds(pids)
    await asyncio.sleep(steady_seconds)
    cpu_after = cpu_seconds(pids)
    after_counts = await counts()
    by_call = labelled((await metrics()).get("bench_operator_process_writes_total", {}), "verb", "resource")
    items = await isvcs()
    measured = analysis_results(items)
    after_versions = await versions(client, ns)
    changed, writers = changed_between(before_versions, after_versions, CHILDREN)
    writes = after_counts["process"] - before_counts["process"]
    out["rollout_steady_seconds"] = steady_seconds
    out["rollout_steady_writes"] = round(writes)
    out["rollout_steady_operator_own_writes"] = round(after_counts["own"] - before_counts["own"])
    out["rollout_steady_writes_by_call"] = {k: round(v - before_by_call.get(k, 0.0)) for k, v in sorted(by_call.items())
                                            if v != before_by_call.get(k, 0.0)}
    out["rollout_steady_writes_per_service_per_interval"] = round(writes / n / (steady_seconds / interval), 2)
    out["rollout_steady_measurements_recorded"] = {k: v - before_measured.get(k, 0) for k, v in measured.items()
                                                   if v != before_measured.get(k, 0)}
    made = sum(measured.values()) - sum(before_measured.values())  # status.analysis keeps 10: far from full here
    out["rollout_steady_writes_per_measurement"] = round(writes / made, 2) if made > 0 else None
    out["rollout_steady_services_changed"] = len(changed_between(before_versions, after_versions,
                                                                 ("InferenceService",))[0])
    out["rollout_steady_objects_sampled"] = len(before_versions)
    out["rollout_steady_changed_children"] = len(changed)
    if changed:
        out["rollout_steady_changed_by_kind"] = dict(Counter(k.split("/")[0] for k in changed))
        out["rollout_steady_changed_by_writer"] = dict(writers)
        out["rollout_steady_changed_examples"] = changed[:5]
    out["rollout_steady_changed_children_not_by_cluster_controllers"] = not_by_the_cluster(writers)
    out["rollout_steady_cpu_seconds"] = {k: round(v - cpu_before.get(k, 0.0), 1) for k, v in cpu_after.items()}
    out["rollout_phases_at_end"] = dict(Counter(
        f"{((i.get('status') or {}).get('rollout') or {}).get('phase')} weight "
        f"{(i.get('status') or {}).get('canaryWeight')}" for i in items))
    return out


async def floor(n: int, timeout: float, ns: str, controller_manager_qps: int | None = None) -> dict[str, Any]:
    """--floor: the cluster work of n services without the operator (the benchmark applies it)."""
    from tritium.api.resource import parse_inference_service
    from tritium.images import Images
    from tritium.render import render_children

    workdir = Path(tempfile.mkdtemp(prefix="tritium-opbench-floor-"))
    target = Target("plane", workdir, n, ns, controller_manager_qps=controller_manager_qps)
    images = Images.from_env(os.environ)  # the operator's defaults, as it reads them
    # Two pools, as with the operator: the creates and the polling on one, the applies on the
    # other (the operator's own client: CONNECTIONS connections).
    client, applier = login(target.kubeconfig), login(target.kubeconfig)
    results: dict[str, Any] = {"n": n, "target": "own control plane, no operator (floor)",
                               "simulated_nodes": target.plane.nodes, "load_average_1m_at_start": load_average(),
                               "controller_manager_qps": controller_manager_rate(target.plane)}
    names = [f"svc-{i:04d}" for i in range(n)]
    writes: Counter[str] = Counter()
    retried: Counter[str] = Counter()

    async def write(call: Any, what: str) -> dict[str, Any]:
        for attempt in range(5):  # as kopf retries a failed reconcile (the operator waits 5 s)
            try:
                writes[what] += 1
                return await call()
            except ApiError as exc:
                if not exc.retriable or attempt == 4:
                    raise
                retried[f"{what} HTTP {exc.status}"] += 1
                await asyncio.sleep(1)
        raise AssertionError("unreachable")

    async def one(name: str) -> None:
        """Create the service, then apply its children in the operator's order, one at a time."""
        created = await write(lambda: client._request("POST", ISVCS.format(ns=ns), body=make_isvc(name, ns)),
                              "create InferenceService")
        for obj in render_children(parse_inference_service(created), images=images):
            await write(lambda obj=obj: applier.apply(obj), f"apply {obj['kind']}")

    try:
        pids = {**target.pids(), "benchmark": os.getpid()}
        cpu_before = cpu_seconds(pids)
        requests_before = target.apiserver_requests()
        started = time.perf_counter()
        await asyncio.gather(*(one(name) for name in names))
        results["seconds_to_all_applied"] = round(time.perf_counter() - started, 2)
        results["cpu_seconds_until_all_applied"] = {k: round(v - cpu_before.get(k, 0.0), 1)
                                                    for k, v in cpu_seconds(pids).items()}
        ready = 0
        while time.perf_counter() - started < timeout:
            deployments = await children(client, "Deployment", ns)
            ready = sum(1 for d in deployments if (d.get("status") or {}).get("observedGeneration") ==
                        d["metadata"].get("generation") and (d.get("status") or {}).get("availableReplicas", 0) >=
                        d["spec"].get("replicas", 1))
            if ready == n:
                break
            await asyncio.sleep(0.5)
        results["seconds_to_all_ready"] = round(time.perf_counter() - started, 2) if ready == n else None
        results["ready"] = ready
        results["cpu_seconds_until_then"] = {k: round(v - cpu_before.get(k, 0.0), 1)
                                             for k, v in cpu_seconds(pids).items()}
        results.update(top_requests(requests_before, target.apiserver_requests()))
        results["writes_per_service"] = round(sum(writes.values()) / n, 2)
        results["writes_by_call"] = dict(sorted(writes.items()))
        results["retried"] = dict(retried)
        results["benchmark_peak_rss_mb"] = round(peak_rss_mb(os.getpid()), 1)
    finally:
        await client.close()
        await applier.close()
        results["load_average_1m_at_end"] = load_average()
        target.stop()
        if os.environ.get("BENCH_KEEP_DIR"):
            print(f"benchmark files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="InferenceServices to create at once")
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady state to watch for writes")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for all done (and Ready); default 180, 600 on an own control plane")
    parser.add_argument("--real", action="store_true",
                        help="a real API server instead of the emulator: KUBECONFIG's cluster (CRD installed) "
                        "when set, else a control plane of its own (tests/support/cluster.py)")
    parser.add_argument("--namespace", default="bench", help="namespace to create the services in")
    parser.add_argument("--rollouts", action="store_true",
                        help="with --real: then change every service's model at once and measure the canaries "
                        "(to weight, then a steady window with analysis every 30 s)")
    parser.add_argument("--floor", action="store_true",
                        help="no operator: the benchmark applies the same children itself on a control plane of "
                        "its own and waits for the Deployments (what the cluster alone takes)")
    parser.add_argument("--controller-manager-qps", type=int, default=None, metavar="N",
                        help="on a control plane of its own: kube-controller-manager's --kube-api-qps N and "
                        "--kube-api-burst 2N (default: Kubernetes' 20 and 30)")
    parser.add_argument("--progress", choices=("watch", "poll"), default="watch",
                        help="how the benchmark follows the services: one watch per kind (default), or lists of "
                        "every kind every half second, as before 2026-12-08 (to compare)")
    args = parser.parse_args()
    if args.rollouts and not args.real:
        parser.error("--rollouts needs --real (on the emulator no pod, so no canary, gets Ready)")
    if args.floor and (args.rollouts or os.environ.get("KUBECONFIG")):
        parser.error("--floor runs on a control plane of its own (KUBECONFIG unset), without --rollouts")
    mode = ("kubeconfig" if os.environ.get("KUBECONFIG") else "plane") if args.real or args.floor else "emulator"
    timeout = args.timeout if args.timeout is not None else (600 if mode == "plane" else 180)
    if args.floor:
        results = asyncio.run(floor(args.n, timeout, args.namespace, args.controller_manager_qps))
    else:
        results = asyncio.run(run(args.n, args.steady, timeout, mode, args.namespace, args.rollouts,
                                  args.controller_manager_qps, args.progress))
    width = max(len(k) for k in results)
    print(f"{'metric'.ljust(width)}  value")
    for key, value in results.items():
        print(f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, dict | list) else value}")
    print(json.dumps(results))
    if args.floor:
        return 0 if results["ready"] == args.n else 1
    ok = (results["done"] == args.n and results.get("ready", args.n) == args.n
          and results["steady_state_writes"] == 0 and results["steady_state_changed_not_by_cluster_controllers"] == 0)
    if args.rollouts:  # the rollout targets that are about correctness (time and RSS are reported)
        ok = ok and (results["rollout_canaries_at_weight"] == args.n
                     and results["rollout_steady_changed_children_not_by_cluster_controllers"] == 0
                     and results["rollout_steady_writes_per_service_per_interval"] <= 1.5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
