"""The per-revision Deployment: fetch init container, Triton, optional stage sidecars, gateway.

One Deployment per revision (NAME-REVISION) so that a new revision can run beside the stable one
(blue-green); a revision's pod template never changes, only its replica count does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from tritium import pod_layout as L
from tritium.api.checks import storage_scheme
from tritium.api.resource import InferenceService
from tritium.api.spec import ResourceRequirements, StageResources
from tritium.images import DEFAULT_IMAGES, Images
from tritium.render.commands import Wiring, fetch_command, gateway_command, stage_command, triton_command
from tritium.render.metadata import (
    LABEL_REVISION,
    effective_images,
    labels,
    object_meta,
    revision_name,
    selector_labels,
)
from tritium.render.serviceaccount import name_of as service_account_name
from tritium.render.traffic import name_of as traffic_name

WIRING = Wiring()

# Restricted Pod Security Standard, container level.
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}


def replicas_of(isvc: InferenceService) -> int:
    spec = isvc.spec
    return spec.replicas if spec.replicas is not None else spec.autoscaling.min_replicas


def _resources(res: ResourceRequirements | StageResources) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, Any] = {"memory": res.memory}
    gpu = getattr(res, "gpu", 0)
    if gpu:
        requests["nvidia.com/gpu"] = gpu
        limits["nvidia.com/gpu"] = gpu
    return {"requests": requests, "limits": limits}


# Failover: a pod whose Triton or stage died is out of the Service's endpoints within
# READY_PERIOD x READY_FAILURES = 4 s (+ READY_TIMEOUT for a probe that hangs): the mission's 5 s.
# The gateway's readiness asks Triton and every stage each time, so it fails on the next probe.
READY_PERIOD, READY_FAILURES, READY_TIMEOUT = 2, 2, 1
# A pod that stops: the kubelet runs preStop hooks before SIGTERM. The gateway keeps serving for
# GATEWAY_PRESTOP seconds while the endpoint controller and kube-proxy take the pod out of the
# Service, then drains what is in flight (up to GATEWAY_DRAIN, dataplane/cli.py); Triton and the
# stages wait for that (BACKEND_PRESTOP) before their own SIGTERM, so no request in flight loses
# its model. The grace period covers the backends' wait plus Triton's --exit-timeout-secs.
GATEWAY_PRESTOP, GATEWAY_DRAIN = 5, 10
BACKEND_PRESTOP = GATEWAY_PRESTOP + GATEWAY_DRAIN
TERMINATION_GRACE = BACKEND_PRESTOP + L.TRITON_EXIT_TIMEOUT + 10


def _http_probe(path: str, port: int | str, period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": timeout}


def _ready_probe(path: str, port: int | str) -> dict[str, Any]:
    return _http_probe(path, port, READY_PERIOD, READY_FAILURES, READY_TIMEOUT)


def _pre_stop(seconds: int) -> dict[str, Any]:
    """A sleep hook the kubelet runs itself (no shell or sleep binary needed in the image)."""
    return {"preStop": {"sleep": {"seconds": seconds}}}


def _mount(name: str, path: str, read_only: bool = True) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def _pvc_claim(uri: str) -> str | None:
    return urlparse(uri).netloc if storage_scheme(uri) == "pvc" else None


def _fetch_container(isvc: InferenceService, images: dict[str, str]) -> dict[str, Any]:
    model = isvc.spec.model
    mounts = [_mount("models", L.MODEL_REPOSITORY, read_only=False), _mount("config", L.CONFIG_DIR),
              _mount("tmp", "/tmp", read_only=False)]
    claim = _pvc_claim(model.storage_uri)
    if claim:
        mounts.append(_mount("model-pvc", f"{L.PVC_ROOT}/{claim}"))
    container: dict[str, Any] = {
        "name": L.FETCH_CONTAINER,
        "image": images["gateway"],  # the Tritium image carries the fetcher
        "command": fetch_command(isvc, WIRING),
        "resources": _resources(StageResources()),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    if model.storage_secret_name:
        container["envFrom"] = [{"secretRef": {"name": model.storage_secret_name}}]
    return container


def _triton_container(isvc: InferenceService, images: dict[str, str]) -> dict[str, Any]:
    runtime = isvc.spec.runtime
    container: dict[str, Any] = {
        "name": L.TRITON_CONTAINER,
        "image": images["triton"],
        "command": triton_command(isvc, WIRING),
        "ports": [{"name": "triton-metrics", "containerPort": L.TRITON_METRICS_PORT, "protocol": "TCP"}],
        "resources": _resources(runtime.resources),
        # Model loading can take minutes: the startup probe holds liveness off until Triton is up.
        "startupProbe": _http_probe("/v2/health/live", L.TRITON_HTTP_PORT, 5, 120),
        "livenessProbe": _http_probe("/v2/health/live", L.TRITON_HTTP_PORT, 10, 3),
        "readinessProbe": _ready_probe("/v2/health/ready", L.TRITON_HTTP_PORT),
        "lifecycle": _pre_stop(BACKEND_PRESTOP),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [_mount("models", L.MODEL_REPOSITORY), _mount("shm", "/dev/shm", read_only=False),
                         _mount("tmp", "/tmp", read_only=False)],
    }
    if runtime.env:
        container["env"] = [{"name": e.name, "value": e.value} for e in runtime.env]
    return container


def _stage_container(isvc: InferenceService, stage: str, images: dict[str, str]) -> dict[str, Any] | None:
    spec = isvc.spec.preprocess if stage == "pre" else isvc.spec.postprocess
    if spec is None:
        return None
    port = L.PRE_PORT if stage == "pre" else L.POST_PORT
    port_name = L.PRE_PORT_NAME if stage == "pre" else L.POST_PORT_NAME
    mounts = [_mount("config", L.CONFIG_DIR), _mount("tmp", "/tmp", read_only=False)]
    if spec.script and spec.script.config_map_ref:
        mounts.append(_mount(f"{stage}-script", f"{L.SCRIPTS_DIR}/{stage}"))
    return {
        "name": L.PRE_CONTAINER if stage == "pre" else L.POST_CONTAINER,
        "image": images[L.PRE_CONTAINER if stage == "pre" else L.POST_CONTAINER],
        "command": stage_command(stage, WIRING),
        # Named so that the PodMonitor can scrape the stage's /metrics (render/podmonitor.py).
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "resources": _resources(spec.resources),
        "livenessProbe": _http_probe("/healthz", port, 10, 3),
        "readinessProbe": _ready_probe("/healthz", port),
        "lifecycle": _pre_stop(BACKEND_PRESTOP),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }


def _gateway_env(isvc: InferenceService) -> list[dict[str, Any]]:
    sec = isvc.spec.security
    env: list[dict[str, Any]] = []
    if sec.api_keys_secret_ref:
        env.append({"name": "TRITIUM_API_KEYS_FILE",
                    "value": f"{L.SECRETS_DIR}/api-keys/{sec.api_keys_secret_ref.key}"})
    if sec.sign_responses and sec.signing_key_secret_ref:  # dataplane/security/signing.py SIGNING_KEY_FILE_ENV
        env.append({"name": "TRITIUM_SIGNING_KEY_FILE",
                    "value": f"{L.SECRETS_DIR}/signing/{sec.signing_key_secret_ref.key}"})
    if sec.tls:  # dataplane/security/tls.py: the gateway serves HTTPS with these and refuses to start without them
        env += [{"name": "TRITIUM_TLS_CERT_FILE", "value": f"{L.SECRETS_DIR}/tls/tls.crt"},
                {"name": "TRITIUM_TLS_KEY_FILE", "value": f"{L.SECRETS_DIR}/tls/tls.key"},
                {"name": "TRITIUM_TLS_MIN_VERSION", "value": sec.tls.min_version}]
    limiter_redis = sec.rate_limit.redis if sec.rate_limit else None
    if limiter_redis:  # dataplane/security/layers.py RATELIMIT_REDIS_URL_ENV
        ref = limiter_redis.url_secret_ref
        env.append({"name": "TRITIUM_RATELIMIT_REDIS_URL",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    redis = isvc.spec.gateway.cache.redis
    if redis and isvc.spec.gateway.cache.enabled:  # a cache switched off reads no Secret
        ref = redis.url_secret_ref
        env.append({"name": "TRITIUM_REDIS_URL",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _gateway_container(isvc: InferenceService, images: dict[str, str]) -> dict[str, Any]:
    gw = isvc.spec.gateway
    sec = isvc.spec.security
    mounts = [_mount("config", L.CONFIG_DIR), _mount("traffic", L.TRAFFIC_DIR), _mount("tmp", "/tmp", read_only=False)]
    if sec.api_keys_secret_ref:
        mounts.append(_mount("api-keys", f"{L.SECRETS_DIR}/api-keys"))
    if sec.tls:
        mounts.append(_mount("tls", f"{L.SECRETS_DIR}/tls"))
    if sec.sign_responses and sec.signing_key_secret_ref:
        mounts.append(_mount("signing", f"{L.SECRETS_DIR}/signing"))
    scheme = "HTTPS" if sec.tls else "HTTP"
    probe_ready = _ready_probe("/v2/health/ready", "gateway")
    probe_live = _http_probe("/v2/health/live", "gateway", 10, 3)
    for probe in (probe_ready, probe_live):
        probe["httpGet"]["scheme"] = scheme
    container: dict[str, Any] = {
        "name": L.GATEWAY_CONTAINER,
        "image": images["gateway"],
        "command": gateway_command(isvc, WIRING),
        "ports": [
            {"name": "gateway", "containerPort": L.GATEWAY_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": L.GATEWAY_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(gw.resources),
        "livenessProbe": probe_live,
        "readinessProbe": probe_ready,
        "lifecycle": _pre_stop(GATEWAY_PRESTOP),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    env = _gateway_env(isvc)
    if env:
        container["env"] = env
    return container


def _volumes(isvc: InferenceService, revision: str) -> list[dict[str, Any]]:
    spec = isvc.spec
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "config", "configMap": {"name": revision_name(isvc, revision)}},
        # The canary split (render/traffic.py); optional, so a pod starts before it exists.
        {"name": "traffic", "configMap": {"name": traffic_name(isvc), "optional": True}},
        # Triton's python backend exchanges tensors through shared memory.
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    claim = _pvc_claim(spec.model.storage_uri)
    if claim:
        volumes.append({"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    for stage, stage_spec in (("pre", spec.preprocess), ("post", spec.postprocess)):
        if stage_spec and stage_spec.script and stage_spec.script.config_map_ref:
            ref = stage_spec.script.config_map_ref
            volumes.append({"name": f"{stage}-script",
                            "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]}})
    if spec.security.api_keys_secret_ref:
        volumes.append({"name": "api-keys", "secret": {"secretName": spec.security.api_keys_secret_ref.name}})
    if spec.security.tls:
        volumes.append({"name": "tls", "secret": {"secretName": spec.security.tls.secret_name}})
    if spec.security.sign_responses and spec.security.signing_key_secret_ref:
        volumes.append({"name": "signing", "secret": {"secretName": spec.security.signing_key_secret_ref.name}})
    return volumes


def _pod_spec(isvc: InferenceService, revision: str, images: dict[str, str]) -> dict[str, Any]:
    runtime = isvc.spec.runtime
    containers = [
        _triton_container(isvc, images),
        _stage_container(isvc, "pre", images),
        _stage_container(isvc, "post", images),
        _gateway_container(isvc, images),
    ]
    pod: dict[str, Any] = {
        "serviceAccountName": service_account_name(isvc),
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": L.RUN_AS_USER,
            "runAsGroup": L.RUN_AS_USER,
            "fsGroup": L.RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": TERMINATION_GRACE,
        "initContainers": [_fetch_container(isvc, images)],
        "containers": [c for c in containers if c is not None],
        "volumes": _volumes(isvc, revision),
        # Soft spread over zones, then nodes: one zone or node lost takes as few pods as the
        # cluster allows, and a cluster that cannot spread still schedules (ScheduleAnyway).
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {**selector_labels(isvc), LABEL_REVISION: revision}}}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
    }
    if runtime.node_selector:
        pod["nodeSelector"] = dict(sorted(runtime.node_selector.items()))
    if runtime.tolerations:
        pod["tolerations"] = [t.to_wire() for t in runtime.tolerations]
    if runtime.affinity and runtime.affinity.node_affinity:
        pod["affinity"] = runtime.affinity.to_wire()
    return pod


def render(
    isvc: InferenceService, revision: str, images: Images = DEFAULT_IMAGES, replicas: int | None = None
) -> dict[str, Any]:
    """``replicas``: what the revision runs now when an autoscaler decides (else from the spec)."""
    match = {**selector_labels(isvc), LABEL_REVISION: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(isvc, revision_name(isvc, revision), revision),
        "spec": {
            "replicas": replicas if replicas is not None else replicas_of(isvc),
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": match},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(isvc, revision)},
                "spec": _pod_spec(isvc, revision, effective_images(isvc.spec, images)),
            },
        },
    }
