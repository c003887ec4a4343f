"""The Helm chart, the plain manifests and the GitOps examples, checked with a real helm.

Every rendered object is validated strictly against the official Kubernetes schemas of the
version we claim to support; what no schema covers (other projects' CRDs) is allow-listed by
name, so a new kind cannot slip through. Values the schema must reject each get a test, and the
chart, the package, the images and the generated files are checked to agree with each other.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.crd_structural import schema_errors, structural_violations
from tests.support.helm import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    VALUES_DIR,
    run_helm,
    template,
    template_args,
)
from tests.support.k8s_schema import NO_SCHEMA_ALLOWED, validate_strict
from tests.support.pod_security import restricted_violations
from tests.support.promtool import run_promtool
from tritium.api.resource import load_inference_services
from tritium.cli import build_parser
from tritium.images import DEFAULT_TRITON_IMAGE, OPERATOR_IMAGE
from tritium.version import __version__

# Modes rendered as they are; optional-files.yaml needs files the chart may not carry (own tests).
MODE_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml") if p.name != "optional-files.yaml")
MODES = ["default", *MODE_FILES]
PEERING_KINDS = {("kopf.dev/v1", "KopfPeering"), ("kopf.dev/v1", "ClusterKopfPeering")}
ALLOWED_WITHOUT_SCHEMA = NO_SCHEMA_ALLOWED | PEERING_KINDS
STANDARD_LABELS = (
    "helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of",
)
WRITE = ["list", "watch", "create", "patch", "delete"]  # children: watched, applied, pruned
READ = ["get", "list", "watch"]
# The operator's permissions, exactly: (apiGroup, resource) -> verbs. More is a least-privilege bug
# (tests/unit/test_operator_rbac.py derives the same from the operator's code).
NAMESPACED_RULES: dict[tuple[str, str], list[str]] = {
    ("serving.tritium.dev", "inferenceservices"): ["list", "watch", "patch"],
    ("serving.tritium.dev", "inferenceservices/status"): ["patch"],
    ("serving.tritium.dev", "inferenceservices/finalizers"): ["update"],
    ("apps", "deployments"): ["get", *WRITE],  # the stable revision is read when the cache lacks it
    ("", "services"): WRITE,
    ("", "configmaps"): ["get", *WRITE],  # also those a spec refers to
    ("", "serviceaccounts"): WRITE,
    ("autoscaling", "horizontalpodautoscalers"): WRITE,
    ("policy", "poddisruptionbudgets"): WRITE,
    ("networking.k8s.io", "networkpolicies"): WRITE,
    ("gateway.networking.k8s.io", "httproutes"): WRITE,
    ("monitoring.coreos.com", "podmonitors"): WRITE,
    ("monitoring.coreos.com", "prometheusrules"): WRITE,
    ("monitoring.coreos.com", "alertmanagerconfigs"): WRITE,
    ("keda.sh", "scaledobjects"): WRITE,
    ("cert-manager.io", "certificates"): WRITE,
    ("", "secrets"): READ,
    ("", "pods"): ["list"],  # the builtin analysis provider finds the canary pods' addresses
    ("", "events"): ["create"],
}
# kopf observes CRDs in both modes, and namespaces only when not cluster-wide.
CLUSTER_READ_RULES: dict[tuple[str, str], list[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"],
}
NAMESPACED_CLUSTER_READ_RULES = {**CLUSTER_READ_RULES, ("", "namespaces"): ["list", "watch"]}
# kopf reads, watches and patches its peering object; `tritium operator` creates it when missing.
PEERING_VERBS = ["get", "list", "watch", "create", "patch"]


# --- helm (tests/support/helm.py; the `helm` fixture is in tests/unit/conftest.py) -------------


@cache
def _render_cached(helm: str, chart: str, values: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(template(helm, chart=Path(chart), values=values))


def render(helm: str, mode: str = "default", chart: Path = CHART) -> list[dict[str, Any]]:
    """The objects `helm template` produces for one values file (or the defaults)."""
    values = () if mode == "default" else (str(VALUES_DIR / mode),)
    return [dict(o) for o in _render_cached(helm, str(chart), values)]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["operator"]
    result: dict[str, Any] = pod["containers"][0]
    return result


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """Rules flattened to (group, resource) -> verbs; fails on wildcards and duplicates."""
    out: dict[tuple[str, str], list[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in out, f"duplicate rule for {group}/{resource}"
                out[(group, resource)] = sorted(rule["verbs"])
    return out


def _sorted(rules: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], list[str]]:
    return {k: sorted(v) for k, v in rules.items()}


def chart_crds() -> dict[str, dict[str, Any]]:
    """The CRDs in the chart's crds/, by name."""
    crds = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            crds[doc["metadata"]["name"]] = doc
    return crds


