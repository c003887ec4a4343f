"""A node simulator: plays kubelet (and the scheduler) for a control plane that runs no containers.

What it does, for each of ``--nodes`` nodes named ``sim-node-<i>``:
- registers the Node (GPU capacity: nvidia.com/gpu 8, cpu 32, memory 128Gi, zone label
  ``topology.kubernetes.io/zone=sim-zone-<i % 2>``), reports it Ready and renews its Lease in
  kube-node-lease every few seconds, as a kubelet does, so the node lifecycle controller keeps it;
- binds every unbound pod (there is no kube-scheduler) to the first node whose labels match the
  pod's nodeSelector and whose free cpu/memory/GPUs fit the pod's requests; a pod that fits
  nowhere stays Pending with PodScheduled=False Unschedulable, as with a real scheduler;
- reports bound pods Running and Ready, with an address in 127.1.0.0/16 (never a private range:
  nothing may dial one here), init containers terminated with exit code 0;
- keeps a pod unready, as a real cluster would, when one of its images names a registry under
  ``.invalid`` (ErrImagePull): the switch tests use to make a revision that never becomes ready;
- finishes the deletion of pods marked for deletion (a kubelet confirms it with a zero grace period).

What it does not simulate: containers (nothing runs, probes are never evaluated), taints and
tolerations, affinity and topology spread, preemption, volumes, and pod metrics (so an HPA reports
ScalingActive=False). The EndpointSlice controller refuses loopback addresses, so Services of
simulated pods have no endpoints: routing is tested in local mode, with real processes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

LOG = logging.getLogger("nodesim")
UNREADY_REGISTRY_SUFFIX = ".invalid"
CAPACITY = {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "8", "pods": "110", "ephemeral-storage": "500Gi"}
LEASE_SECONDS = 40


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _stamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (500m, 2Gi, 1.5) as a float in base units."""
    text = str(value).strip()
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def pod_requests(pod: dict[str, Any]) -> dict[str, float]:
    """Effective requests: the sum of the containers, or the largest init container when larger."""
    spec = pod.get("spec") or {}

    def total(containers: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in containers:
            resources = c.get("resources") or {}
            wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
            for name, value in wanted.items():
                out[name] = out.get(name, 0.0) + parse_quantity(value)
        return out

    requests = total(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        for name, value in total([init]).items():
            requests[name] = max(requests.get(name, 0.0), value)
    return requests


def images_of(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [c.get("image", "") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def pulls_fail(image: str) -> bool:
    registry = image.split("/", 1)[0] if "/" in image else ""
    return registry.split(":")[0].endswith(UNREADY_REGISTRY_SUFFIX)


class Simulator:
    def __init__(self, api: client.ApiClient, nodes: int) -> None:
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.nodes = [f"sim-node-{i}" for i in range(nodes)]
        self.stop = threading.Event()
        self._next_ip = 1
        self._ips: dict[str, str] = {}  # pod uid -> address
        self._bound: dict[str, tuple[str, dict[str, float]]] = {}  # pod uid -> (node, requests)
        self._lock = threading.Lock()

    # --- nodes -----------------------------------------------------------------------------------

    def node_address(self, index: int) -> str:
        return f"127.0.{10 + index}.1"

    def register_nodes(self) -> None:
        for i, name in enumerate(self.nodes):
            body = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": f"sim-zone-{i % 2}", "nvidia.com/gpu.present": "true",
                    "type": "tritium-simulated",
                }},
            }
            try:
                self.core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self.report_node(i, name)

    def report_node(self, index: int, name: str) -> None:
        now = _stamp()
        conditions = [
            {"type": t, "status": "False", "reason": reason, "message": "simulated",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
            for t, reason in (("MemoryPressure", "KubeletHasSufficientMemory"),
                              ("DiskPressure", "KubeletHasNoDiskPressure"),
                              ("PIDPressure", "KubeletHasSufficientPID"))
        ]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated",
                           "lastHeartbeatTime": now, "lastTransitionTime": now})
        status = {
            "capacity": CAPACITY, "allocatable": CAPACITY, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_address(index)},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {"kubeletVersion": "v1.36.3-sim", "kubeProxyVersion": "", "containerRuntimeVersion": "sim://1",
                         "operatingSystem": "linux", "architecture": "amd64", "osImage": "simulated",
                         "kernelVersion": "sim", "machineID": name, "systemUUID": name, "bootID": name},
        }
        self.core.patch_node_status(name, {"status": status})

    def renew_leases(self) -> None:
        for name in self.nodes:
            body = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
            }
            try:
                self.coordination.patch_namespaced_lease(name, "kube-node-lease", {"spec": body["spec"]})
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.coordination.create_namespaced_lease("kube-node-lease", body)

    def heartbeat(self) -> None:
        beats = 0
        while not self.stop.wait(5):
            try:
                self.renew_leases()
                beats += 1
                if beats % 4 == 0:
                    for i, name in enumerate(self.nodes):
                        self.report_node(i, name)
            except Exception as exc:  # the API server may be going away; keep trying until stopped
                LOG.warning("heartbeat failed: %s", exc)

    # --- pods ------------------------------------------------------------------------------------

    def _address(self, uid: str) -> str:
        with self._lock:
            if uid not in self._ips:
                n = self._next_ip
                self._next_ip += 1
                self._ips[uid] = f"127.1.{(n >> 8) & 255}.{n & 255}"
            return self._ips[uid]

    def _fits(self, node: str, pod: dict[str, Any]) -> bool:
        index = self.nodes.index(node)
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        labels = {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "topology.kubernetes.io/zone": f"sim-zone-{index % 2}", "nvidia.com/gpu.present": "true",
                  "type": "tritium-simulated"}
        if any(labels.get(k) != v for k, v in selector.items()):
            return False
        used: dict[str, float] = {}
        with self._lock:
            for bound_node, requests in self._bound.values():
                if bound_node == node:
                    for k, v in requests.items():
                        used[k] = used.get(k, 0.0) + v
        wanted = pod_requests(pod)
        return all(used.get(k, 0.0) + v <= parse_quantity(CAPACITY.get(k, "0")) for k, v in wanted.items()
                   if k in CAPACITY)

    def bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        for node in self.nodes:
            if self._fits(node, pod):
                body = {"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
                # _preload_content=False: the generated client cannot decode the Status it answers.
                self.core.create_namespaced_binding(meta["namespace"], body, _preload_content=False)
                with self._lock:
                    self._bound[meta["uid"]] = (node, pod_requests(pod))
                return
        conditions = (pod.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions):
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": {"conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": f"0/{len(self.nodes)} nodes are available: insufficient resources or node selector "
                 "mismatch", "lastTransitionTime": _stamp()}]}})

    def run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = spec["nodeName"]
        with self._lock:
            self._bound.setdefault(meta["uid"], (node, pod_requests(pod)))
        failing = [i for i in images_of(pod) if pulls_fail(i)]
        ready = "False" if failing else "True"
        now = _stamp()

        def container_status(c: dict[str, Any], init: bool) -> dict[str, Any]:
            if pulls_fail(c.get("image", "")):
                state: dict[str, Any] = {"waiting": {"reason": "ErrImagePull",
                                                     "message": f"simulated: cannot pull {c.get('image')}"}}
                ok = False
            elif init:
                state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
                ok = True
            else:
                state = {"running": {"startedAt": now}}
                ok = not failing
            return {"name": c["name"], "image": c.get("image", ""), "imageID": f"sim://{c.get('image', '')}",
                    "ready": ok, "started": bool(ok and not init), "restartCount": 0, "state": state}

        init_failing = any(pulls_fail(c.get("image", "")) for c in spec.get("initContainers") or [])
        status = {
            "phase": "Pending" if init_failing else "Running",
            "hostIP": self.node_address(self.nodes.index(node)) if node in self.nodes else "127.0.0.1",
            "podIP": self._address(meta["uid"]),
            "podIPs": [{"ip": self._address(meta["uid"])}],
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "False" if init_failing else "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "initContainerStatuses": [container_status(c, True) for c in spec.get("initContainers") or []],
            "containerStatuses": [container_status(c, False) for c in spec.get("containers") or []],
        }
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})

    def handle(self, event_type: str, pod: dict[str, Any]) -> None:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        if event_type == "DELETED":
            with self._lock:
                self._bound.pop(meta["uid"], None)
                self._ips.pop(meta["uid"], None)
            return
        if meta.get("deletionTimestamp"):
            if spec.get("nodeName") in self.nodes or not spec.get("nodeName"):
                self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)
            return
        node = spec.get("nodeName")
        if not node:
            self.bind(pod)
        elif node in self.nodes and not status.get("podIP") and status.get("phase") in (None, "Pending"):
            self.run_pod(pod)

    def watch_pods(self) -> None:
        api = self.core.api_client
        while not self.stop.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(_preload_content=False)
                data = json.loads(listing.data)
                for item in data.get("items") or []:
                    self._safely(self.handle, "MODIFIED", item)
                version = data["metadata"]["resourceVersion"]
                stream = watch.Watch()
                for event in stream.stream(self.core.list_pod_for_all_namespaces, resource_version=version,
                                           timeout_seconds=60, _request_timeout=90):
                    if self.stop.is_set():
                        stream.stop()
                        break
                    obj = api.sanitize_for_serialization(event["object"])
                    self._safely(self.handle, event["type"], obj)
            except Exception as exc:
                if not self.stop.is_set():
                    LOG.warning("pod watch interrupted: %s", exc)
                    time.sleep(0.5)

    def _safely(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone or changed meanwhile: the next event covers it
                LOG.warning("%s failed: %s %s", fn.__name__, exc.status, exc.reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.nodesim")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nodesim %(levelname)s %(message)s")
    sim = Simulator(config.new_client_from_config(config_file=args.kubeconfig), args.nodes)
    signal.signal(signal.SIGTERM, lambda *_: sim.stop.set())
    sim.register_nodes()
    sim.renew_leases()
    threading.Thread(target=sim.heartbeat, name="heartbeat", daemon=True).start()
    watcher = threading.Thread(target=sim.watch_pods, name="pods", daemon=True)
    watcher.start()
    LOG.info("simulating %s", ", ".join(sim.nodes))
    while not sim.stop.wait(0.5):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
