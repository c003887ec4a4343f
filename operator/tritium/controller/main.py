"""`tritium operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server


def run_operator(
    *, namespaces: list[str], peering: str | None, liveness_port: int, metrics_port: int, verbose: bool
) -> int:
    import tritium.controller.handlers  # noqa: F401 - registers the handlers with kopf

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if metrics_port:
        start_http_server(metrics_port)
    kopf.configure(verbose=verbose)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces or None,
            standalone=peering is None,
            peering_name=peering,
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        )
    )
    return 0
