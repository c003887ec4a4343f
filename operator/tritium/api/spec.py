"""InferenceService spec (serving.tritium.dev/v1alpha1): what the user asks for.

Every field carries a description because `kubectl explain inferenceservice.spec...` is how users
learn the API. Defaults follow the product's promises: 2..10 replicas at 0.7 target utilisation
with a 300 s scale-down cooldown, and a 5 % canary for every new revision.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from tritium.api.base import DNS_LABEL_PATTERN, ApiModel, CelRule, Quantity, described, nested

ModelFormat = Literal["python", "onnx", "pytorch", "tensorflow", "tensorrt", "openvino", "ensemble"]
TensorType = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]


class TensorSpec(ApiModel):
    """One model input or output, for models whose backend cannot auto-complete its configuration."""

    name: str = described("Tensor name as the model knows it.", min_length=1, max_length=253)
    data_type: TensorType = described("Triton data type of the tensor (e.g. FP32, INT64, BYTES).")
    dims: list[int] = described(
        "Shape without the batch dimension; -1 marks a variable-size dimension.",
        min_length=1, max_length=16,
    )


class DynamicBatching(ApiModel):
    """Triton's dynamic batcher: combine requests server-side into larger batches."""

    preferred_batch_sizes: list[int] | None = described(
        "Batch sizes the batcher should try to form first; each must be <= model.maxBatchSize.",
        default=None, max_length=16,
    )
    max_queue_delay_microseconds: int = described(
        "How long a request may wait in the queue for a batch to fill, in microseconds.",
        default=100, ge=0, le=10_000_000,
    )

    cel_rules = (
        CelRule(
            "!has(self.preferredBatchSizes) || self.preferredBatchSizes.all(s, s >= 1)",
            "preferred batch sizes must be >= 1",
            ".preferredBatchSizes",
        ),
    )


class InstanceGroup(ApiModel):
    """A group of model instances (copies) Triton runs in parallel."""

    count: int = described("Number of instances in this group.", default=1, ge=1, le=64)
    kind: Literal["AUTO", "CPU", "GPU"] = described(
        "Where the instances run: GPU, CPU, or AUTO (GPU when one is visible).", default="AUTO"
    )
    gpus: list[int] | None = described(
        "GPU indices the instances are placed on (kind GPU only); all visible GPUs when unset.",
        default=None, max_length=16,
    )

    cel_rules = (
        CelRule("!has(self.gpus) || self.kind == 'GPU'", "gpus may only be set when kind is GPU", ".gpus"),
    )


class ResponseCache(ApiModel):
    """Triton's own response cache (in the Triton process, per pod)."""

    enabled: bool = described(
        "Cache responses of this model inside Triton; false keeps sizeBytes unused.", default=False)
    size_bytes: int = described(
        "Size of Triton's local cache in bytes (server-wide).", default=64 * 1024 * 1024, ge=1024
    )


class ModelSpec(ApiModel):
    """The model Triton serves and how Triton should schedule it."""

    name: str = described(
        "Model name inside Triton and in the inference URLs (/v2/models/NAME).",
        min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN,
    )
    storage_uri: str = described(
        "Where the model repository directory lives: s3://, gs://, http(s)://, file:// or "
        "pvc://CLAIM/path. The fetch init container copies it into the pod before Triton starts.",
        min_length=1, max_length=2048,
    )
    format: ModelFormat = described("Model format; selects the Triton backend.")
    version: int | None = described(
        "Serve only this model version (a numeric directory in the repository); latest when unset.",
        default=None, ge=1,
    )
    storage_secret_name: str | None = described(
        "Secret whose keys become environment variables of the model fetcher "
        "(e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS_JSON); "
        "workload identity of the ServiceAccount is used when unset.",
        default=None, min_length=1, max_length=253,
    )
    sha256: str | None = described(
        "Expected sha256 of a single-file model archive; the fetch fails when it does not match.",
        default=None, pattern=r"^[0-9a-f]{64}$",
    )
    max_batch_size: int = described(
        "Largest batch Triton forms (max_batch_size); 0 disables batching.", default=0, ge=0, le=4096
    )
    dynamic_batching: DynamicBatching | None = described(
        "Enable Triton's dynamic batcher (requires maxBatchSize > 0).", default=None
    )
    instance_groups: list[InstanceGroup] | None = described(
        "Instance groups; Triton's default (one instance per GPU, or one on CPU) when unset.",
        default=None, max_length=16,
    )
    response_cache: ResponseCache = nested(ResponseCache, "Triton's response cache for this model.")
    inputs: list[TensorSpec] | None = described(
        "Model inputs, for backends that cannot read them from the model file.", default=None, max_length=64
    )
    outputs: list[TensorSpec] | None = described(
        "Model outputs, for backends that cannot read them from the model file.", default=None, max_length=64
    )
    parameters: dict[str, str] | None = described(
        "Backend-specific parameters written into the model configuration.", default=None
    )

    cel_rules = (
        CelRule(
            "!has(self.dynamicBatching) || self.maxBatchSize > 0",
            "dynamicBatching requires maxBatchSize > 0",
            ".dynamicBatching",
        ),
        CelRule(
            "!has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes) || "
            "self.dynamicBatching.preferredBatchSizes.all(s, s <= self.maxBatchSize)",
            "every preferred batch size must be <= maxBatchSize",
            ".dynamicBatching.preferredBatchSizes",
        ),
    )


