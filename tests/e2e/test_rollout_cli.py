"""`tritium promote|abort|pause|resume|status` against a real API server.

No operator runs: the test writes the status an operator would (a status-subresource patch that
simulates a canary in flight), then checks that each command leaves the annotation it means on
the stored object, and that `status` reads the revisions from the real per-revision Deployments.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Kube
from tests.support.operator_scenarios import make_isvc
from tritium.cli import main
from tritium.render.metadata import LABEL_ISVC, LABEL_REVISION
from tritium.rollout.commands import ABORT, PAUSED, PROMOTE

STABLE, CANARY = "aaaa111111", "bbbb222222"

CANARY_STATUS: dict[str, Any] = {
    "stableRevision": STABLE, "canaryRevision": CANARY, "canaryWeight": 20,
    "rollout": {"phase": "Canary", "revision": CANARY, "step": 1, "failures": 0, "passes": 1,
                "reason": "NextStep", "message": f"revision {CANARY} passed step 1: now 20 % of traffic",
                "startedAt": "2025-01-01T10:00:00Z", "phaseSince": "2025-01-01T10:05:00Z"},
    "analysis": [{"time": "2025-01-01T10:04:00Z", "revision": CANARY, "result": "Passed", "requests": 240,
                  "errorRatio": 0.002, "p99LatencyMs": 38.5, "message": "within thresholds"}],
}


def _deployment(namespace: str, revision: str, replicas: int) -> dict[str, Any]:
    labels = {LABEL_ISVC: "demo", LABEL_REVISION: revision}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"demo-{revision}", "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "triton", "image": "nvcr.io/nvidia/tritonserver:test"}]}}},
    }


def _annotations(kube: Kube, namespace: str) -> dict[str, str]:
    out = kube.kubectl("get", "inferenceservice", "demo", "-n", namespace, "-o", "json").stdout
    found: dict[str, str] = json.loads(out)["metadata"].get("annotations") or {}
    return found


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _wait_ready(kube: Kube, namespace: str, name: str, replicas: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = kube.kubectl("get", "deployment", name, "-n", namespace, "-o", "jsonpath={.status.readyReplicas}")
        if out.stdout.strip() == str(replicas):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment {name} not {replicas} ready within {timeout:.0f} s")
        time.sleep(0.2)


def test_rollout_commands_write_annotations_and_status_reads_them(
    kube: Kube, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.kubectl("apply", "-f", "-", input=json.dumps(make_isvc("demo", namespace)))
    ns = ["-n", namespace]

    # Before the operator wrote anything: status says so, and there is nothing to promote.
    code, out, _ = _run(capsys, "status", "demo", *ns)
    assert code == 0
    assert out.startswith(f"inferenceservice {namespace}/demo: no status yet\n")
    code, out, err = _run(capsys, "promote", "demo", *ns)
    assert (code, out) == (1, "")
    assert err == f"tritium promote: no canary in flight for {namespace}/demo: nothing to promote\n"

    # A canary in flight, as the operator would record it, and its revisions' Deployments.
    kube.kubectl("patch", "inferenceservice", "demo", "-n", namespace, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": CANARY_STATUS}))
    for revision, replicas in ((STABLE, 2), (CANARY, 1)):
        kube.kubectl("apply", "-f", "-", input=json.dumps(_deployment(namespace, revision, replicas)))
    if kube.simulated:  # simulated pods are Ready within a second; a real cluster would pull the image
        _wait_ready(kube, namespace, f"demo-{STABLE}", 2)
        _wait_ready(kube, namespace, f"demo-{CANARY}", 1)

    code, out, err = _run(capsys, "promote", "demo", *ns)
    assert (code, out, err) == (0, f"promote requested: revision {CANARY} of {namespace}/demo\n", "")
    assert _annotations(kube, namespace)[PROMOTE] == CANARY

    # Explicit --kubeconfig and --context, as kubectl takes them.
    config = yaml.safe_load(kube.kubeconfig.read_text())
    code, out, _ = _run(capsys, "abort", "demo", *ns, "--kubeconfig", str(kube.kubeconfig),
                        "--context", config["current-context"])
    assert (code, out) == (0, f"abort requested: revision {CANARY} of {namespace}/demo\n")
    assert _annotations(kube, namespace)[ABORT] == CANARY

    code, out, _ = _run(capsys, "pause", "demo", *ns)
    assert (code, out) == (0, f"pause requested: {namespace}/demo\n")
    assert _annotations(kube, namespace)[PAUSED] == "true"

    code, out, _ = _run(capsys, "status", "demo", *ns)
    assert code == 0
    heading, revisions, rollout, analysis = out.rstrip("\n").split("\n\n")
    assert heading == f"inferenceservice {namespace}/demo: no status yet (paused by a person: tritium resume)"
    rows = [line.split() for line in revisions.splitlines()]
    ready = ["2/2", "1/1"] if kube.simulated else [rows[1][-1], rows[2][-1]]
    assert rows == [["REVISION", "ROLE", "WEIGHT", "REPLICAS"],
                    [STABLE, "stable", "80", "%", ready[0]],
                    [CANARY, "canary", "20", "%", ready[1]]]
    assert rollout.splitlines()[1].split()[:5] == ["Canary", CANARY, "2/1", "0", "NextStep"]
    assert analysis.splitlines()[1].split() == ["2025-01-01T10:04:00Z", CANARY, "Passed", "240", "0.002", "38.5",
                                                "within", "thresholds"]

    code, out, _ = _run(capsys, "resume", "demo", *ns)
    assert (code, out) == (0, f"resume requested: {namespace}/demo\n")
    annotations = _annotations(kube, namespace)
    assert PAUSED not in annotations
    assert (annotations[PROMOTE], annotations[ABORT]) == (CANARY, CANARY)  # resume removes only the pause

    # Without -n: the namespace of the kubeconfig's context, as kubectl.
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    scoped = tmp_path / "kubeconfig"
    scoped.write_text(yaml.safe_dump(config))
    code, out, _ = _run(capsys, "status", "demo", "--kubeconfig", str(scoped))
    assert code == 0 and out.startswith(f"inferenceservice {namespace}/demo:")

    # A missing object: one line, exit 1.
    code, out, err = _run(capsys, "status", "x", *ns)
    assert (code, out, err) == (1, "", f"tritium status: inferenceservice {namespace}/x not found\n")
    code, out, err = _run(capsys, "pause", "x", *ns)
    assert (code, err) == (1, f"tritium pause: inferenceservice {namespace}/x not found\n")