def validate_objects(objs: list[dict[str, Any]]) -> None:
    """Strict schema validation; peering objects also against the chart's own peering CRDs."""
    crds = chart_crds()
    for obj in objs:
        validate_strict(obj, version=KUBE_VERSION, allow_without_schema=ALLOWED_WITHOUT_SCHEMA)
        if (obj["apiVersion"], obj["kind"]) in PEERING_KINDS:
            plural = obj["kind"].lower() + "s"
            schema = crds[f"{plural}.kopf.dev"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            assert schema_errors(body, schema, strict=True) == [], obj


# --- lint and strict validation of every mode ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_strict(helm: str, mode: str) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    if mode != "default":
        args += ["-f", str(VALUES_DIR / mode)]
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_is_valid_kubernetes(helm: str, mode: str) -> None:
    objs = render(helm, mode)
    assert objs
    validate_objects(objs)


@pytest.mark.parametrize("mode", MODES)
def test_standard_labels_on_every_object(helm: str, mode: str) -> None:
    for obj in render(helm, mode):
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/version"] == __version__


@pytest.mark.parametrize("mode", MODES)
def test_operator_args_are_accepted_by_the_cli(helm: str, mode: str) -> None:
    """The Deployment's command line must parse with the real `tritium` parser (flags cannot drift)."""
    c = container(render(helm, mode))
    assert c["command"] == ["tritium"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "operator"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert (args.liveness_port, args.metrics_port) == (ports["healthz"], ports["metrics"])
    values = yaml.safe_load((VALUES_DIR / mode).read_text()) if mode != "default" else {}
    assert args.namespace == values.get("watchNamespaces", [])
    assert args.peering == values.get("peering", {}).get("name", "tritium")


def test_every_documented_value_is_exercised() -> None:
    """Each leaf of values.yaml is set away from its default by some values file under test."""

    def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix, node

    missing = object()

    def lookup(values: Any, path: str) -> Any:
        for part in path.split("."):
            if not isinstance(values, dict) or part not in values:
                return missing
            values = values[part]
        return values

    defaults = dict(leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    files = [yaml.safe_load(p.read_text()) for p in VALUES_DIR.glob("*.yaml")]
    unexercised = [
        path for path, default in defaults.items()
        if not any(lookup(f, path) is not missing and lookup(f, path) != default for f in files)
    ]
    assert unexercised == []


# --- the default install: cluster-wide ---------------------------------------------------------


def test_default_deployment(helm: str) -> None:
    objs = render(helm)
    deploy = one(objs, "Deployment")
    assert deploy["metadata"]["namespace"] == NAMESPACE
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    c = container(objs)
    assert c["args"] == ["operator", "--peering=tritium", "--liveness-port=8080", "--metrics-port=9090"]
    assert c["image"] == OPERATOR_IMAGE
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"healthz": 8080, "metrics": 9090}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == "tritium"
    spread = pod["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert all(s["labelSelector"]["matchLabels"] == selector for s in spread)
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("mode", MODES)
def test_restricted_security_context(helm: str, mode: str) -> None:
    """The restricted Pod Security Standard, in every mode."""
    template = one(render(helm, mode), "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert restricted_violations(pod, template["metadata"].get("annotations")) == []
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any("hostPath" in v for v in pod.get("volumes", []))


def test_default_rbac_is_cluster_wide_and_least_privilege(helm: str) -> None:
    objs = render(helm)
    assert of_kind(objs, "Role") == [] and of_kind(objs, "RoleBinding") == []
    roles = {r["metadata"]["name"]: r for r in of_kind(objs, "ClusterRole")}
    binding = one(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tritium", "namespace": NAMESPACE}]
    operator_role = roles[binding["roleRef"]["name"]]
    expected = {**NAMESPACED_RULES, **CLUSTER_READ_RULES, ("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS}
    assert rules_of(operator_role) == _sorted(expected)
    assert one(objs, "ServiceAccount")["metadata"]["name"] == "tritium"


def test_user_roles_aggregate_into_view_and_edit(helm: str) -> None:
    roles = {r["metadata"]["name"]: r for r in of_kind(render(helm), "ClusterRole")}
    view, edit = roles["tritium-view"], roles["tritium-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert all(verbs == sorted(READ) for verbs in rules_of(view).values())
    full = render(helm, "full.yaml")
    assert not [r for r in of_kind(full, "ClusterRole") if "aggregate-to-view" in str(r["metadata"]["labels"])]


@pytest.mark.parametrize("mode", MODES)
def test_no_peering_object_is_rendered(helm: str, mode: str) -> None:
    """The operator creates its peering object: one rendered with its CRD breaks a one-step apply."""
    assert [o for o in render(helm, mode) if (o["apiVersion"], o["kind"]) in PEERING_KINDS] == []


def test_peering_create_grants_create(helm: str) -> None:
    args = template_args(CHART, sets=("peering.create=false",))
    objs = [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]
    role = next(r for r in of_kind(objs, "ClusterRole") if r["metadata"]["name"] == "tritium")
    assert rules_of(role)[("kopf.dev", "clusterkopfpeerings")] == sorted(["get", "list", "watch", "patch"])


def test_default_pdb_and_metrics(helm: str) -> None:
    objs = render(helm)
    selector = one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    service = one(objs, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert of_kind(objs, "ServiceMonitor") == [] and of_kind(objs, "PrometheusRule") == []
    assert of_kind(objs, "ConfigMap") == []


# --- the other modes ---------------------------------------------------------------------------


def test_namespaced_mode(helm: str) -> None:
    objs = render(helm, "namespaced.yaml")
    c = container(objs)
    assert c["args"][:2] == ["operator", "--peering=tritium-teams"]
    assert [a for a in c["args"] if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    roles = of_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_of(role) == _sorted({**NAMESPACED_RULES, ("kopf.dev", "kopfpeerings"): PEERING_VERBS})
    bindings = of_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "tritium", "namespace": NAMESPACE}]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tritium"}
    # Cluster-wide, the operator may only watch CRDs and namespaces (the aggregated roles are for users).
    binding = one(objs, "ClusterRoleBinding")
    cluster_role = next(r for r in of_kind(objs, "ClusterRole") if r["metadata"]["name"] == binding["roleRef"]["name"])
    assert rules_of(cluster_role) == _sorted(NAMESPACED_CLUSTER_READ_RULES)


def test_minimal_mode_creates_no_identity(helm: str) -> None:
    objs = render(helm, "minimal.yaml")
    assert sorted(o["kind"] for o in objs) == ["Deployment", "Service"]
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operators"


def test_full_mode_applies_every_option(helm: str) -> None:
    objs = render(helm, "full.yaml")
    deploy = one(objs, "Deployment")
    assert deploy["metadata"]["name"] == "serving-operator"
    pod = deploy["spec"]["template"]["spec"]
    c = container(objs)
    assert c["image"] == (
        "registry.example.com/mirror/tritium:0.1.0-patched"
        "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert c["imagePullPolicy"] == "Always"
    assert "--verbose" in c["args"] and "--namespace=inference" in c["args"]
    assert "--prometheus-url=http://prometheus-operated.monitoring.svc:9090" in c["args"]
    assert {e["name"] for e in c["env"]} >= {"HTTPS_PROXY", "TRITIUM_TOKEN", "POD_NAME"}
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert [s["whenUnsatisfiable"] for s in pod["topologySpreadConstraints"]] == ["DoNotSchedule"]
    assert pod["serviceAccountName"] == "tritium-operator"
    template_meta = deploy["spec"]["template"]["metadata"]
    assert template_meta["annotations"] == {"example.com/owner": "ml-platform"}
    assert template_meta["labels"]["example.com/tier"] == "control-plane"
    assert all(o["metadata"]["labels"]["example.com/team"] == "ml-platform" for o in objs)
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].startswith("tritium@")
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 2
    assert one(objs, "Service")["spec"]["ports"][0]["port"] == 9292
    rule = one(objs, "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert 'job="serving-operator-metrics"' in exprs and "namespace=" not in exprs


def test_monitoring_mode(helm: str) -> None:
    objs = render(helm, "monitoring.yaml")
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(objs, "Service")["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    ]
    rule = one(objs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "TritiumOperatorDown", "TritiumOperatorReconcileErrors", "TritiumOperatorErrorsRising",
        "TritiumOperatorReconcileSlow",
    }
    selector = 'job="tritium-metrics",namespace="tritium-system"'
    assert alerts["TritiumOperatorDown"]["expr"] == f"absent(up{{{selector}}} == 1)"
    assert f'tritium_operator_reconciles_total{{{selector},result="error"}}' in alerts[
        "TritiumOperatorReconcileErrors"]["expr"]
    assert "> 0.05" in alerts["TritiumOperatorReconcileErrors"]["expr"]
    assert "> 3" in alerts["TritiumOperatorReconcileSlow"]["expr"]
    assert "tritium_operator_errors_total" in alerts["TritiumOperatorErrorsRising"]["expr"]
    assert "tritium_operator_reconcile_duration_seconds_bucket" in alerts["TritiumOperatorReconcileSlow"]["expr"]
    assert all(a["labels"]["team"] == "ml-platform" and a["labels"]["severity"] for a in alerts.values())
    # The alert templates reach Prometheus unexpanded by Helm.
    assert "{{ $value | humanizePercentage }}" in alerts["TritiumOperatorReconcileErrors"]["annotations"][
        "description"]


@pytest.mark.parametrize("mode", ["monitoring.yaml", "full.yaml"])
def test_alert_rules_pass_promtool(helm: str, mode: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(one(render(helm, mode), "PrometheusRule")["spec"]))
    run_promtool("check", "rules", str(rules))


# --- values.schema.json rejects bad values --------------------------------------------------------

BAD_VALUES = [
    (["--set", "replicaCount=-1"], "replicaCount: Must be greater than or equal to 0"),
    (["--set", "replicaCount=two"], "replicaCount: Invalid type"),
    (["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy must be one of the following"),
    (["--set", "image.digest=sha256:abc"], "image.digest: Does not match pattern"),
    (["--set", "image.repository=ghcr.io/tritium-dev/tritium:0.1.0"], "image.repository: Does not match pattern"),
    (["--set", "image.tag=has space"], "image.tag: Does not match pattern"),
    (["--set", "image.name=tritium"], "image: Additional property name is not allowed"),
    (["--set", "replicas=3"], "Additional property replicas is not allowed"),
    (["--set", "watchNamespaces=team-a"], "watchNamespaces: Invalid type. Expected: array, given: string"),
    (["--set", "watchNamespaces={Team_A}"], "watchNamespaces.0: Does not match pattern"),
    (["--set", "watchNamespaces={a,a}"], "watchNamespaces: array items[0,1] must be unique"),
    (["--set", "peering.name="], "peering.name: Does not match pattern"),
    (["--set", "operator.metricsPort=70000"], "operator.metricsPort: Must be less than or equal to 65535"),
    (["--set-string", "operator.verbose=yes"], "operator.verbose: Invalid type. Expected: boolean"),
    (["--set", "resources.requests.cpu=lots"], "resources.requests.cpu: Does not match pattern"),
    (["--set", "resources.claims=x"], "resources: Additional property claims is not allowed"),
    (["--set", "podDisruptionBudget.maxUnavailable=0"], "podDisruptionBudget.maxUnavailable: Must be greater"),
    (["--set-json", 'topologySpreadConstraints=[{"maxSkew":1}]'], "topologyKey is required"),
    (["--set", "metrics.serviceMonitor.interval=often"], "metrics.serviceMonitor.interval: Does not match pattern"),
    (["--set", "prometheusRule.reconcileErrorPercent=0"], "reconcileErrorPercent: Must be greater than or equal to 1"),
    (["--set", "prometheusRule.reconcileErrorPercent=101"], "reconcileErrorPercent: Must be less than or equal to 100"),
    (["--set", "prometheusRule.reconcileErrorPercent=2.5"], "reconcileErrorPercent: Invalid type. Expected: integer"),
    (["--set", "prometheusRule.reconcileSlowSeconds=10"], "reconcileSlowSeconds: Must be less than or equal to 9"),
    (["--set", "commonLabels.team=1"], "commonLabels.team: Invalid type. Expected: string, given: integer"),
    (["--set", "grafanaDashboard.namespace=Monitoring"], "grafanaDashboard.namespace"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_rejected_by_template_and_lint(helm: str, args: list[str], message: str) -> None:
    for command in (
        ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION],
        ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION],
    ):
        result = run_helm(helm, *command, *args)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"{command[0]} accepted {args}"
        assert message in output, output


def test_template_checks_reject_what_the_schema_cannot_express(helm: str) -> None:
    """Cross-field rules live in the templates: `helm template`/`install` fail (`helm lint` only informs)."""
    result = run_helm(helm, *template_args(CHART, sets=("operator.livenessPort=9090",)))
    assert result.returncode != 0
    assert "operator.livenessPort and operator.metricsPort must differ" in result.stderr


def test_schema_is_draft07_and_covers_every_value() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def check(node: dict[str, Any], value: Any, path: str) -> None:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
        if "anyOf" in node:
            return
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and isinstance(value, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, sub in value.items():
                props = node.get("properties", {})
                assert key in props or isinstance(node.get("additionalProperties"), dict), f"{path}.{key} untyped"
                check(props.get(key) or node["additionalProperties"], sub, f"{path}.{key}")

    check(schema, values, "(root)")


# --- files under files/ -------------------------------------------------------------------------


def test_optional_files_install_as_configmaps(helm: str) -> None:
    objs = render(helm, "optional-files.yaml")
    validate_objects(objs)
    maps = {o["metadata"]["name"]: o for o in of_kind(objs, "ConfigMap")}
    dashboard, adapter = maps["tritium-dashboard"], maps["tritium-prometheus-adapter"]
    assert dashboard["metadata"]["namespace"] == adapter["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["example.com/grafana-dashboard"] == "tritium"
    # The dashboard ships with the chart (tests/unit/test_grafana_dashboard.py checks its queries)
    # and reaches the ConfigMap byte for byte: Helm leaves its {{revision}} legends alone.
    source = (CHART / "files" / "grafana-dashboard.json").read_text()
    assert dashboard["data"]["tritium.json"] == source.rstrip("\n")
    assert json.loads(dashboard["data"]["tritium.json"])["panels"]
    # The adapter rules ship with the chart (tests/unit/test_prometheus_adapter.py checks their
    # queries) and reach the ConfigMap byte for byte: Helm leaves the adapter's <<.Series>> alone.
    rules = (CHART / "files" / "prometheus-adapter-rules.yaml").read_text()
    assert adapter["data"]["config.yaml"] == rules.rstrip("\n")
    assert yaml.safe_load(adapter["data"]["config.yaml"])["rules"]


@pytest.mark.parametrize(
    ("option", "file"),
    [("grafanaDashboard", "grafana-dashboard.json"), ("prometheusAdapter", "prometheus-adapter-rules.yaml")],
)
def test_optional_file_options_fail_clearly_without_the_file(helm: str, tmp_path: Path, option: str, file: str) -> None:
    chart = tmp_path / "tritium"
    shutil.copytree(CHART, chart)
    (chart / "files" / file).unlink(missing_ok=True)
    result = run_helm(helm, *template_args(chart, sets=(f"{option}.enabled=true",)))
    assert result.returncode != 0
    assert f"{option}.enabled is true, but this chart version has no files/{file}" in result.stderr


# --- NOTES.txt ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_notes_render_and_say_what_to_do_next(helm: str, mode: str, tmp_path: Path) -> None:
    """`helm template` skips NOTES.txt, so render it through a template that wraps it."""
    chart = tmp_path / "tritium"
    shutil.copytree(CHART, chart)
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_check.tpl").write_text('{{- define "notes.check" }}' + notes + "{{- end }}\n")
    (chart / "templates" / "notes-check.yaml").write_text('notes: {{ include "notes.check" . | toJson }}\n')
    values = () if mode == "default" else ("-f", str(VALUES_DIR / mode))
    result = run_helm(helm, *template_args(chart), *values, "--show-only", "templates/notes-check.yaml")
    assert result.returncode == 0, result.stderr
    text = yaml.safe_load(result.stdout)["notes"]
    assert "kubectl get tisvc -A" in text
    assert "kubectl apply" in text and "tritium crd --check" in text
    settings = yaml.safe_load((VALUES_DIR / mode).read_text()) if mode != "default" else {}
    assert ("(namespaced mode)" in text) == bool(settings.get("watchNamespaces"))


# --- CRDs ----------------------------------------------------------------------------------------


def test_chart_crd_is_identical_to_generated() -> None:
    generated = REPO / "crds" / "serving.tritium.dev_inferenceservices.yaml"
    copy = CHART / "crds" / generated.name
    assert copy.read_bytes() == generated.read_bytes(), "run: .venv/bin/python scripts/manifests.py"


def test_chart_crds_are_valid_and_structural() -> None:
    crds = chart_crds()
    assert set(crds) == {
        "inferenceservices.serving.tritium.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev",
    }
    for crd in crds.values():
        assert kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
        for version in crd["spec"]["versions"]:
            assert structural_violations(version["schema"]["openAPIV3Schema"]) == [], crd["metadata"]["name"]


def test_kopf_peering_crds_follow_kopf() -> None:
    """kopf's documented peering CRDs: status is free-form and written through the main resource."""
    crds = chart_crds()
    for name, kind, scope in [
        ("kopfpeerings.kopf.dev", "KopfPeering", "Namespaced"),
        ("clusterkopfpeerings.kopf.dev", "ClusterKopfPeering", "Cluster"),
    ]:
        spec = crds[name]["spec"]
        assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("kopf.dev", scope, kind)
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        # kopf patches status on the object itself: a status subresource would silently drop it.
        assert "subresources" not in version


# --- versions and images agree ---------------------------------------------------------------------


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__


def test_chart_default_image_is_the_operator_image(helm: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    repository, tag = OPERATOR_IMAGE.rsplit(":", 1)
    assert values["image"]["repository"] == repository
    assert values["image"]["tag"] in ("", tag)
    assert container(render(helm))["image"] == OPERATOR_IMAGE


def _dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (REPO / "inference-image" / name).read_text()
    text = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def _build_commands(text: str) -> dict[str, str]:
    """`docker build -f FILE -t TAG .` commands in a text: FILE -> TAG."""
    found: dict[str, str] = {}
    for match in re.finditer(r"docker build [^\n`]*", text):
        argv = shlex.split(match.group(0))
        dockerfile, tag = argv[argv.index("-f") + 1], argv[argv.index("-t") + 1]
        assert argv[-1] == ".", "build from the repository root"
        assert found.setdefault(dockerfile, tag) == tag, f"two tags for {dockerfile}"
    return found


def test_tritium_dockerfile() -> None:
    steps = _dockerfile("Dockerfile")
    froms = [args for op, args in steps if op == "FROM"]
    assert froms == ["python:3.11-slim"]
    assert any(op == "RUN" and 'pip install "/src[dataplane,s3,gcs]"' in args for op, args in steps)
    assert ("USER", "1000:1000") in steps
    assert ("ENTRYPOINT", '["tritium"]') in steps


def test_triton_dockerfile_uses_the_default_triton_image() -> None:
    steps = _dockerfile("Dockerfile.triton")
    assert [args for op, args in steps if op == "FROM"] == [DEFAULT_TRITON_IMAGE]
    run = " ".join(args for op, args in steps if op == "RUN")
    assert 'pip install "/src[dataplane]"' in run
    assert "python_backend_stubs/3.11" in " ".join(args for _, args in steps)
    assert steps[-1][0] == "USER" and steps[-1][1] not in ("root", "0")


def test_docs_build_commands_match_images_and_dockerfiles() -> None:
    docs = _build_commands((REPO / "docs" / "install.md").read_text())
    assert docs["inference-image/Dockerfile"] == OPERATOR_IMAGE
    assert set(docs) == {"inference-image/Dockerfile", "inference-image/Dockerfile.triton"}
    assert docs["inference-image/Dockerfile.triton"].endswith(f"tritium{__version__}")
    for name in ("Dockerfile", "Dockerfile.triton"):
        in_file = _build_commands((REPO / "inference-image" / name).read_text())
        assert in_file == {f"inference-image/{name}": docs[f"inference-image/{name}"]}


# --- deploy/install.yaml ---------------------------------------------------------------------------


def _manifests_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tritium_manifests", REPO / "scripts" / "manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_yaml_is_up_to_date(helm: str) -> None:
    script = _manifests_script()
    fresh = script.render(helm)
    assert fresh == script.render(helm), "rendering must be deterministic"
    committed = (REPO / "deploy" / "install.yaml").read_text()
    assert committed == fresh, "deploy/install.yaml is stale: run .venv/bin/python scripts/manifests.py"


def test_install_yaml_objects(helm: str) -> None:
    objs = [d for d in yaml.safe_load_all((REPO / "deploy" / "install.yaml").read_text()) if d]
    validate_objects(objs)
    kinds = [o["kind"] for o in objs]
    assert kinds[:4] == ["CustomResourceDefinition"] * 3 + ["Namespace"], "CRDs and Namespace come first"
    assert {o["metadata"]["name"] for o in objs[:3]} == set(chart_crds())
    assert objs[3]["metadata"]["name"] == NAMESPACE
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in objs)
    assert "ClusterKopfPeering" not in kinds and "Role" not in kinds
    assert container(objs)["image"] == OPERATOR_IMAGE
    assert all(o["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm" for o in objs)


# --- GitOps examples ----------------------------------------------------------------------------------

GITOPS = REPO / "examples" / "gitops"


def test_kustomization_lists_valid_inference_services() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text())
    services = 0
    for resource in kustomization["resources"]:
        path = GITOPS / resource
        assert path.is_file(), resource
        for doc in yaml.safe_load_all(path.read_text()):
            validate_strict(doc, version=KUBE_VERSION)
            if doc["kind"] == "InferenceService":
                services += 1
                assert "replicas" not in doc["spec"], "spec.replicas belongs to the autoscaler, not Git"
                load_inference_services(yaml.safe_dump(doc))
    assert services >= 2


def test_kustomize_builds_the_example() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(GITOPS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    objs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert all(o["metadata"].get("namespace", "ml-serving") == "ml-serving" for o in objs)
    for obj in objs:
        validate_strict(obj, version=KUBE_VERSION)


def test_argocd_application() -> None:
    app = yaml.safe_load((GITOPS / "argocd-application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert (REPO / source["path"] / "kustomization.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "ml-serving"
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert app["spec"]["ignoreDifferences"] == [
        {"group": "serving.tritium.dev", "kind": "InferenceService", "jsonPointers": ["/spec/replicas"]}
    ]


def test_flux_kustomization() -> None:
    docs = list(yaml.safe_load_all((GITOPS / "flux-kustomization.yaml").read_text()))
    kinds = {(d["apiVersion"], d["kind"]): d for d in docs}
    repo = kinds[("source.toolkit.fluxcd.io/v1", "GitRepository")]
    kustomization = kinds[("kustomize.toolkit.fluxcd.io/v1", "Kustomization")]
    assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert (REPO / kustomization["spec"]["path"] / "kustomization.yaml").is_file()
    assert kustomization["spec"]["prune"] is True


def test_operator_is_told_the_default_images(helm: str) -> None:
    """InferenceServices without images get the chart's images: a registry mirror is one value."""
    default = one(render(helm), "Deployment")
    env = {e["name"]: e.get("value") for e in default["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRITIUM_STAGE_IMAGE"] == OPERATOR_IMAGE
    assert env["TRITIUM_TRITON_IMAGE"] == DEFAULT_TRITON_IMAGE
    mirrored = one(render(helm, "full.yaml"), "Deployment")
    env = {e["name"]: e.get("value") for e in mirrored["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRITIUM_STAGE_IMAGE"].startswith("registry.example.com/mirror/tritium:0.1.0-patched@sha256:")
    assert env["TRITIUM_TRITON_IMAGE"] == "registry.example.com/mirror/tritonserver:24.10-py3"
