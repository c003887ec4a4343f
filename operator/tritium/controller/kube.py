"""A thin async Kubernetes API client for the few calls the operator makes itself.

kopf owns watching; the operator's own writes (server-side apply of children, status, prunes)
go through here, on the same credentials kopf logged in with. It is deliberately small: every
call is one HTTP request, errors become :class:`ApiError` with the status code, and the caller
(reconcile) decides what is retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

from tritium.controller import metrics

FIELD_MANAGER = "tritium-operator"

# Kind -> (API path prefix, plural), for the kinds the operator reads or writes.
RESOURCES: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    # Gateway API, Prometheus Operator, KEDA and cert-manager kinds: a cluster may lack their CRDs
    # (reconcile.OPTIONAL_KINDS).
    "Certificate": ("/apis/cert-manager.io/v1", "certificates"),
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "PodMonitor": ("/apis/monitoring.coreos.com/v1", "podmonitors"),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules"),
    "AlertmanagerConfig": ("/apis/monitoring.coreos.com/v1alpha1", "alertmanagerconfigs"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "InferenceService": ("/apis/serving.tritium.dev/v1alpha1", "inferenceservices"),
    "Event": ("/api/v1", "events"),
}


# Per phase, not in total: a total timeout also counts the wait for a free pooled connection, so
# under a burst of reconciles requests timed out before they were ever sent.
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10, sock_read=30)


# Connections to the API server at once. Each TLS connection holds a 256 KiB read buffer, and
# more in flight only queue in the API server's own fairness queues: in the 200-service benchmark
# (docs/benchmarks.md) 8 gave a peak RSS 10 MB below 32's, at the same speed within the noise.
CONNECTIONS = 8
# Requests wait for one of those connections in this gate, first come first served. aiohttp's pool
# alone is not fair: a request made just as a connection came free takes it before the ones
# already waiting, so under a mass creation a few reconciles ran ahead while others waited 5-19 s
# for a connection, and the last service was done long after the work's own time.


class ApiError(Exception):
    """A non-2xx answer (status > 0) or a transport failure (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


@dataclass
class _Auth:
    server: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | bool


def _write_temp(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    with contextlib.suppress(ValueError):  # kubeconfig "-data" fields are base64; kopf may decode them or not
        raw = base64.b64decode(raw, validate=True)
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")  # noqa: SIM115 - lives as long as the process
    f.write(raw)
    f.close()
    return f.name


def _auth_from(info: kopf.ConnectionInfo) -> _Auth:
    headers: dict[str, str] = {}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    elif info.username and info.password:
        basic = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    context: ssl.SSLContext | bool = False
    if info.server.startswith("https"):
        if info.insecure:
            context = False
        else:
            ca = info.ca_path or (_write_temp(info.ca_data) if info.ca_data else None)
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
        cert = info.certificate_path or (_write_temp(info.certificate_data) if info.certificate_data else None)
        key = info.private_key_path or (_write_temp(info.private_key_data) if info.private_key_data else None)
        if cert:
            if context is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            assert isinstance(context, ssl.SSLContext)
            context.load_cert_chain(str(cert), str(key) if key else None)
    return _Auth(server=info.server.rstrip("/"), headers=headers, ssl=context)


def object_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = RESOURCES[kind]
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    """One pooled HTTP session to the API server, created on first use after login."""

    def __init__(self) -> None:
        self._auth: _Auth | None = None
        self._session: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(CONNECTIONS)  # made again with each session (bound to its loop)

    def set_credentials(self, info: kopf.ConnectionInfo) -> None:
        self._auth = _auth_from(info)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self, method: str, path: str, *, params: dict[str, str] | None = None,
        body: Any = None, content_type: str = "application/json", write_kind: str = "",
    ) -> dict[str, Any]:
        if self._auth is None:
            raise ApiError(0, "not logged in to the Kubernetes API")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._auth.headers, timeout=_TIMEOUT,
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, ssl=self._auth.ssl),
            )
            self._gate = asyncio.Semaphore(CONNECTIONS)  # FIFO: a new acquirer queues behind the waiters
        url = self._auth.server + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body)
        if write_kind:
            metrics.API_WRITES.labels(verb=method.lower(), kind=write_kind).inc()
        try:
            async with self._gate, self._session.request(
                method, url, data=data, headers={"Content-Type": content_type} if data else None,
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    try:
                        message = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        message = text
                    raise ApiError(resp.status, str(message)[:500])
                return json.loads(text) if text else {}
        except aiohttp.ClientError as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise ApiError(0, "request to the Kubernetes API timed out") from exc

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", object_path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def serves(self, kind: str) -> bool:
        """Whether the API server has ``kind`` (a custom kind exists only once its CRD is established)."""
        prefix, plural = RESOURCES[kind]
        try:
            data = await self._request("GET", prefix)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in data.get("resources") or [])

    async def list(self, kind: str, namespace: str, label_selector: str, *,
                   from_cache: bool = False) -> list[dict[str, Any]]:
        """The objects of ``kind`` matching ``label_selector``; ``from_cache``: served by the API
        server's watch cache (resourceVersion=0: no read from etcd, at most a few milliseconds old)."""
        params = {"labelSelector": label_selector, **({"resourceVersion": "0"} if from_cache else {})}
        data = await self._request("GET", object_path(kind, namespace), params=params)
        return list(data.get("items") or [])

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's single field manager (creates or updates)."""
        meta = obj["metadata"]
        return await self._request(
            "PATCH", object_path(obj["kind"], meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj, content_type="application/apply-patch+yaml", write_kind=obj["kind"],
        )

    async def set_replicas(self, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Change only spec.replicas (a merge patch: the rest of what the operator applied stays)."""
        return await self._request(
            "PATCH", object_path(kind, namespace, name), params={"fieldManager": f"{FIELD_MANAGER}-rollout"},
            body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json", write_kind=kind,
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create (POST) a new object, e.g. an Event with a generated name."""
        return await self._request(
            "POST", object_path(obj["kind"], obj["metadata"]["namespace"]), body=obj, write_kind=obj["kind"]
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete; an object already gone is fine."""
        try:
            await self._request(
                "DELETE", object_path(kind, namespace, name),
                body={"propagationPolicy": "Background"}, write_kind=kind,
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return await self._request(
            "PATCH", object_path(kind, namespace, name, "status"), body={"status": status},
            content_type="application/merge-patch+json", write_kind=f"{kind}/status",
        )