class ResourceRequirements(ApiModel):
    """Compute resources of one container (requests; memory and GPUs are also limits)."""

    cpu: Quantity = described("CPU request, e.g. 2 or 500m.", default="1")
    memory: Quantity = described("Memory request and limit, e.g. 4Gi.", default="2Gi")
    gpu: int = described("Number of nvidia.com/gpu devices.", default=0, ge=0, le=16)


class StageResources(ApiModel):
    """Compute resources of a stage sidecar or the gateway."""

    cpu: Quantity = described("CPU request, e.g. 500m.", default="250m")
    memory: Quantity = described("Memory request and limit, e.g. 512Mi.", default="256Mi")


class EnvVar(ApiModel):
    """A plain environment variable."""

    name: str = described("Variable name.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = described("Variable value.", default="")


class Toleration(ApiModel):
    """A Kubernetes toleration, so that pods can land on tainted (e.g. GPU) nodes."""

    key: str | None = described("Taint key the toleration applies to; all keys when empty.", default=None)
    operator: Literal["Exists", "Equal"] = described("Exists or Equal.", default="Equal")
    value: str | None = described("Taint value to match when operator is Equal.", default=None)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = described(
        "Taint effect to match; all effects when empty.", default=None
    )
    toleration_seconds: int | None = described(
        "For NoExecute: how long the pod stays bound after the taint appears.", default=None, ge=0
    )

    # The pod validation rules of kube-apiserver: a toleration breaking them makes every pod fail.
    cel_rules = (
        CelRule(
            "(has(self.key) && self.key != '') || self.operator == 'Exists'",
            "operator must be Exists when key is empty",
            ".operator",
        ),
        CelRule(
            "self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty when operator is Exists",
            ".value",
        ),
        CelRule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds requires effect NoExecute",
            ".tolerationSeconds",
        ),
    )


# A label value (Kubernetes allows 63 characters); bounded so that the CEL rules below stay in
# kube-apiserver's cost budget.
LabelValue = Annotated[str, Field(max_length=63)]


