"""`tritium operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import kopf
from prometheus_client import start_http_server

from tritium.controller.kube import ApiError, KubeClient

PEERING_API = "/apis/kopf.dev/v1"
GLOB_CHARACTERS = frozenset("*?[!")
# Read buffer of each TLS connection to the API server. asyncio gives every TLS connection a
# 256 KiB bytearray, all of it resident, and the operator holds one per watch stream (a kind
# each) and per pooled connection: about 30, some 7.5 MiB. A TLS record is at most 16 KiB, so
# 64 KiB still takes four records per read; large lists only take a few more reads.
TLS_READ_BUFFER = 64 * 1024


def shrink_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Make the TLS connections opened from now on read through ``size``-byte buffers.

    asyncio offers no parameter for it, only the class attribute ``SSLProtocol.max_size`` (read
    when a connection is made, and for each read); a Python without it fails here, loudly, rather
    than the setting silently doing nothing (tests/unit/test_operator_tls_buffers.py).
    """
    import asyncio.sslproto

    if not isinstance(getattr(asyncio.sslproto.SSLProtocol, "max_size", None), int):
        raise RuntimeError("asyncio.sslproto.SSLProtocol.max_size is gone: the TLS read buffer cannot be set")
    asyncio.sslproto.SSLProtocol.max_size = size


def peering_paths(name: str, namespaces: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) of each peering object an operator with these namespaces joins.

    Cluster-wide (no namespaces): one ClusterKopfPeering. Namespaced: one KopfPeering in each
    watched namespace, as kopf looks for it there; namespace patterns (globs, exclusions) name no
    namespace, so nothing is created for them.
    """
    if not namespaces:
        return [(f"{PEERING_API}/clusterkopfpeerings",
                 {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}})]
    return [
        (f"{PEERING_API}/namespaces/{ns}/kopfpeerings",
         {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name, "namespace": ns}})
        for ns in namespaces if not GLOB_CHARACTERS & set(ns)
    ]


async def ensure_peering(client: KubeClient, name: str, namespaces: list[str], logger: Any) -> None:
    """Create the peering objects that are missing; existing ones (made by a peer or by hand) stay.

    The installation ships only the peering CRDs: a custom object cannot be applied together with
    its CRD in one `kubectl apply`, so the operator makes its own. Without permission to create
    it, the operator says so and waits for it, as kopf does for a missing peering object.
    """
    for collection, body in peering_paths(name, namespaces):
        what = f"{body['kind']} {name!r}" + (f" in {body['metadata']['namespace']!r}" if namespaces else "")
        try:
            await client._request("GET", f"{collection}/{name}")
            continue
        except ApiError as exc:
            if exc.retriable:
                raise kopf.TemporaryError(f"cannot read {what}: {exc}", delay=2) from exc
            if exc.status != 404:
                logger.warning(f"cannot read {what} ({exc}); kopf waits for it")
                continue
        try:
            await client._request("POST", collection, body=body)
            logger.info(f"created {what}")
        except ApiError as exc:
            if exc.status == 409:
                continue  # another replica was first
            if exc.retriable:
                raise kopf.TemporaryError(f"cannot create {what}: {exc}", delay=2) from exc
            logger.warning(f"cannot create {what} ({exc}): create it, or allow the operator to; kopf waits for it")


def register_peering_startup(name: str, namespaces: list[str]) -> None:
    """A startup handler that makes the peering objects: it runs before kopf starts peering."""

    @kopf.on.startup(id="tritium-peering-object")
    async def make_peering(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise kopf.TemporaryError("no Kubernetes credentials (in-cluster or KUBECONFIG)", delay=5)
        client = KubeClient()
        client.set_credentials(info)
        try:
            await ensure_peering(client, name, namespaces, logger)
        finally:
            await client.close()


def run_operator(
    *, namespaces: list[str], peering: str | None, liveness_port: int, metrics_port: int, verbose: bool
) -> int:
    import tritium.controller.handlers  # noqa: F401 - registers the handlers with kopf

    if metrics_port:
        start_http_server(metrics_port)
    kopf.configure(verbose=verbose)
    shrink_tls_read_buffers()
    if peering is not None:
        register_peering_startup(peering, namespaces)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces or (),
            standalone=peering is None,
            peering_name=peering,
            # Equal priorities make every peer pause: each replica draws its own, and the
            # highest one is the single active operator.
            priority=secrets.randbelow(2**30) + 1,
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        )
    )
    return 0
