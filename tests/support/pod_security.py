"""The Pod Security Standard "restricted" (baseline included), as rules over a pod spec.

Written from the standard's published table (kubernetes.io/docs/concepts/security/
pod-security-standards), one function per control, each answering the violations it finds as
"field: why". Unit tests run it over every rendered pod; tests/e2e/test_pod_security_admission.py checks that
kube-apiserver's own PodSecurity admission agrees with it on the same pods and on one mutation per
control, so this encoding cannot drift from the server's unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# Capabilities the baseline profile lets a container add; restricted allows NET_BIND_SERVICE only.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
    "projected", "secret",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"

Violations = Iterator[str]


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(pod.get(kind) or []):
            yield f"spec.{kind}[{i}]", container


def _contexts(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod's securityContext, then each container's (absent ones as empty)."""
    yield "spec.securityContext", pod.get("securityContext") or {}
    for path, container in _containers(pod):
        yield f"{path}.securityContext", container.get("securityContext") or {}


def host_process(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, sc in _contexts(pod):
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"{path}.windowsOptions.hostProcess: must not be true"


def host_namespaces(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"spec.{field}: must not be true"


def privileged(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, sc in _contexts(pod):
        if sc.get("privileged"):
            yield f"{path}.privileged: must not be true"


def capabilities(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, container in _containers(pod):
        caps = (container.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{path}.securityContext.capabilities.drop: must include ALL"
        for cap in caps.get("add") or []:
            if cap not in RESTRICTED_CAPABILITIES:
                yield f"{path}.securityContext.capabilities.add: {cap} is not allowed"


def host_path_volumes(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for i, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            yield f"spec.volumes[{i}].hostPath: not allowed"


def volume_types(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for i, volume in enumerate(pod.get("volumes") or []):
        for key in set(volume) - {"name"} - RESTRICTED_VOLUME_TYPES:
            yield f"spec.volumes[{i}].{key}: volume type not allowed"


def host_ports(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, container in _containers(pod):
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                yield f"{path}.ports[{j}].hostPort: must be unset or 0"


def apparmor(pod: dict[str, Any], annotations: dict[str, str]) -> Violations:
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            yield f"metadata.annotations[{key}]: {value} is not allowed"
    for path, sc in _contexts(pod):
        kind = (sc.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in SECCOMP_ALLOWED:
            yield f"{path}.appArmorProfile.type: {kind} is not allowed"


def selinux(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, sc in _contexts(pod):
        options = sc.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            yield f"{path}.seLinuxOptions.type: {options['type']} is not allowed"
        for field in ("user", "role"):
            if options.get(field):
                yield f"{path}.seLinuxOptions.{field}: must be unset"


def proc_mount(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, container in _containers(pod):
        mount = (container.get("securityContext") or {}).get("procMount")
        if mount not in (None, "Default"):
            yield f"{path}.securityContext.procMount: {mount} is not allowed"


def sysctls(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for i, sysctl in enumerate((pod.get("securityContext") or {}).get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"spec.securityContext.sysctls[{i}]: {sysctl.get('name')} is not a safe sysctl"


def privilege_escalation(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, container in _containers(pod):
        if (container.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            yield f"{path}.securityContext.allowPrivilegeEscalation: must be false"


def run_as_non_root(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    pod_level = (pod.get("securityContext") or {}).get("runAsNonRoot")
    for path, container in _containers(pod):
        own = (container.get("securityContext") or {}).get("runAsNonRoot")
        if own is False or (own is None and pod_level is not True):
            yield f"{path}.securityContext.runAsNonRoot: must be true (here or in the pod's securityContext)"
    if pod_level is False:
        yield "spec.securityContext.runAsNonRoot: must not be false"


def run_as_user(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    for path, sc in _contexts(pod):
        if sc.get("runAsUser") == 0:
            yield f"{path}.runAsUser: must not be 0"


def seccomp(pod: dict[str, Any], _annotations: dict[str, str]) -> Violations:
    pod_level = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    if pod_level is not None and pod_level not in SECCOMP_ALLOWED:
        yield f"spec.securityContext.seccompProfile.type: {pod_level} is not allowed"
    for path, container in _containers(pod):
        own = ((container.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        if own is not None and own not in SECCOMP_ALLOWED:
            yield f"{path}.securityContext.seccompProfile.type: {own} is not allowed"
        elif own is None and pod_level not in SECCOMP_ALLOWED:
            yield f"{path}.securityContext.seccompProfile: must be RuntimeDefault or Localhost (here or in the pod)"


CONTROLS: dict[str, Callable[[dict[str, Any], dict[str, str]], Violations]] = {
    f.__name__: f
    for f in (host_process, host_namespaces, privileged, capabilities, host_path_volumes, volume_types,
              host_ports, apparmor, selinux, proc_mount, sysctls, privilege_escalation, run_as_non_root,
              run_as_user, seccomp)
}


def restricted_violations(pod_spec: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """Every way `pod_spec` (with its pod `annotations`) breaks the "restricted" standard; [] if none."""
    return [v for control in CONTROLS.values() for v in control(pod_spec, annotations or {})]


# One change per control that breaks it on an otherwise compliant pod (the first container is
# changed), for tests that show each control, ours and the API server's, really refuses.
def _container_context(pod: dict[str, Any]) -> dict[str, Any]:
    """The first container's own securityContext (a copy: rendered containers may share one)."""
    container = pod["containers"][0]
    container["securityContext"] = dict(container.get("securityContext") or {})
    return container["securityContext"]


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "host_process": lambda pod: _container_context(pod).update(windowsOptions={"hostProcess": True}),
    "host_namespaces": lambda pod: pod.update(hostPID=True),
    # The API server refuses privileged with allowPrivilegeEscalation false as contradictory.
    "privileged": lambda pod: _container_context(pod).update(privileged=True, allowPrivilegeEscalation=True),
    "capabilities": lambda pod: _container_context(pod).update(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}),
    "host_path_volumes": lambda pod: pod.setdefault("volumes", []).append({"name": "h", "hostPath": {"path": "/"}}),
    "volume_types": lambda pod: pod.setdefault("volumes", []).append(
        {"name": "n", "nfs": {"server": "nfs.invalid", "path": "/"}}),
    "host_ports": lambda pod: pod["containers"][0].setdefault("ports", []).append(
        {"containerPort": 9999, "hostPort": 9999, "protocol": "TCP"}),
    "apparmor": lambda pod: _container_context(pod).update(appArmorProfile={"type": "Unconfined"}),
    "selinux": lambda pod: _container_context(pod).update(seLinuxOptions={"type": "spc_t"}),
    # Unmasked is valid only in a user namespace (hostUsers false), itself allowed by the standard.
    "proc_mount": lambda pod: (pod.update(hostUsers=False), _container_context(pod).update(procMount="Unmasked")),
    "sysctls": lambda pod: pod.setdefault("securityContext", {}).update(
        sysctls=[{"name": "kernel.msgmax", "value": "65536"}]),
    "privilege_escalation": lambda pod: _container_context(pod).update(allowPrivilegeEscalation=True),
    "run_as_non_root": lambda pod: _container_context(pod).update(runAsNonRoot=False),
    "run_as_user": lambda pod: _container_context(pod).update(runAsUser=0),
    "seccomp": lambda pod: _container_context(pod).update(seccompProfile={"type": "Unconfined"}),
}
