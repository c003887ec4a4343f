"""The renderers: what each InferenceService becomes in the cluster.

The controller applies exactly what these pure functions return, so the pod layout, the
security posture, ownership (garbage collection) and the Triton configuration are all decided
here and checked here, for every example and for variations that switch on each optional part.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.pod_security import restricted_violations
from tests.support.specs import VARIANTS, example_paths, load_example, manifest, merge
from tritium import pod_layout as L
from tritium.api.resource import InferenceService, parse_inference_service
from tritium.api.spec import ModelSpec
from tritium.images import DEFAULT_TRITON_IMAGE
from tritium.render import render_children, to_yaml
from tritium.render.metadata import ANNOTATION_APPLIED_HASH, LABEL_REVISION, applied_hash, revision_of
from tritium.render.triton_config import BACKENDS, render_config

CASES: dict[str, dict[str, Any]] = {
    **{p.name: load_example(p) for p in example_paths()},
    **{name: manifest(patch) for name, patch in VARIANTS.items()},
    "minimal": manifest(),
}
CASE_IDS = list(CASES)
RESTRICTED_CAPABILITIES = {"drop": ["ALL"]}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse(obj: dict[str, Any]) -> InferenceService:
    return parse_inference_service(obj)


def render(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return render_children(parse(obj))


def _secondary(child: dict[str, Any]) -> bool:
    """The traffic ConfigMap and a revision's own Service: the second child of their kinds."""
    meta = child["metadata"]
    if child["kind"] == "ConfigMap":
        return bool(meta["name"].endswith("-traffic"))
    return child["kind"] == "Service" and meta["name"] != meta["labels"]["serving.tritium.dev/inferenceservice"]


def kinds(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The children by kind: for ConfigMap the revision's, for Service the main one."""
    primary = [c for c in children if not _secondary(c)]
    out = {c["kind"]: c for c in primary}
    assert len(out) == len(primary), "one child per kind besides the traffic ConfigMap and revision Services"
    assert len(children) - len(primary) == len(revision_services(children)) + 1
    return out


def revision_services(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == "Service" and _secondary(c)]


def pod_spec(children: list[dict[str, Any]]) -> dict[str, Any]:
    return kinds(children)["Deployment"]["spec"]["template"]["spec"]


def containers(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(children)["containers"]}


@pytest.fixture(params=CASE_IDS)
def case(request: pytest.FixtureRequest) -> dict[str, Any]:
    return CASES[request.param]


# --- metadata: names, labels, owners, hashes ------------------------------------------------------


def test_children_in_apply_order(case: dict[str, Any]) -> None:
    """The ServiceAccount and ConfigMap must exist before the pods that use them."""
    kinds = [c["kind"] for c in render(case)]
    spec = parse(case).spec
    hpa = ["HorizontalPodAutoscaler"] if spec.autoscaling.enabled else []
    monitoring = ["PodMonitor", "PrometheusRule"] if spec.monitoring.service_monitor else []
    if monitoring and spec.monitoring.webhook is not None and spec.monitoring.alerts != []:
        monitoring.append("AlertmanagerConfig")  # the service's alerts to its webhook
    # The second ConfigMap is the traffic split. A revision serving alone has no Service of its
    # own with router gateway; with gatewayAPI it has one before the main Service (the HTTPRoute's backend).
    own = ["Service"] if spec.traffic.router == "gatewayAPI" else []
    route = ["HTTPRoute"] if spec.traffic.router == "gatewayAPI" else []
    certificate = ["Certificate"] if spec.security.tls and spec.security.tls.cert_manager else []
    assert kinds == ["ServiceAccount", *certificate, "ConfigMap", "ConfigMap", "Deployment", *hpa,
                     "PodDisruptionBudget", *own, "Service", "NetworkPolicy", *route, *monitoring]


def test_owner_references_only_with_a_uid(case: dict[str, Any]) -> None:
    """In a cluster (uid known) every child is owned, so deleting the service deletes them."""
    owned = render(merge(case, {"metadata": {"uid": "5f0e-uid"}}))
    for child in owned:
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.tritium.dev/v1alpha1",
                "kind": "InferenceService",
                "name": case["metadata"]["name"],
                "uid": "5f0e-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], child["kind"]
    for child in render(case):
        assert "ownerReferences" not in child["metadata"], child["kind"]


def test_labels_names_and_namespace(case: dict[str, Any]) -> None:
    isvc = parse(case)
    rev = revision_of(isvc.spec)
    children = render(case)
    expected = {
        "app.kubernetes.io/name": "inferenceservice",
        "app.kubernetes.io/instance": isvc.name,
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "tritium",
        "app.kubernetes.io/managed-by": "tritium-operator",
        "serving.tritium.dev/inferenceservice": isvc.name,
        LABEL_REVISION: rev,
    }
    for child in children:
        assert child["metadata"]["labels"] == expected, child["kind"]
        assert child["metadata"]["namespace"] == isvc.namespace
    by_kind = kinds(children)
    assert by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"] == expected
    assert by_kind["Deployment"]["metadata"]["name"] == f"{isvc.name}-{rev}"
    assert by_kind["ConfigMap"]["metadata"]["name"] == f"{isvc.name}-{rev}"
    assert by_kind["Service"]["metadata"]["name"] == isvc.name
    assert by_kind["ServiceAccount"]["metadata"]["name"] == isvc.name


def test_long_names_stay_within_kubernetes_limits() -> None:
    name = "m" + "x" * 62
    children = render(merge(manifest(), {"metadata": {"name": name}}))
    for child in children:
        assert len(child["metadata"]["name"]) <= 63, child["kind"]
        assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())


