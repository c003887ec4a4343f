"""InferenceService manifests the API, CRD and render tests share: examples, variations, rule cases.

The rule cases are the single table of good and bad examples for every CEL rule: the model tests
feed them to the Python parser, the CRD tests to the rules as emitted in the CRD, so both sides
of "one rule, two evaluators" are held to the same verdicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tritium.api.base import ApiModel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
CRD_FILE = ROOT / "crds" / "serving.tritium.dev_inferenceservices.yaml"


def example_paths() -> list[Path]:
    """The InferenceService examples at the top of examples/ (the cluster ones)."""
    return sorted(EXAMPLES_DIR.glob("*.yaml"))


def all_example_paths() -> list[Path]:
    """Every file under examples/ holding an InferenceService (GitOps, local mode, rollouts too)."""
    return sorted(p for p in EXAMPLES_DIR.rglob("*.yaml") if "\nkind: InferenceService" in p.read_text())


def load_example(path: Path) -> dict[str, Any]:
    """The single InferenceService document of an example file."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    (isvc,) = [d for d in docs if d.get("kind") == "InferenceService"]
    return isvc


def api_models() -> list[type[ApiModel]]:
    """Every model class reachable from the InferenceService resource, by walking field annotations."""
    from tritium.api.resource import InferenceService

    found: list[type[ApiModel]] = []

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, ApiModel):
            if annotation in found:
                return
            found.append(annotation)
            for f in annotation.model_fields.values():
                walk(f.annotation)
        for arg in getattr(annotation, "__args__", ()) or ():
            walk(arg)

    walk(InferenceService)
    return found