class NodeSelectorRequirement(ApiModel):
    """One node label test, as in a Kubernetes NodeSelectorRequirement."""

    key: str = described("Node label key.", min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = described(
        "In/NotIn: the label's value is (not) one of values; Exists/DoesNotExist: the label is (not) there; "
        "Gt/Lt: the value, an integer, is greater/less than the single value.")
    values: list[LabelValue] | None = described(
        "Values for In, NotIn (at least one), Gt and Lt (exactly one integer); none for Exists and DoesNotExist.",
        default=None, max_length=32)

    # The pod validation of kube-apiserver: a requirement breaking these makes every pod fail.
    cel_rules = (
        CelRule("!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
                "In and NotIn need at least one value", ".values"),
        CelRule("!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
                "Exists and DoesNotExist take no values", ".values"),
        CelRule("!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1 && "
                "self.values[0].matches('^-?[0-9]+$'))",
                "Gt and Lt need exactly one integer value", ".values"),
    )


class NodeSelectorTerm(ApiModel):
    """Node label tests that must all hold (ANDed)."""

    match_expressions: list[NodeSelectorRequirement] = described(
        "The tests; a node matches when every one holds.", min_length=1, max_length=8)


class NodeSelector(ApiModel):
    """Terms of which at least one must hold (ORed)."""

    node_selector_terms: list[NodeSelectorTerm] = described(
        "A node qualifies when it matches any of these terms.", min_length=1, max_length=4)


class PreferredSchedulingTerm(ApiModel):
    """A term the scheduler favours a node for matching, by weight."""

    weight: int = described("Weight (1-100) added to a node's score when it matches.", ge=1, le=100)
    preference: NodeSelectorTerm = described("The term a favoured node matches.")


class NodeAffinity(ApiModel):
    """Kubernetes node affinity, in the same shape as a pod's spec.affinity.nodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = described(
        "Nodes the pods may only land on (e.g. a GPU product label In [NVIDIA-H100-80GB-HBM3]).", default=None)
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = described(
        "Nodes the pods prefer, if the cluster has them free.", default=None, max_length=4)


class Affinity(ApiModel):
    """Scheduling affinity of the pods. Only node affinity: the pods of a revision are already spread
    over zones and nodes by topologySpreadConstraints (soft), which anti-affinity would duplicate."""

    node_affinity: NodeAffinity | None = described("Node affinity of the pods.", default=None)


class RuntimeSpec(ApiModel):
    """The Triton server container."""

    image: str | None = described(
        "Triton server image; the operator's default (NGC tritonserver 24.10, or the chart's tritonImage) "
        "when unset.", default=None, min_length=1,
    )
    resources: ResourceRequirements = nested(ResourceRequirements, "Resources of the Triton container.")
    tensor_parallel_size: int = described(
        "GPUs one model instance spans (tensor parallelism); needs resources.gpu >= this.",
        default=1, ge=1, le=16,
    )
    args: list[str] | None = described("Extra tritonserver command-line arguments.", default=None)
    env: list[EnvVar] | None = described("Extra environment variables of the Triton container.", default=None)
    node_selector: dict[str, str] | None = described("Node labels the pods must land on.", default=None)
    # Bounded: kube-apiserver refuses a CRD whose per-item rules could cost too much on a huge list.
    tolerations: list[Toleration] | None = described("Tolerations of the pods.", default=None, max_length=64)
    affinity: Affinity | None = described(
        "Node affinity of the pods, beside nodeSelector: e.g. required GPU products, or preferred ones.",
        default=None)

    cel_rules = (
        CelRule(
            "self.tensorParallelSize <= 1 || self.resources.gpu >= self.tensorParallelSize",
            "tensorParallelSize needs at least as many GPUs (resources.gpu)",
            ".tensorParallelSize",
        ),
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the InferenceService's namespace."""

    name: str = described("ConfigMap name.", min_length=1, max_length=253)
    key: str = described("Key inside the ConfigMap.", default="stage.py", min_length=1, max_length=253)


class SecretKeyRef(ApiModel):
    """A key of a Secret in the InferenceService's namespace."""

    name: str = described("Secret name.", min_length=1, max_length=253)
    key: str = described("Key inside the Secret.", min_length=1, max_length=253)


class ScriptSpec(ApiModel):
    """A user Python module that implements the stage (see docs/stages.md for its interface)."""

    config_map_ref: ConfigMapKeyRef | None = described(
        "Take the module source from this ConfigMap key (mounted into the sidecar).", default=None
    )
    path: str | None = described(
        "Path of the module inside the stage image (or relative to the manifest in local mode).",
        default=None, min_length=1, max_length=1024,
    )
    options: dict[str, str] | None = described(
        "Options handed to the script's setup function once at start.", default=None
    )

    cel_rules = (
        CelRule(
            "has(self.configMapRef) != has(self.path)",
            "exactly one of configMapRef or path must be set",
            ".configMapRef",
        ),
    )


class PreBuiltin(ApiModel):
    """Built-in preprocessing: decode the request payload into Triton tensors."""

    format: Literal["json", "xml", "binary"] = described(
        "Payload format: json (KServe v2 or invoke JSON), xml (parsed safely with defusedxml) or "
        "binary (raw bytes, base64 or the KServe v2 binary tensor extension).",
        default="json",
    )


class PostTopK(ApiModel):
    """Keep the k largest values (and their indices) of one output."""

    output: str = described("Output tensor to reduce.", min_length=1)
    k: int = described("How many values to keep.", ge=1, le=10_000)


class PostBuiltin(ApiModel):
    """Built-in postprocessing: reduce and format Triton's outputs."""

    format: Literal["json", "xml", "binary"] = described(
        "Format of the invoke API's answers (json, xml or binary); v2 and stream answers keep their own "
        "encoding (KServe v2 tensors, JSON events).", default="json")
    top_k: PostTopK | None = described("Return only the top-k values of one output.", default=None)


class OutputFilter(ApiModel):
    """Which outputs the client sees, and under what names."""

    include: list[str] | None = described("Outputs to return; all when unset.", default=None)
    rename: dict[str, str] | None = described("Map from model output name to the name returned.", default=None)


class PreprocessSpec(ApiModel):
    """The preprocessing sidecar: runs before Triton on each request it has work for.

    A v2 request already carries model tensors: with no script and no inputSchema the gateway
    sends it straight to Triton.
    """

    builtin: PreBuiltin | None = described("Use a built-in preprocessor.", default=None)
    script: ScriptSpec | None = described("Use a user script.", default=None)
    input_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema the request inputs must satisfy; violations get 400 naming the field.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    image: str | None = described(
        "Image of the stage sidecar; the operator's Tritium image when unset.", default=None, min_length=1
    )
    resources: StageResources = nested(StageResources, "Resources of the stage sidecar.")

    cel_rules = (
        CelRule("has(self.builtin) != has(self.script)", "exactly one of builtin or script must be set", ".builtin"),
    )


class PostprocessSpec(ApiModel):
    """The postprocessing sidecar: runs after Triton on each request it has work for.

    With no script, topK or filter it would return the outputs unchanged (its xml and binary
    formats apply to invoke answers), and the gateway answers without the hop.
    """

    builtin: PostBuiltin | None = described("Use a built-in postprocessor.", default=None)
    script: ScriptSpec | None = described("Use a user script.", default=None)
    filter: OutputFilter | None = described("Select and rename outputs after processing.", default=None)
    image: str | None = described(
        "Image of the stage sidecar; the operator's Tritium image when unset.", default=None, min_length=1
    )
    resources: StageResources = nested(StageResources, "Resources of the stage sidecar.")

    cel_rules = (
        CelRule("has(self.builtin) != has(self.script)", "exactly one of builtin or script must be set", ".builtin"),
    )


class AutoscalingSpec(ApiModel):
    """Horizontal autoscaling of the serving pods.

    Each metric has its own target, in its own unit, because the HPA compares a pod's value with
    it directly: a fraction for cpu and gpu, requests per second, milliseconds, requests waiting.
    A target for another metric than the chosen one is refused rather than silently ignored.
    """

    enabled: bool = described(
        "Scale automatically between minReplicas and maxReplicas: one HorizontalPodAutoscaler (or, with autoscaler "
        "keda, one KEDA ScaledObject) per revision. false: the pods are spec.replicas (minReplicas when unset), "
        "and the other fields here are kept but unused.",
        default=True,
    )
    min_replicas: int = described("Fewest serving pods.", default=2, ge=0, le=1000)
    max_replicas: int = described("Most serving pods.", default=10, ge=1, le=1000)
    target_utilization: float = described(
        "Target utilisation per pod, as a fraction (0.7 = 70 %), for metric cpu (of the pod's CPU request) "
        "and gpu (Triton's nv_gpu_utilization); the other metrics have targets of their own, and a spec that "
        "changes this one with them is refused.",
        default=0.7, gt=0, le=1,
    )
    metric: Literal["cpu", "rps", "gpu", "queueTime", "pending"] = described(
        "What drives scaling: cpu (metrics-server); rps (inference requests per second per pod, from the "
        "gateway), gpu (Triton's GPU utilisation), queueTime (Triton's queue time per request) or pending "
        "(Triton's requests waiting), which the prometheus-adapter rules of the chart serve to the HPA "
        "(prometheusAdapter.enabled), or KEDA queries from prometheusUrl (see docs/metrics.md).",
        default="cpu",
    )
    target_requests_per_second: float | None = described(
        "Inference requests per second per pod to scale at (metric rps, which requires it).",
        default=None, gt=0, le=1_000_000,
    )
    target_queue_time_ms: float | None = described(
        "Milliseconds a request may wait in Triton's queue, on average per pod, before pods are added "
        "(metric queueTime only); 50 when unset.",
        default=None, gt=0, le=600_000,
    )
    target_pending_requests: float | None = described(
        "Requests waiting in Triton per pod (nv_inference_pending_request_count, averaged over a minute) "
        "before pods are added (metric pending only); 4 when unset.",
        default=None, gt=0, le=100_000,
    )
    scale_down_cooldown_seconds: int = described(
        "How long load must stay low before pods are removed.", default=300, ge=0, le=3600
    )
    scale_up_seconds: int = described(
        "Within how many seconds a load rise must be answered with new pods.", default=30, ge=0, le=3600
    )
    autoscaler: Literal["hpa", "keda"] = described(
        "Which autoscaler drives scaling: hpa (a HorizontalPodAutoscaler per revision) or keda (a KEDA "
        "ScaledObject per revision, from which KEDA, installed in the cluster, makes the HPA).",
        default="hpa",
    )
    prometheus_url: str | None = described(
        "Prometheus that KEDA queries for the metric (autoscaler keda with a metric other than cpu, which "
        "requires it), e.g. http://prometheus-operated.monitoring:9090.",
        default=None, pattern=r"^https?://",
    )

    cel_rules = (
        CelRule("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas", ".minReplicas"),
        CelRule(
            "(self.metric == 'rps') == has(self.targetRequestsPerSecond)",
            "metric rps requires targetRequestsPerSecond, and only rps uses it",
            ".targetRequestsPerSecond",
        ),
        CelRule(
            "!has(self.targetQueueTimeMs) || self.metric == 'queueTime'",
            "targetQueueTimeMs is used only by metric queueTime",
            ".targetQueueTimeMs",
        ),
        CelRule(
            "!has(self.targetPendingRequests) || self.metric == 'pending'",
            "targetPendingRequests is used only by metric pending",
            ".targetPendingRequests",
        ),
        CelRule(
            "(self.autoscaler == 'keda' && self.metric != 'cpu') == has(self.prometheusUrl)",
            "autoscaler keda with a metric other than cpu requires prometheusUrl, and only it uses it",
            ".prometheusUrl",
        ),
    )


class AnalysisSpec(ApiModel):
    """How a canary revision is judged: its error ratio and p99 latency every interval."""

    provider: Literal["builtin", "prometheus"] = described(
        "builtin: the operator reads the canary pods' own gateway metrics (no Prometheus needed); "
        "prometheus: it queries Prometheus (prometheusUrl, else the operator's --prometheus-url).",
        default="builtin",
    )
    interval_seconds: int = described("Time between two measurements.", default=30, ge=5, le=3600)
    duration_seconds: int = described(
        "How long the canary is analysed before it is promoted (shared evenly by the steps).",
        default=86400, ge=0, le=604800,
    )
    max_error_ratio: float = described(
        "Highest acceptable ratio of 5xx answers of the canary (0.01 = 1 %).", default=0.01, ge=0, le=1
    )
    max_p99_latency_ms: float = described(
        "Highest acceptable p99 latency of the canary, in milliseconds.", default=1000, gt=0
    )
    min_requests: int = described(
        "Fewest requests in one interval for a measurement to count; fewer is inconclusive (neither a pass "
        "nor a failure).", default=20, ge=1, le=1_000_000,
    )
    failure_limit: int = described(
        "Failed measurements tolerated; one more rolls the canary back.", default=1, ge=0, le=100
    )
    prometheus_url: str | None = described(
        "Prometheus to query with provider prometheus; the operator's --prometheus-url when unset.", default=None,
        pattern=r"^https?://",
    )


class RolloutSpec(ApiModel):
    """How a new revision (changed model, runtime, stages, images, gateway or security) replaces the stable one."""

    strategy: Literal["BlueGreen"] = described(
        "BlueGreen: the new revision runs beside the stable one and, once Ready, gets canaryPercent of "
        "traffic until analysis promotes it or rolls it back.",
        default="BlueGreen",
    )
    canary_percent: int = described(
        "Share of traffic sent to a Ready new revision during analysis (exact, whatever the replica counts).",
        default=5,
    )
    steps: list[int] | None = described(
        "Progressive canary: traffic shares in order (e.g. [5, 25, 50]), each held for an equal part of "
        "analysis.durationSeconds; replaces canaryPercent.", default=None, max_length=10,
    )
    analysis: AnalysisSpec = nested(AnalysisSpec, "Automated canary analysis.")
    auto_promote: bool = described(
        "Promote when analysis passes; false waits for `tritium promote` (Paused, AwaitingPromotion).", default=True
    )
    progress_deadline_seconds: int = described(
        "Roll back when the new revision is not Ready within this time (also when promoted, and when a canary "
        "stays unready this long).", default=600, ge=30, le=86400
    )
    scale_down_delay_seconds: int = described(
        "Keep the old revision running this long after promotion, for a fast rollback.",
        default=30, ge=0, le=86400,
    )
    surge: bool = described(
        "true: the canary's pods run beside all of the stable revision's (the cluster needs room for them). "
        "false, for clusters without spare GPUs: the canary's pods are taken from the stable revision, "
        "promotion moves the rest one pod at a time, and the old revision goes at once (no "
        "scaleDownDelaySeconds); capacity is one or more pods short during the rollout. Needs "
        "autoscaling.enabled false and replicas >= 2.",
        default=True,
    )

    cel_rules = (
        CelRule(
            "self.canaryPercent >= 1 && self.canaryPercent <= 50",
            "canaryPercent must be within 1 and 50",
            ".canaryPercent",
        ),
        CelRule(
            "!has(self.steps) || (size(self.steps) > 0 && self.steps.all(w, w >= 1 && w <= 50))",
            "steps must be traffic shares within 1 and 50",
            ".steps",
        ),
    )


class ParentRef(ApiModel):
    """A Gateway API Gateway the HTTPRoute attaches to."""

    name: str = described("Gateway name.", min_length=1, max_length=253)
    namespace: str | None = described("Gateway namespace; the InferenceService's when unset.", default=None)
    section_name: str | None = described("Listener name on the Gateway.", default=None)


class TrafficSpec(ApiModel):
    """How traffic reaches the revisions."""

    router: Literal["gateway", "gatewayAPI"] = described(
        "gateway: the stable revision's gateways send exactly the canary's share of requests to the canary "
        "revision's own Service (no mesh, no Gateway API needed); gatewayAPI: a gateway.networking.k8s.io/v1 "
        "HTTPRoute with weighted backendRefs to each revision's Service, attached to parentRefs.",
        default="gateway",
    )
    parent_refs: list[ParentRef] | None = described("Gateways the HTTPRoute attaches to.", default=None)
    hostnames: list[str] | None = described("Hostnames the HTTPRoute answers.", default=None)

    cel_rules = (
        CelRule(
            "self.router != 'gatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",
            "router gatewayAPI needs at least one parentRef",
            ".parentRefs",
        ),
    )


class RedisSpec(ApiModel):
    """A Redis shared by all pods of the service."""

    url_secret_ref: SecretKeyRef = described("Secret key holding the redis:// URL.")


class RateLimitRedisSpec(RedisSpec):
    """The Redis a rate limit counts in, and what happens while it cannot be reached."""

    failure_policy: Literal["open", "closed"] = described(
        "What a request gets while Redis cannot be reached (1 s connect and read timeouts): open: it passes "
        "unlimited, so a broken limiter never takes the service down; closed: 503 with Retry-After: 1, so no "
        "request passes uncounted. Either way the outage is logged once and each such request counted in "
        "tritium_gateway_ratelimit_storage_failures_total.",
        default="open")


class RateLimit(ApiModel):
    """Rate limit per API key or client address: a token bucket (docs/security.md).

    Each client's bucket holds burst tokens and gets requestsPerSecond back per second; a request
    takes one, and one that finds the bucket empty is answered 429 with Retry-After (when a token
    is back) and RateLimit-* headers. So at most burst + requestsPerSecond x w requests pass in
    any w seconds.
    """

    requests_per_second: float = described("Sustained requests per second: the rate the bucket refills at.", gt=0)
    burst: int = described(
        "Requests allowed at once: the size of the bucket, full for a client not seen lately.", default=10, ge=1
    )
    per: Literal["key", "clientAddress"] = described(
        "Who a limit applies to: key: each API key (the client address when apiKeysSecretRef is unset); "
        "clientAddress: each client address (see trustedProxies).",
        default="key",
    )
    redis: RateLimitRedisSpec | None = described(
        "Count in this Redis so that one limit holds across all replicas; each replica counts on its own when "
        "unset. While Redis cannot be reached requests pass unlimited or get a 503, as its failurePolicy says.",
        default=None,
    )


GO_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
# A DNS name a certificate may carry: lower-case labels, optionally one leading wildcard label.
DnsName = Annotated[str, Field(
    min_length=1, max_length=253,
    pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]


class IssuerRef(ApiModel):
    """The cert-manager issuer that signs the gateway's certificate."""

    name: str = described("Issuer or ClusterIssuer name.", min_length=1, max_length=253)
    kind: str = described(
        "Issuer (in the InferenceService's namespace), ClusterIssuer, or an external issuer's kind.",
        default="Issuer", min_length=1, max_length=63)
    group: str = described("API group of the issuer.", default="cert-manager.io", min_length=1, max_length=253)


class CertManagerSpec(ApiModel):
    """A cert-manager Certificate that writes tls.secretName (cert-manager.io/v1; cert-manager must be installed)."""

    issuer_ref: IssuerRef = described("Who signs the certificate.")
    dns_names: list[DnsName] | None = described(
        "Names added to the certificate besides the Service's own (NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc, "
        "NAME.NAMESPACE.svc.cluster.local), e.g. the hostname clients outside the cluster use.",
        default=None, max_length=32)
    duration: str | None = described(
        "Certificate lifetime as a Go duration (e.g. 2160h); cert-manager's default (90 days) when unset.",
        default=None, pattern=GO_DURATION_PATTERN)
    renew_before: str | None = described(
        "How long before expiry cert-manager renews (Go duration); cert-manager's default (a third of the "
        "lifetime) when unset. The gateway serves the renewed certificate without a restart.",
        default=None, pattern=GO_DURATION_PATTERN)


class TlsSpec(ApiModel):
    """TLS on the gateway port."""

    secret_name: str = described(
        "kubernetes.io/tls Secret with the certificate and key (written by cert-manager when certManager is set).",
        min_length=1)
    min_version: Literal["1.2", "1.3"] = described("Lowest TLS version accepted.", default="1.2")
    cert_manager: CertManagerSpec | None = described(
        "Have cert-manager issue and renew secretName: a Certificate is rendered beside the service, and the "
        "pods start once cert-manager has written the Secret. Changes apply in place (no new revision). "
        "Unset: the Secret is made by hand and must exist.",
        default=None)


class AuditSpec(ApiModel):
    """Audit log of requests (who, what, when, outcome; never payloads)."""

    enabled: bool = described(
        "Write an audit record per metadata and inference call: one JSON object per line on the gateway's "
        "stdout (time, request id, API key id, client address, model, version, revision, status, latency, "
        "SHA-256 of the request body, cache hit). Bodies, keys and tokens are never written; health probes "
        "are not audited.", default=False)
    file: str | None = described(
        "Also append each record to this file, a path the gateway container can write (in a pod only /tmp "
        "is, an emptyDir that goes with the pod: collect stdout for a lasting log). Only stdout when unset.",
        default=None)


class SecuritySpec(ApiModel):
    """Security layers enforced by the gateway on model metadata and inference (health probes stay open)."""

    api_keys_secret_ref: SecretKeyRef | None = described(
        "Secret key holding the accepted API keys, hashed: one ID:SHA256HEX line per key (`tritium keys create` "
        "makes one). Requests then need Authorization: Bearer KEY or X-API-Key: KEY, else 401; edits of the "
        "Secret apply without a restart. No authentication when unset.",
        default=None,
    )
    rate_limit: RateLimit | None = described("Rate limit; unlimited when unset.", default=None)
    ip_allowlist: list[str] | None = described(
        "Client CIDRs allowed (IPv4 or IPv6); others get 403. All when unset.", default=None
    )
    trusted_proxies: list[str] | None = described(
        "Proxy CIDRs whose X-Forwarded-For is believed for the client address: the right-most hop that is not "
        "a trusted proxy is the client. Unset: the connection's peer is the client. Read by ipAllowlist, a "
        "rateLimit per client address and the audit log: refused without one of them.",
        default=None,
    )
    tls: TlsSpec | None = described("Serve TLS on the gateway port.", default=None)
    redact_pii: bool = described(
        "Redact personal data in every gateway log line and audit record: e-mail addresses, phone numbers, "
        "card numbers (Luhn-checked), IBANs (mod-97-checked), IP addresses. Responses only with "
        "redactResponses.",
        default=False, alias="redactPII"
    )
    redact_responses: bool = described(
        "Redact the same personal data in answers of inference calls (v2, invoke, stream): the UTF-8 elements "
        "of BYTES outputs, the post stage's JSON values and text, and a body it renders as text, XML or JSON "
        "(its strings); numeric tensors, binary bodies and headers are never changed. Needs redactPII.",
        default=False)
    redact_patterns: list[str] | None = described(
        "Extra regular expressions (Python re syntax) whose matches are redacted too, with redactPII.",
        default=None)
    audit: AuditSpec = nested(AuditSpec, "Audit log.")
    sign_responses: bool = described(
        "Sign every non-streaming answer of metadata and inference calls: header X-Tritium-Signature: "
        "v1=HEX, HMAC-SHA256 under the key signingKeySecretRef names, over the request id (X-Request-Id), a "
        "newline, and the body as sent (tritium.client.verify_response checks it). Provenance of the answer, "
        "not a watermark of the model; streams (SSE) are not signed. Needs signingKeySecretRef.",
        default=False)
    signing_key_secret_ref: SecretKeyRef | None = described(
        "Secret key holding the HMAC key (at least 32 bytes; surrounding whitespace ignored), for "
        "signResponses. Edits of the Secret apply without a restart.", default=None)


class AlertRule(ApiModel):
    """An alert raised when a metric of this service crosses a threshold."""

    metric: Literal["p99LatencyMs", "errorRatio", "queueTimeMs", "availability"] = described(
        "What is watched."
    )
    threshold: float = described(
        "Alert when the metric goes past this value: above it, or below it for availability (the share of "
        "gateway pods up, 0-1); errorRatio is a ratio too (0.01 is 1 %)."
    )
    for_seconds: int = described("How long the condition must hold.", default=300, ge=0)
    severity: Literal["info", "warning", "critical"] = described("Alert severity.", default="warning")

    cel_rules = (
        CelRule(
            "!(self.metric in ['errorRatio', 'availability']) || (self.threshold >= 0.0 && self.threshold <= 1.0)",
            "errorRatio and availability are ratios: threshold must be within 0 and 1",
            ".threshold",
        ),
        CelRule("self.threshold >= 0.0", "threshold must not be negative", ".threshold"),
    )


class WebhookSpec(ApiModel):
    """Where notifications are sent: the operator's rollout events (docs/notifications.md gives the
    JSON schema), and, with serviceMonitor, this service's alerts through an AlertmanagerConfig."""

    url: str | None = described("Webhook URL.", default=None, pattern=r"^https?://")
    secret_ref: SecretKeyRef | None = described("Secret key holding the webhook URL.", default=None)
    signing_secret_ref: SecretKeyRef | None = described(
        "Secret key whose value signs each of the operator's rollout notifications: header X-Tritium-Signature, "
        "HMAC-SHA256 over \"{X-Tritium-Timestamp}.{body}\". Alerts routed by Alertmanager are not signed "
        "(Alertmanager sends them itself).", default=None,
    )

    cel_rules = (
        CelRule("has(self.url) != has(self.secretRef)", "exactly one of url or secretRef must be set", ".url"),
    )


class MonitoringSpec(ApiModel):
    """Metrics scraping, alerts and notifications."""

    service_monitor: bool = described(
        "Create a Prometheus Operator PodMonitor scraping the gateway's and Triton's metrics ports of every "
        "pod (a PodMonitor: those ports are not behind the Service), and, unless alerts is set, a "
        "PrometheusRule with the default alerts (p99 latency > 1000 ms, error ratio > 1 %, replicas at "
        "maxReplicas, a canary failing its error ratio).",
        default=False,
    )
    alerts: list[AlertRule] | None = described(
        "Alert rules for this service, rendered as a PrometheusRule; they replace the default alerts "
        "([] for none). Need serviceMonitor: true: the rules read the series its PodMonitor scrapes.",
        default=None, max_length=64,  # bounded: kube-apiserver prices each item's CEL rules by the list's size
    )
    webhook: WebhookSpec | None = described(
        "Notification webhook: rollout events from the operator, and (with serviceMonitor) this service's "
        "alerts routed by an AlertmanagerConfig.", default=None,
    )


class CacheSpec(ApiModel):
    """End-to-end response cache in the gateway (keyed by model, version, inputs and parameters)."""

    enabled: bool = described(
        "Cache whole responses in the gateway; false keeps the other fields here unused (and needs no Redis "
        "Secret).", default=False)
    ttl_seconds: int = described("How long a cached response is served.", default=300, ge=1)
    max_entries: int = described("Most responses kept, in memory or in Redis.", default=10_000, ge=1)
    redis: RedisSpec | None = described("Share the cache between pods in Redis; in memory when unset.", default=None)


class GatewaySpec(ApiModel):
    """The gateway container: the only port the Service exposes."""

    image: str | None = described(
        "Gateway image; the operator's Tritium image when unset.", default=None, min_length=1
    )
    resources: StageResources = nested(StageResources, "Resources of the gateway container.")
    max_request_bytes: int = described(
        "Largest request body accepted; larger ones get 413.", default=16 * 1024 * 1024, ge=1024
    )
    request_timeout_seconds: float = described(
        "Deadline of a request when the client sends none; exceeded -> 504.", default=30, gt=0, le=3600
    )
    cache: CacheSpec = nested(CacheSpec, "Response cache.")


class InferenceServiceSpec(ApiModel):
    """Desired state of an InferenceService: one model served by Triton behind the Tritium gateway."""

    model: ModelSpec = described("The model and how Triton schedules it.")
    runtime: RuntimeSpec = nested(RuntimeSpec, "The Triton server container.")
    preprocess: PreprocessSpec | None = described("Preprocessing sidecar; skipped when unset.", default=None)
    postprocess: PostprocessSpec | None = described("Postprocessing sidecar; skipped when unset.", default=None)
    gateway: GatewaySpec = nested(GatewaySpec, "The gateway in front of the pipeline.")
    replicas: int | None = described(
        "Serving pods when autoscaling.enabled is false (kubectl scale writes it through the scale "
        "subresource); autoscaling.minReplicas when unset. Refused while autoscaling is enabled.",
        default=None, ge=0, le=1000,
    )
    autoscaling: AutoscalingSpec = nested(AutoscalingSpec, "Horizontal autoscaling.")
    rollout: RolloutSpec = nested(RolloutSpec, "Blue-green rollout of new revisions.")
    traffic: TrafficSpec = nested(TrafficSpec, "Traffic routing between revisions.")
    security: SecuritySpec = nested(SecuritySpec, "Security layers of the gateway.")
    monitoring: MonitoringSpec = nested(MonitoringSpec, "Monitoring and alerts.")

    cel_rules = (
        CelRule(
            "!has(self.model.instanceGroups) || self.model.instanceGroups.all(g, g.kind != 'GPU') "
            "|| self.runtime.resources.gpu > 0",
            "instance groups of kind GPU need runtime.resources.gpu > 0",
            ".model.instanceGroups",
        ),
    )