def test_applied_hash_describes_the_content(case: dict[str, Any]) -> None:
    for child in render(case):
        annotations = child["metadata"]["annotations"]
        stamped = annotations[ANNOTATION_APPLIED_HASH]
        bare = merge(child, {})
        del bare["metadata"]["annotations"]
        assert applied_hash(bare) == stamped, child["kind"]


def test_selectors_match_the_template_and_services_select_one_revision(case: dict[str, Any]) -> None:
    children = render(case)
    by_kind = kinds(children)
    deployment, service = by_kind["Deployment"], by_kind["Service"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    match = deployment["spec"]["selector"]["matchLabels"]
    assert match.items() <= template_labels.items()
    assert LABEL_REVISION in match, "each revision's Deployment selects only its own pods"
    selector = service["spec"]["selector"]
    assert selector.items() <= template_labels.items()
    revision = template_labels[LABEL_REVISION]
    assert selector[LABEL_REVISION] == revision, "the main Service sends traffic to the stable revision only"
    for own in revision_services(children):
        assert own["metadata"]["name"] == deployment["metadata"]["name"]
        assert own["spec"]["selector"] == selector and own["spec"]["ports"] == service["spec"]["ports"]


def test_revision_names_follow_pod_changes_only() -> None:
    """Scaling keeps the Deployment (same name); a new image makes a new one beside it."""
    base = kinds(render(manifest()))["Deployment"]
    scaled = kinds(render(manifest({"autoscaling": {"minReplicas": 5}})))["Deployment"]
    changed = kinds(render(manifest({"runtime": {"image": "nvcr.io/nvidia/tritonserver:24.11-py3"}})))["Deployment"]
    assert scaled["metadata"]["name"] == base["metadata"]["name"]
    assert scaled["spec"]["replicas"] == 5 and base["spec"]["replicas"] == 2
    assert changed["metadata"]["name"] != base["metadata"]["name"]
    assert kinds(render(manifest({"replicas": 7})))["Deployment"]["spec"]["replicas"] == 7


# --- determinism ----------------------------------------------------------------------------------


def _shuffled(obj: Any, rnd: random.Random) -> Any:
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: _shuffled(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [_shuffled(v, rnd) for v in obj]
    return obj


def test_rendering_is_deterministic(case: dict[str, Any]) -> None:
    """Byte-identical output: the controller compares hashes, reviewers diff the YAML."""
    first = to_yaml(render(case))
    assert to_yaml(render(case)) == first
    assert to_yaml(render(_shuffled(case, random.Random(7)))) == first


def _tritium() -> list[str]:
    script = Path(sys.executable).with_name("tritium")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tritium.cli"]


BAD_INPUTS: dict[str, tuple[str | None, str]] = {
    # name: (file content, or None for a missing file; a fragment stderr must contain)
    "bad-yaml": ("apiVersion: serving.tritium.dev/v1alpha1\nkind: [InferenceService\n", "not valid YAML at line"),
    "missing-file": (None, "No such file or directory"),
    "cel-violation": (
        json.dumps(manifest({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}})),
        "spec.autoscaling.minReplicas: minReplicas must be <= maxReplicas",
    ),
    "unsupported-scheme": (
        json.dumps(manifest({"model": {"storageUri": "ftp://host/model"}})),
        "spec.model.storageUri: unsupported scheme ftp://",
    ),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every CLI invocation of this module, started together (each start costs an interpreter)."""
    tmp = tmp_path_factory.mktemp("cli")
    commands: dict[str, list[str]] = {}
    for path in example_paths():
        commands[f"example:{path.name}"] = [*_tritium(), "render", "-f", str(path)]
    for name, (content, _) in BAD_INPUTS.items():
        file = tmp / f"{name}.yaml"
        if content is not None:
            file.write_text(content)
        commands[name] = [*_tritium(), "render", "-f", str(file)]
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = subprocess.CompletedProcess(commands[name], proc.returncode, out, err)
    return results


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_cli_render_matches_the_library(path: Path, cli_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    run = cli_runs[f"example:{path.name}"]
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout == to_yaml(render(load_example(path)))


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_cli_render_bad_input_is_one_line_exit_2(
    name: str, cli_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """Bad input: exit code 2, one line on stderr that names the problem, nothing on stdout."""
    run = cli_runs[name]
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("tritium render: ")
    assert BAD_INPUTS[name][1] in lines[0]
    assert "Traceback" not in run.stderr


# --- the Deployment -------------------------------------------------------------------------------


def test_triton_container(case: dict[str, Any]) -> None:
    isvc = parse(case)
    triton = containers(render(case))[L.TRITON_CONTAINER]
    assert triton["image"] == (isvc.spec.runtime.image or DEFAULT_TRITON_IMAGE)
    assert triton["command"][0] == "tritonserver"
    assert f"--load-model={isvc.spec.model.name}" in triton["command"]
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": L.TRITON_HTTP_PORT}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": L.TRITON_HTTP_PORT}
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {"name": "models", "mountPath": L.MODEL_REPOSITORY, "readOnly": True} in triton["volumeMounts"]
    if isvc.spec.model.response_cache.enabled:
        assert f"--cache-config=local,size={isvc.spec.model.response_cache.size_bytes}" in triton["command"]
    else:
        assert not any(a.startswith("--cache-config") for a in triton["command"])
    for arg in isvc.spec.runtime.args or []:
        assert arg in triton["command"]


def test_gpu_resources_exactly_when_asked(case: dict[str, Any]) -> None:
    gpu = parse(case).spec.runtime.resources.gpu
    children = render(case)
    for container in [*pod_spec(children)["containers"], *pod_spec(children)["initContainers"]]:
        res = container["resources"]
        has_gpu = "nvidia.com/gpu" in res["requests"] or "nvidia.com/gpu" in res.get("limits", {})
        if container["name"] == L.TRITON_CONTAINER and gpu:
            assert res["requests"]["nvidia.com/gpu"] == gpu and res["limits"]["nvidia.com/gpu"] == gpu
        else:
            assert not has_gpu, container["name"]
        assert res["limits"]["memory"] == res["requests"]["memory"], "memory request = limit (no OOM surprises)"


def test_gpu_example_requests_a_gpu() -> None:
    """A guard on the guard: at least one case really has a GPU, one has none."""
    gpus = {parse(c).spec.runtime.resources.gpu for c in CASES.values()}
    assert 0 in gpus and any(g > 0 for g in gpus)


def test_fetch_model_init_container(case: dict[str, Any]) -> None:
    isvc = parse(case)
    (fetch,) = pod_spec(render(case))["initContainers"]
    assert fetch["name"] == L.FETCH_CONTAINER
    assert fetch["command"][:3] == ["tritium", "fetch-model", isvc.spec.model.storage_uri]
    assert f"{L.MODEL_REPOSITORY}/{isvc.spec.model.name}" in fetch["command"]
    assert {"name": "models", "mountPath": L.MODEL_REPOSITORY, "readOnly": False} in fetch["volumeMounts"]
    if isvc.spec.model.sha256:
        assert fetch["command"][-2:] == ["--sha256", isvc.spec.model.sha256]
    if isvc.spec.model.storage_secret_name:
        assert fetch["envFrom"] == [{"secretRef": {"name": isvc.spec.model.storage_secret_name}}]
    else:
        assert "envFrom" not in fetch


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ({}, []),
        ({"preprocess": {"builtin": {}}}, [L.PRE_CONTAINER]),
        ({"postprocess": {"builtin": {}}}, [L.POST_CONTAINER]),
        (
            {"preprocess": {"builtin": {}}, "postprocess": {"script": {"path": "post.py"}}},
            [L.PRE_CONTAINER, L.POST_CONTAINER],
        ),
    ],
)
def test_stage_sidecars_exactly_for_the_stages_asked(stages: dict[str, Any], expected: list[str]) -> None:
    children = render(manifest(stages))
    names = list(containers(children))
    assert names == [L.TRITON_CONTAINER, *expected, L.GATEWAY_CONTAINER]
    gateway = containers(children)[L.GATEWAY_CONTAINER]["command"]
    assert ("--pre" in gateway) == (L.PRE_CONTAINER in expected)
    assert ("--post" in gateway) == (L.POST_CONTAINER in expected)
    for name in expected:
        stage = containers(children)[name]
        assert stage["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert stage["command"][:3] == ["tritium", "stage", "pre" if name == L.PRE_CONTAINER else "post"]


def test_service_targets_only_the_gateway_port(case: dict[str, Any]) -> None:
    children = render(case)
    service = kinds(children)["Service"]
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "gateway"
    named = [(c["name"], p) for c in pod_spec(children)["containers"] for p in c.get("ports", [])]
    gateway_ports = [(owner, p) for owner, p in named if p["name"] == port["targetPort"]]
    assert gateway_ports == [
        (L.GATEWAY_CONTAINER, {"name": "gateway", "containerPort": L.GATEWAY_PORT, "protocol": "TCP"})
    ]
    assert service["spec"]["type"] == "ClusterIP"
    tls = parse(case).spec.security.tls is not None
    assert (port["port"], port["name"], port["appProtocol"]) == (
        (443, "https", "https") if tls else (80, "http", "http")
    )


def test_restricted_security_context(case: dict[str, Any]) -> None:
    """Pod Security Standard "restricted" (tests/support/pod_security.py), and what goes beyond it."""
    children = render(case)
    template = kinds(children)["Deployment"]["spec"]["template"]
    pod = template["spec"]
    assert restricted_violations(pod, template["metadata"].get("annotations")) == []
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in [*pod["containers"], *pod["initContainers"]]:
        sc = container["securityContext"]
        assert sc["capabilities"] == RESTRICTED_CAPABILITIES, container["name"]
        assert sc["readOnlyRootFilesystem"] is True


def test_every_mount_has_a_volume_and_every_volume_is_used(case: dict[str, Any]) -> None:
    children = render(case)
    pod = pod_spec(children)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"])
    mounted = {m["name"] for c in [*pod["containers"], *pod["initContainers"]] for m in c.get("volumeMounts", [])}
    assert mounted == set(volumes)
    assert volumes["config"]["configMap"]["name"] == kinds(children)["ConfigMap"]["metadata"]["name"]
    assert pod["serviceAccountName"] == kinds(children)["ServiceAccount"]["metadata"]["name"]


def test_tls_variant() -> None:
    children = render(manifest(VARIANTS["tls"]))
    gateway = containers(children)[L.GATEWAY_CONTAINER]
    assert gateway["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert env["TRITIUM_TLS_CERT_FILE"] == f"{L.SECRETS_DIR}/tls/tls.crt"
    assert env["TRITIUM_TLS_KEY_FILE"] == f"{L.SECRETS_DIR}/tls/tls.key"
    assert env["TRITIUM_TLS_MIN_VERSION"] == "1.3"  # the variant's spec.security.tls.minVersion
    assert gateway["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "tls", "secret": {"secretName": "demo-tls"}} in pod_spec(children)["volumes"]


def test_affinity_variant_is_the_pods_node_affinity_as_written() -> None:
    """The spec's node affinity is the pod's, in Kubernetes' own shape (the strict schema check of
    every variant proves the shape); the soft spread and the nodeSelector stay beside it."""
    wanted = VARIANTS["affinity"]["runtime"]["affinity"]
    pod = pod_spec(render(manifest(VARIANTS["affinity"])))
    assert pod["affinity"] == wanted
    assert len(pod["topologySpreadConstraints"]) == 2
    assert "affinity" not in pod_spec(render(manifest({})))
    assert "affinity" not in pod_spec(render(manifest({"runtime": {"affinity": {}}})))


def test_api_keys_variant() -> None:
    children = render(manifest(VARIANTS["api-keys"]))
    gateway = containers(children)[L.GATEWAY_CONTAINER]
    assert {"name": "TRITIUM_API_KEYS_FILE", "value": f"{L.SECRETS_DIR}/api-keys/keys.txt"} in gateway["env"]
    assert {"name": "api-keys", "secret": {"secretName": "demo-keys"}} in pod_spec(children)["volumes"]


def test_redis_variant_reads_the_url_from_the_secret() -> None:
    gateway = containers(render(manifest(VARIANTS["redis-cache"])))[L.GATEWAY_CONTAINER]
    assert {"name": "TRITIUM_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}} in gateway[
        "env"
    ]


def test_pvc_variant_mounts_the_claim_read_only() -> None:
    pod = pod_spec(render(manifest(VARIANTS["pvc"])))
    assert {"name": "model-pvc", "persistentVolumeClaim": {"claimName": "model-claim", "readOnly": True}} in pod[
        "volumes"
    ]
    (fetch,) = pod["initContainers"]
    assert {"name": "model-pvc", "mountPath": f"{L.PVC_ROOT}/model-claim", "readOnly": True} in fetch["volumeMounts"]


def test_script_stages_mount_their_configmaps() -> None:
    children = render(manifest(VARIANTS["scripts"]))
    volumes = {v["name"]: v for v in pod_spec(children)["volumes"]}
    assert volumes["pre-script"]["configMap"] == {"name": "pre-code", "items": [{"key": "pre.py", "path": "pre.py"}]}
    assert volumes["post-script"]["configMap"] == {
        "name": "post-code",
        "items": [{"key": "stage.py", "path": "stage.py"}],
    }
    pre = containers(children)[L.PRE_CONTAINER]
    assert {"name": "pre-script", "mountPath": f"{L.SCRIPTS_DIR}/pre", "readOnly": True} in pre["volumeMounts"]


def test_runtime_scheduling_passes_through() -> None:
    spec = VARIANTS["everything"]["runtime"]
    pod = pod_spec(render(manifest(VARIANTS["everything"])))
    assert pod["nodeSelector"] == spec["nodeSelector"]
    assert list(pod["nodeSelector"]) == sorted(spec["nodeSelector"])
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert containers(render(manifest(VARIANTS["everything"])))[L.TRITON_CONTAINER]["env"] == spec["env"]


def _bound_addresses(container: dict[str, Any]) -> dict[int, str]:
    """Port -> address the container's process listens on, read from its command line."""
    cmd = container["command"]
    flags = dict(a.split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
    binds: dict[int, str] = {}
    for kind in ("http", "grpc", "metrics"):
        if f"--{kind}-port" in flags:
            binds[int(flags[f"--{kind}-port"])] = flags.get(f"--{kind}-address", "0.0.0.0")
    if "--port" in cmd:
        host = cmd[cmd.index("--host") + 1] if "--host" in cmd else "0.0.0.0"
        binds[int(cmd[cmd.index("--port") + 1])] = host
    return binds


def test_probes_reach_an_address_the_process_listens_on() -> None:
    children = render(manifest({"preprocess": {"builtin": {}}}))
    unreachable = []
    for container in pod_spec(children)["containers"]:
        named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        binds = _bound_addresses(container)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container.get(probe, {}).get("httpGet")
            if not get:
                continue
            port = named.get(get["port"], get["port"])
            if binds.get(port) in LOOPBACK:
                unreachable.append(f"{container['name']}.{probe} -> {binds[port]}:{port}")
    assert unreachable == []


# --- the ConfigMap and config.pbtxt ---------------------------------------------------------------


def _model_config(text: str) -> Any:
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_configmap_holds_triton_config_and_spec(case: dict[str, Any]) -> None:
    isvc = parse(case)
    children = render(case)
    data = kinds(children)["ConfigMap"]["data"]
    assert set(data) == {L.TRITON_CONFIG_FILE, L.SPEC_FILE}
    text = data[L.TRITON_CONFIG_FILE]
    model = isvc.spec.model
    assert f"max_batch_size: {model.max_batch_size}\n" in text
    assert ("dynamic_batching {" in text) == (model.dynamic_batching is not None)
    assert ("instance_group [" in text) == bool(model.instance_groups)
    assert ("response_cache {" in text) == model.response_cache.enabled
    config = _model_config(text)
    assert config.name == model.name
    assert config.max_batch_size == model.max_batch_size
    assert config.HasField("dynamic_batching") == (model.dynamic_batching is not None)
    assert len(config.instance_group) == len(model.instance_groups or [])
    assert config.response_cache.enable == model.response_cache.enabled
    spec_doc = json.loads(data[L.SPEC_FILE])
    assert spec_doc["revision"] == revision_of(isvc.spec)
    assert set(spec_doc["spec"]) <= {"model", "runtime", "preprocess", "postprocess", "gateway", "security"}
    assert spec_doc["spec"]["model"]["name"] == model.name


def _model(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "storageUri": "s3://b/m", "format": "onnx", **fields})


@pytest.mark.parametrize("fmt", list(BACKENDS))
def test_pbtxt_selects_the_backend(fmt: str) -> None:
    config = _model_config(render_config(_model(format=fmt)))
    field, value = BACKENDS[fmt]
    assert getattr(config, field) == value


def test_pbtxt_minimal_has_only_what_the_spec_decides() -> None:
    text = render_config(_model())
    assert text == 'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'


def test_pbtxt_full() -> None:
    model = _model(
        version=3,
        maxBatchSize=32,
        dynamicBatching={"preferredBatchSizes": [8, 32], "maxQueueDelayMicroseconds": 250},
        instanceGroups=[{"kind": "GPU", "count": 2, "gpus": [1]}, {"kind": "CPU"}],
        responseCache={"enabled": True},
        inputs=[{"name": "text", "dataType": "BYTES", "dims": [1]}, {"name": "ids", "dataType": "INT64", "dims": [-1]}],
        outputs=[{"name": "y", "dataType": "BF16", "dims": [4, 4]}],
        parameters={"b": "2", "a": 'x "q" \\ \n ü'},
    )
    config = _model_config(render_config(model))
    assert list(config.version_policy.specific.versions) == [3]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    groups = [(g.count, g.kind, list(g.gpus)) for g in config.instance_group]
    kind = type(config.instance_group[0]).Kind
    assert groups == [(2, kind.Value("KIND_GPU"), [1]), (1, kind.Value("KIND_CPU"), [])]
    data_types = config.DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number
    types = [(t.name, data_types[t.data_type].name) for t in [*config.input, *config.output]]
    assert types == [("text", "TYPE_STRING"), ("ids", "TYPE_INT64"), ("y", "TYPE_BF16")]
    assert [list(t.dims) for t in config.input] == [[1], [-1]]
    assert config.response_cache.enable is True
    assert {k: v.string_value for k, v in config.parameters.items()} == {"b": "2", "a": 'x "q" \\ \n ü'}
    text = render_config(model)
    assert text.index('key: "a"') < text.index('key: "b"'), "parameters sorted: deterministic output"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=4),
    st.text(min_size=1, max_size=30),
)
def test_pbtxt_strings_round_trip(parameters: dict[str, str], tensor: str) -> None:
    """Any parameter text or tensor name survives Triton's parser unchanged (quotes, unicode, controls)."""
    model = _model(parameters=parameters, outputs=[{"name": tensor, "dataType": "FP32", "dims": [1]}])
    config = _model_config(render_config(model))
    assert {k: v.string_value for k, v in config.parameters.items()} == parameters
    assert config.output[0].name == tensor


