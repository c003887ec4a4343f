"""`tritium operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import asyncio
import secrets

import kopf
from prometheus_client import start_http_server


def run_operator(
    *, namespaces: list[str], peering: str | None, liveness_port: int, metrics_port: int, verbose: bool
) -> int:
    import tritium.controller.handlers  # noqa: F401 - registers the handlers with kopf

    if metrics_port:
        start_http_server(metrics_port)
    kopf.configure(verbose=verbose)
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
