"""Command lines of the pipeline processes, shared by the pod (render) and local mode.

Both call :func:`pipeline_commands` — the pod with the fixed ports and paths of pod_layout, local
mode with free ports and a temporary directory — so both run the very same processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritium import pod_layout
from tritium.api.resource import InferenceService


@dataclass(frozen=True)
class Wiring:
    """Ports and paths one pipeline instance uses."""

    spec_file: str = f"{pod_layout.CONFIG_DIR}/{pod_layout.SPEC_FILE}"
    triton_config_file: str = f"{pod_layout.CONFIG_DIR}/{pod_layout.TRITON_CONFIG_FILE}"
    model_repository: str = pod_layout.MODEL_REPOSITORY
    host: str = "127.0.0.1"
    gateway_host: str = "0.0.0.0"
    gateway_port: int = pod_layout.GATEWAY_PORT
    gateway_metrics_port: int = pod_layout.GATEWAY_METRICS_PORT
    pre_port: int = pod_layout.PRE_PORT
    post_port: int = pod_layout.POST_PORT
    triton_http_port: int = pod_layout.TRITON_HTTP_PORT
    triton_grpc_port: int = pod_layout.TRITON_GRPC_PORT
    triton_metrics_port: int = pod_layout.TRITON_METRICS_PORT
    # The canary split the gateway follows (a ConfigMap mounted in the pod; a file local mode writes).
    traffic_file: str | None = f"{pod_layout.TRAFFIC_DIR}/{pod_layout.TRAFFIC_FILE}"
    socket_dir: str = pod_layout.SOCKET_DIR  # gateway -> stage Unix sockets (a directory both can reach)
    tritonserver: str = "tritonserver"
    triton_extra: tuple[str, ...] = field(default_factory=tuple)  # e.g. --backend-directory in local mode


def fetch_command(isvc: InferenceService, wiring: Wiring) -> list[str]:
    model = isvc.spec.model
    cmd = ["tritium", "fetch-model", model.storage_uri, f"{wiring.model_repository}/{model.name}",
           "--config", wiring.triton_config_file]
    if model.sha256:
        cmd += ["--sha256", model.sha256]
    return cmd


def triton_command(isvc: InferenceService, wiring: Wiring) -> list[str]:
    spec = isvc.spec
    cmd = [
        wiring.tritonserver,
        f"--model-repository={wiring.model_repository}",
        f"--http-address={wiring.gateway_host}",  # health probes
        f"--http-port={wiring.triton_http_port}",
        f"--grpc-address={wiring.host}",
        f"--grpc-port={wiring.triton_grpc_port}",
        # Metrics answer Prometheus from outside the pod.
        f"--metrics-address={wiring.gateway_host}",
        f"--metrics-port={wiring.triton_metrics_port}",
        "--model-control-mode=explicit",
        f"--load-model={spec.model.name}",
        f"--exit-timeout-secs={pod_layout.TRITON_EXIT_TIMEOUT}",
        *wiring.triton_extra,
    ]
    if spec.model.response_cache.enabled:
        cmd.append(f"--cache-config=local,size={spec.model.response_cache.size_bytes}")
    return cmd + list(spec.runtime.args or [])


def stage_socket(stage: str, wiring: Wiring) -> str:
    """The stage's Unix socket. The gateway calls the stage there rather than on its TCP port (which
    stays for probes and metrics): measured, it costs both processes less CPU per request."""
    return f"{wiring.socket_dir}/tritium-{stage}.sock"


def stage_command(stage: str, wiring: Wiring) -> list[str]:
    port = wiring.pre_port if stage == "pre" else wiring.post_port
    return ["tritium", "stage", stage, "--spec", wiring.spec_file, "--host", wiring.gateway_host, "--port", str(port),
            "--socket", stage_socket(stage, wiring)]


def gateway_command(isvc: InferenceService, wiring: Wiring) -> list[str]:
    cmd = [
        "tritium", "gateway",
        "--spec", wiring.spec_file,
        "--host", wiring.gateway_host,
        "--port", str(wiring.gateway_port),
        "--metrics-port", str(wiring.gateway_metrics_port),
        "--triton-grpc", f"{wiring.host}:{wiring.triton_grpc_port}",
        "--triton-http", f"http://{wiring.host}:{wiring.triton_http_port}",
    ]
    if wiring.traffic_file:
        cmd += ["--traffic-file", wiring.traffic_file]
    if isvc.spec.preprocess:
        cmd += ["--pre", f"unix:{stage_socket('pre', wiring)}"]
    if isvc.spec.postprocess:
        cmd += ["--post", f"unix:{stage_socket('post', wiring)}"]
    return cmd