# --- ServiceAccount -------------------------------------------------------------------------------


def test_service_account_mounts_no_token(case: dict[str, Any]) -> None:
    sa = kinds(render(case))["ServiceAccount"]
    assert sa["automountServiceAccountToken"] is False
    assert set(sa) == {"apiVersion", "kind", "metadata", "automountServiceAccountToken"}


def test_unset_images_come_from_the_operator_and_change_the_revision() -> None:
    """Images are not CRD defaults: the operator's configured images fill them, and a new one is a new revision."""
    from tritium.images import Images
    from tritium.render.metadata import revision_of as rev_of

    isvc = parse(manifest({"preprocess": {"builtin": {}}}))
    mirror = Images(stage="mirror.example/tritium:1", triton="mirror.example/triton:1")
    children = render_children(isvc, images=mirror)
    pod = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {"triton": "mirror.example/triton:1", "preprocess": "mirror.example/tritium:1",
                      "gateway": "mirror.example/tritium:1", "fetch-model": "mirror.example/tritium:1"}
    assert rev_of(isvc.spec, mirror) != rev_of(isvc.spec)
    pinned = parse(manifest({"runtime": {"image": "own/triton:2"}}))
    assert rev_of(pinned.spec, mirror) == rev_of(pinned.spec, Images(stage=mirror.stage)), "a spec image wins"