def merge(base: Any, patch: Any) -> Any:
    """Deep-merge ``patch`` into a copy of ``base``: mappings merge, everything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def manifest(spec_patch: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    """A minimal valid InferenceService with ``spec_patch`` merged into its spec."""
    base = {
        "apiVersion": "serving.tritium.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "demo", "namespace": "ml", **metadata},
        "spec": {"model": {"name": "demo", "storageUri": "s3://bucket/demo", "format": "onnx"}},
    }
    return merge(base, {"spec": spec_patch or {}})


@dataclass(frozen=True)
class RuleCase:
    """Good and bad spec patches for one CEL rule, and the field a bad one must be reported on."""

    model: str  # class name the rule sits on
    message: str  # the rule's message (identifies the rule together with the class)
    field: str  # the path the error names, e.g. spec.autoscaling.minReplicas
    bad: list[dict[str, Any]]
    good: list[dict[str, Any]] = field(default_factory=list)


GPU1 = {"runtime": {"resources": {"gpu": 1}}}

def _node_affinity(requirement: dict[str, Any]) -> dict[str, Any]:
    """A spec patch whose required node affinity is this one requirement."""
    return {"runtime": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [requirement]}]}}}}}


RULE_CASES: list[RuleCase] = [
    RuleCase(
        "DynamicBatching",
        "preferred batch sizes must be >= 1",
        "spec.model.dynamicBatching.preferredBatchSizes",
        bad=[{"model": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [0, 4]}}}],
        good=[{"model": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [1, 8]}}}],
    ),
    RuleCase(
        "InstanceGroup",
        "gpus may only be set when kind is GPU",
        "spec.model.instanceGroups[0].gpus",
        bad=[{"model": {"instanceGroups": [{"kind": "CPU", "gpus": [0]}]}}],
        good=[merge(GPU1, {"model": {"instanceGroups": [{"kind": "GPU", "gpus": [0]}]}})],
    ),
    RuleCase(
        "ModelSpec",
        "dynamicBatching requires maxBatchSize > 0",
        "spec.model.dynamicBatching",
        bad=[{"model": {"dynamicBatching": {}}}, {"model": {"maxBatchSize": 0, "dynamicBatching": {}}}],
        good=[{"model": {"maxBatchSize": 1, "dynamicBatching": {}}}],
    ),
    RuleCase(
        "ModelSpec",
        "every preferred batch size must be <= maxBatchSize",
        "spec.model.dynamicBatching.preferredBatchSizes",
        bad=[{"model": {"maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": [2, 8]}}}],
        good=[{"model": {"maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": [2, 4]}}}],
    ),
    RuleCase(
        "Toleration",
        "operator must be Exists when key is empty",
        "spec.runtime.tolerations[0].operator",
        bad=[
            {"runtime": {"tolerations": [{"effect": "NoSchedule"}]}},
            {"runtime": {"tolerations": [{"key": "", "operator": "Equal"}]}},
        ],
        good=[
            {"runtime": {"tolerations": [{"operator": "Exists"}]}},
            {"runtime": {"tolerations": [{"key": "gpu", "value": "yes"}]}},
        ],
    ),
    RuleCase(
        "Toleration",
        "value must be empty when operator is Exists",
        "spec.runtime.tolerations[0].value",
        bad=[{"runtime": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}}],
        good=[{"runtime": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}],
    ),
    RuleCase(
        "Toleration",
        "tolerationSeconds requires effect NoExecute",
        "spec.runtime.tolerations[0].tolerationSeconds",
        bad=[
            {"runtime": {"tolerations": [{"operator": "Exists", "tolerationSeconds": 30}]}},
            {"runtime": {"tolerations": [{"operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}]}},
        ],
        good=[{"runtime": {"tolerations": [{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}}],
    ),
    RuleCase(
        "NodeSelectorRequirement",
        "In and NotIn need at least one value",
        "spec.runtime.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].values",
        bad=[_node_affinity({"key": "gpu", "operator": "In"}), _node_affinity({"key": "gpu", "operator": "NotIn",
                                                                               "values": []})],
        good=[_node_affinity({"key": "gpu", "operator": "In", "values": ["h100"]})],
    ),
    RuleCase(
        "NodeSelectorRequirement",
        "Exists and DoesNotExist take no values",
        "spec.runtime.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].values",
        bad=[_node_affinity({"key": "gpu", "operator": "Exists", "values": ["yes"]})],
        good=[_node_affinity({"key": "gpu", "operator": "DoesNotExist"})],
    ),
    RuleCase(
        "NodeSelectorRequirement",
        "Gt and Lt need exactly one integer value",
        "spec.runtime.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].values",
        bad=[_node_affinity({"key": "gpu-memory", "operator": "Gt", "values": ["40", "80"]}),
             _node_affinity({"key": "gpu-memory", "operator": "Lt", "values": ["lots"]}),
             _node_affinity({"key": "gpu-memory", "operator": "Gt"})],
        good=[_node_affinity({"key": "gpu-memory", "operator": "Gt", "values": ["40000"]})],
    ),
    RuleCase(
        "AlertRule",
        "errorRatio and availability are ratios: threshold must be within 0 and 1",
        "spec.monitoring.alerts[0].threshold",
        bad=[{"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "errorRatio", "threshold": 5}]}},
             {"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "availability", "threshold": 1.5}]}}],
        good=[{"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "errorRatio", "threshold": 1}]}},
              {"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "availability", "threshold": 0.99}]}},
              {"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "p99LatencyMs", "threshold": 1500}]}}],
    ),
    RuleCase(
        "AlertRule",
        "threshold must not be negative",
        "spec.monitoring.alerts[0].threshold",
        bad=[{"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "queueTimeMs", "threshold": -1}]}}],
        good=[{"monitoring": {"serviceMonitor": True, "alerts": [{"metric": "queueTimeMs", "threshold": 0}]}}],
    ),
    RuleCase(
        "RuntimeSpec",
        "tensorParallelSize needs at least as many GPUs (resources.gpu)",
        "spec.runtime.tensorParallelSize",
        bad=[{"runtime": {"tensorParallelSize": 2}}, {"runtime": {"tensorParallelSize": 4, "resources": {"gpu": 2}}}],
        good=[{"runtime": {"tensorParallelSize": 2, "resources": {"gpu": 2}}}],
    ),
    RuleCase(
        "ScriptSpec",
        "exactly one of configMapRef or path must be set",
        "spec.preprocess.script.configMapRef",
        bad=[
            {"preprocess": {"script": {}}},
            {"preprocess": {"script": {"path": "pre.py", "configMapRef": {"name": "code"}}}},
        ],
        good=[
            {"preprocess": {"script": {"path": "pre.py"}}},
            {"preprocess": {"script": {"configMapRef": {"name": "code"}}}},
        ],
    ),
    RuleCase(
        "PreprocessSpec",
        "exactly one of builtin or script must be set",
        "spec.preprocess.builtin",
        bad=[{"preprocess": {}}, {"preprocess": {"builtin": {}, "script": {"path": "pre.py"}}}],
        good=[{"preprocess": {"builtin": {"format": "xml"}}}],
    ),
    RuleCase(
        "PostprocessSpec",
        "exactly one of builtin or script must be set",
        "spec.postprocess.builtin",
        bad=[
            {"postprocess": {"filter": {"include": ["y"]}}},
            {"postprocess": {"builtin": {}, "script": {"path": "post.py"}}},
        ],
        good=[{"postprocess": {"script": {"path": "post.py"}}}],
    ),
    RuleCase(
        "AutoscalingSpec",
        "minReplicas must be <= maxReplicas",
        "spec.autoscaling.minReplicas",
        bad=[{"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, {"autoscaling": {"minReplicas": 11}}],
        good=[{"autoscaling": {"minReplicas": 3, "maxReplicas": 3}}, {"autoscaling": {"maxReplicas": 2}}],
    ),
    RuleCase(
        "AutoscalingSpec",
        "metric rps requires targetRequestsPerSecond, and only rps uses it",
        "spec.autoscaling.targetRequestsPerSecond",
        bad=[{"autoscaling": {"metric": "rps"}}, {"autoscaling": {"targetRequestsPerSecond": 20}},
             {"autoscaling": {"metric": "queueTime", "targetRequestsPerSecond": 20}}],
        good=[{"autoscaling": {"metric": "rps", "targetRequestsPerSecond": 20}}, {"autoscaling": {"metric": "cpu"}}],
    ),
    RuleCase(
        "AutoscalingSpec",
        "targetQueueTimeMs is used only by metric queueTime",
        "spec.autoscaling.targetQueueTimeMs",
        bad=[
            {"autoscaling": {"targetQueueTimeMs": 20}},
            {"autoscaling": {"metric": "pending", "targetQueueTimeMs": 20}},
        ],
        good=[
            {"autoscaling": {"metric": "queueTime", "targetQueueTimeMs": 20}},
            {"autoscaling": {"metric": "queueTime"}},
        ],
    ),
    RuleCase(
        "AutoscalingSpec",
        "targetPendingRequests is used only by metric pending",
        "spec.autoscaling.targetPendingRequests",
        bad=[
            {"autoscaling": {"targetPendingRequests": 2}},
            {"autoscaling": {"metric": "gpu", "targetPendingRequests": 2}},
        ],
        good=[
            {"autoscaling": {"metric": "pending", "targetPendingRequests": 2}},
            {"autoscaling": {"metric": "pending"}},
        ],
    ),
    RuleCase(
        "AutoscalingSpec",
        "autoscaler keda with a metric other than cpu requires prometheusUrl, and only it uses it",
        "spec.autoscaling.prometheusUrl",
        bad=[
            {"autoscaling": {"autoscaler": "keda", "metric": "pending"}},
            {"autoscaling": {"autoscaler": "keda", "prometheusUrl": "http://prometheus:9090"}},
            {"autoscaling": {"metric": "pending", "prometheusUrl": "http://prometheus:9090"}},
        ],
        good=[
            {"autoscaling": {"autoscaler": "keda", "metric": "pending", "prometheusUrl": "http://prometheus:9090"}},
            {"autoscaling": {"autoscaler": "keda"}},
            {"autoscaling": {"metric": "pending"}},
        ],
    ),
    RuleCase(
        "RolloutSpec",
        "canaryPercent must be within 1 and 50",
        "spec.rollout.canaryPercent",
        bad=[{"rollout": {"canaryPercent": 0}}, {"rollout": {"canaryPercent": 51}}, {"rollout": {"canaryPercent": -5}}],
        good=[{"rollout": {"canaryPercent": 1}}, {"rollout": {"canaryPercent": 50}}],
    ),
    RuleCase(
        "RolloutSpec",
        "steps must be traffic shares within 1 and 50",
        "spec.rollout.steps",
        bad=[{"rollout": {"steps": []}}, {"rollout": {"steps": [5, 60]}}, {"rollout": {"steps": [0, 10]}}],
        good=[{"rollout": {"steps": [5, 25, 50]}}, {"rollout": {"steps": [1]}}],
    ),
    RuleCase(
        "TrafficSpec",
        "router gatewayAPI needs at least one parentRef",
        "spec.traffic.parentRefs",
        bad=[{"traffic": {"router": "gatewayAPI"}}, {"traffic": {"router": "gatewayAPI", "parentRefs": []}}],
        good=[
            {"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "public"}]}},
            {"traffic": {"router": "gateway"}},
        ],
    ),
    RuleCase(
        "WebhookSpec",
        "exactly one of url or secretRef must be set",
        "spec.monitoring.webhook.url",
        bad=[
            {"monitoring": {"webhook": {}}},
            {"monitoring": {"webhook": {"url": "https://hooks.example", "secretRef": {"name": "s", "key": "k"}}}},
        ],
        good=[
            {"monitoring": {"webhook": {"url": "https://hooks.example/x"}}},
            {"monitoring": {"webhook": {"secretRef": {"name": "hook", "key": "url"}}}},
        ],
    ),
    RuleCase(
        "InferenceServiceSpec",
        "instance groups of kind GPU need runtime.resources.gpu > 0",
        "spec.model.instanceGroups",
        bad=[{"model": {"instanceGroups": [{"kind": "CPU"}, {"kind": "GPU"}]}}],
        good=[
            merge(GPU1, {"model": {"instanceGroups": [{"kind": "GPU", "count": 2}]}}),
            {"model": {"instanceGroups": [{"kind": "AUTO"}]}},
        ],
    ),
]

# Values the schema itself refuses (no CEL involved): (spec patch or None, metadata patch, field named).
SCHEMA_BAD: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"autoscaling": {"minReplicas": -1}}, {}, "spec.autoscaling.minReplicas"),
    ({"autoscaling": {"targetUtilization": 0}}, {}, "spec.autoscaling.targetUtilization"),
    ({"autoscaling": {"targetUtilization": 1.5}}, {}, "spec.autoscaling.targetUtilization"),
    ({"autoscaling": {"metric": "memory"}}, {}, "spec.autoscaling.metric"),
    ({"model": {"format": "caffe"}}, {}, "spec.model.format"),
    ({"model": {"name": "Bad_Name"}}, {}, "spec.model.name"),
    ({"model": {"storageUri": ""}}, {}, "spec.model.storageUri"),
    ({"model": {"sha256": "abc"}}, {}, "spec.model.sha256"),
    ({"model": {"maxBatchSize": 5000}}, {}, "spec.model.maxBatchSize"),
    ({"model": {"instanceGroups": [{"kind": "TPU"}]}}, {}, "spec.model.instanceGroups[0].kind"),
    ({"model": {"outputs": [{"name": "y", "dataType": "FP32", "dims": []}]}}, {}, "spec.model.outputs[0].dims"),
    ({"runtime": {"resources": {"cpu": "two"}}}, {}, "spec.runtime.resources.cpu"),
    ({"runtime": {"resources": {"cpu": 0.5}}}, {}, "spec.runtime.resources.cpu"),
    ({"runtime": {"resources": {"memory": True}}}, {}, "spec.runtime.resources.memory"),
    ({"runtime": {"resources": {"gpu": -1}}}, {}, "spec.runtime.resources.gpu"),
    ({"rollout": {"strategy": "Canary"}}, {}, "spec.rollout.strategy"),
    ({"rollout": {"analysis": {"maxErrorRatio": 2}}}, {}, "spec.rollout.analysis.maxErrorRatio"),
    ({"rollout": {"analysis": {"prometheusUrl": "ftp://prom"}}}, {}, "spec.rollout.analysis.prometheusUrl"),
    ({"gateway": {"requestTimeoutSeconds": 0}}, {}, "spec.gateway.requestTimeoutSeconds"),
    ({"security": {"tls": {}}}, {}, "spec.security.tls.secretName"),
    ({"security": {"tls": {"secretName": "t", "minVersion": "1.1"}}}, {}, "spec.security.tls.minVersion"),
    ({"security": {"tls": {"secretName": "t", "certManager": {}}}}, {}, "spec.security.tls.certManager.issuerRef"),
    ({"security": {"tls": {"secretName": "t", "certManager": {"issuerRef": {"name": "ca"}, "duration": "90d"}}}},
     {}, "spec.security.tls.certManager.duration"),
    ({"security": {"tls": {"secretName": "t", "certManager": {"issuerRef": {"name": "ca"},
                                                               "dnsNames": ["Bad_Host.example"]}}}},
     {}, "spec.security.tls.certManager.dnsNames[0]"),
    ({"runtime": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}}, {},
     "spec.runtime.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    ({"runtime": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}}}}, {},
     "spec.runtime.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"),
    ({}, {"name": "1st-model"}, "metadata.name"),
    ({}, {"name": "a" * 64}, "metadata.name"),
]

# Extra variations every renderer must handle (each merged into manifest()).
VARIANTS: dict[str, dict[str, Any]] = {
    "tls": {"security": {"tls": {"secretName": "demo-tls", "minVersion": "1.3"}}},
    "affinity": {"runtime": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                   "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"]}]},
            {"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone",
                                                               "operator": "In", "values": ["zone-a"]}]}}]}}}},
    "cert-manager": {"security": {"tls": {"secretName": "demo-tls", "certManager": {
        "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}, "dnsNames": ["demo.example.com"],
        "duration": "2160h", "renewBefore": "360h"}}}},
    "api-keys": {
        "security": {
            "apiKeysSecretRef": {"name": "demo-keys", "key": "keys.txt"},
            "rateLimit": {"requestsPerSecond": 50, "burst": 20},
            "ipAllowlist": ["10.0.0.0/8", "2001:db8::/32"],
            "trustedProxies": ["192.168.1.1"],
            "redactPII": True,
            "audit": {"enabled": True},
        }
    },
    "redis-cache": {
        "gateway": {
            "cache": {"enabled": True, "ttlSeconds": 60, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}
        }
    },
    "pvc": {"model": {"storageUri": "pvc://model-claim/resnet/1", "storageSecretName": "unused-creds"}},
    "scripts": {
        "preprocess": {"script": {"configMapRef": {"name": "pre-code", "key": "pre.py"}, "options": {"lang": "en"}}},
        "postprocess": {"script": {"configMapRef": {"name": "post-code"}}, "filter": {"include": ["y"]}},
    },
    "everything": {
        "model": {
            "format": "python",
            "version": 2,
            "maxBatchSize": 16,
            "sha256": "0" * 64,
            "dynamicBatching": {"preferredBatchSizes": [4, 16], "maxQueueDelayMicroseconds": 0},
            "instanceGroups": [{"kind": "GPU", "count": 2, "gpus": [0, 1]}, {"kind": "CPU"}],
            "responseCache": {"enabled": True, "sizeBytes": 1048576},
            "inputs": [{"name": "text", "dataType": "BYTES", "dims": [1]}],
            "outputs": [{"name": "embedding", "dataType": "FP32", "dims": [-1, 384]}],
            "parameters": {"EXECUTION_ENV_PATH": "/envs/py.tar.gz", "note": 'quote " and ünïcode'},
        },
        "runtime": {
            "resources": {"gpu": 2, "cpu": 8, "memory": "32Gi"},
            "tensorParallelSize": 2,
            "args": ["--log-verbose=1"],
            "env": [{"name": "CUDA_MODULE_LOADING", "value": "LAZY"}],
            "nodeSelector": {"nvidia.com/gpu.product": "H100", "kubernetes.io/arch": "amd64"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "spot", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
            ],
        },
        "preprocess": {"builtin": {"format": "xml"}, "resources": {"cpu": "1", "memory": "1Gi"}},
        "postprocess": {"builtin": {"topK": {"output": "embedding", "k": 3}}},
        "replicas": 0,
        "autoscaling": {"enabled": False},
        "security": {"tls": {"secretName": "t"}, "apiKeysSecretRef": {"name": "k", "key": "keys"}},
        "gateway": {"cache": {"enabled": True, "redis": {"urlSecretRef": {"name": "r", "key": "url"}}}},
        "monitoring": {
            "serviceMonitor": True,
            "alerts": [{"metric": "errorRatio", "threshold": 0.05}],
            "webhook": {"secretRef": {"name": "hook", "key": "url"}},
        },
    },
}