@pytest.mark.parametrize(
    ("stages", "stage_ports"),
    [
        ({}, set()),
        ({"preprocess": {"builtin": {}}}, {L.PRE_PORT}),
        ({"postprocess": {"builtin": {}}}, {L.POST_PORT}),
        ({"preprocess": {"builtin": {}}, "postprocess": {"builtin": {}}}, {L.PRE_PORT, L.POST_PORT}),
    ],
)
def test_network_policy_admits_only_the_gateway_and_metrics_ports(stages: dict[str, Any],
                                                                  stage_ports: set[int]) -> None:
    """The gateway's API port and exactly the ports the PodMonitor scrapes; Triton's HTTP and gRPC ports
    listen on the pod IP (for probes) but are not reachable from other pods."""
    children = render(manifest({**stages, "monitoring": {"serviceMonitor": True}}))
    policy = next(c for c in children if c["kind"] == "NetworkPolicy")
    deployment = next(c for c in children if c["kind"] == "Deployment")
    monitor = next(c for c in children if c["kind"] == "PodMonitor")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {L.GATEWAY_PORT, L.GATEWAY_METRICS_PORT, L.TRITON_METRICS_PORT} | stage_ports
    named = {p["name"]: p["containerPort"] for c in pod_spec(children)["containers"] for p in c.get("ports", [])}
    scraped = {named[e["port"]] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert allowed - scraped == {L.GATEWAY_PORT}, "what Prometheus scrapes, it may reach; nothing else but the API"
    assert not allowed & {L.TRITON_HTTP_PORT, L.TRITON_GRPC_PORT}
    assert not allowed & ({L.PRE_PORT, L.POST_PORT} - stage_ports)
    assert all(rule.keys() == {"ports"} for rule in policy["spec"]["ingress"]), "from any pod, as for the gateway"
    assert policy["spec"]["policyTypes"] == ["Ingress"]


# An IANA_SVC_NAME, which a container port name must be (Kubernetes validation, not in the OpenAPI schema).
_PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def test_container_port_names_are_valid_and_unique(case: dict[str, Any]) -> None:
    names = [p["name"] for c in pod_spec(render(case))["containers"] for p in c.get("ports", [])]
    assert len(names) == len(set(names))
    assert [n for n in names if not _PORT_NAME.match(n)] == []


def test_stage_containers_name_their_tcp_port() -> None:
    """The port a stage's probes, and the PodMonitor's scrapes, reach: the one its command listens on."""
    children = render(manifest({"preprocess": {"builtin": {}}, "postprocess": {"builtin": {}}}))
    for name, port, port_name in ((L.PRE_CONTAINER, L.PRE_PORT, "pre-http"),
                                  (L.POST_CONTAINER, L.POST_PORT, "post-http")):
        stage = containers(children)[name]
        assert stage["ports"] == [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
        assert _bound_addresses(stage) == {port: "0.0.0.0"}
        assert stage["readinessProbe"]["httpGet"]["port"] == port
