"""`tritium gateway` and `tritium stage pre|post`: the data-plane processes of a serving pod.

Their flags are exactly those render/commands.py writes into the pod (and local mode runs).
Heavy imports happen inside the commands so that `tritium --help` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any


def _usage(message: str) -> Exception:
    from tritium.cli import UsageError

    return UsageError(message)


def _load(path: str) -> Any:
    from tritium.dataplane.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise _usage(str(exc)) from None


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _serve_gateway(gateway: Any, host: str, port: int, metrics_port: int, tls: Any = None) -> None:
    """Serve the API and /metrics until SIGTERM/SIGINT, then drain requests in progress and stop.

    With ``tls`` (a dataplane.tls.CertificateReloader) the API port is HTTPS and follows the
    certificate's files; the metrics port stays plain HTTP either way (see dataplane/security/tls.py).
    """
    from tritium.dataplane.gateway import build_handler, error_body
    from tritium.dataplane.http.server import HttpServer
    from tritium.dataplane.metrics import metrics_route

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    api = HttpServer(build_handler(gateway), max_body=gateway.max_bytes, error_body=error_body)
    metrics = HttpServer(metrics_route(gateway.metrics.registry), max_body=0)
    reload_task = asyncio.create_task(tls.watch()) if tls is not None else None
    try:
        await api.listen(host, port, tls.listening if tls is not None else None)
        await metrics.listen(host, metrics_port)
        logging.getLogger("tritium").info("gateway listening on %s:%d%s (metrics on %d, plain HTTP)", host, port,
                                          f" with TLS >= {tls.settings.min_version}" if tls is not None else "",
                                          metrics_port)
        await stop.wait()
    finally:
        if reload_task is not None:
            reload_task.cancel()
        await api.shutdown()
        await metrics.shutdown(grace=1.0)
        await gateway.stop()


def cmd_gateway(args: argparse.Namespace) -> int:
    from tritium.dataplane.gateway import Gateway, GatewaySettings, redis_url_from_env
    from tritium.dataplane.security.layers import SecuritySettings
    from tritium.dataplane.security.tls import CertificateReloader, TlsSettings

    config = _load(args.spec)
    if ":" not in args.triton_grpc:
        raise _usage(f"--triton-grpc must be HOST:PORT, got {args.triton_grpc!r}")
    settings = GatewaySettings(
        config=config, triton_grpc=args.triton_grpc, triton_http=args.triton_http,
        pre_url=args.pre, post_url=args.post, redis_url=redis_url_from_env(), traffic_file=args.traffic_file,
        security=SecuritySettings.from_env(),
    )
    if config.spec.preprocess is not None and not args.pre:
        raise _usage("the spec has a preprocess stage: pass --pre URL")
    if config.spec.postprocess is not None and not args.post:
        raise _usage("the spec has a postprocess stage: pass --post URL")
    _logging()
    _use_uvloop()
    try:
        gateway = Gateway(settings)
        tls_settings = TlsSettings.from_env(config.spec.security.tls)
    except ValueError as exc:  # a security layer the spec asks for cannot be set up
        raise _usage(str(exc)) from None
    try:
        # Loaded before anything listens: a certificate that cannot be served stops the start.
        tls = CertificateReloader(tls_settings) if tls_settings is not None else None
    except OSError as exc:  # ssl.SSLError too
        raise _usage(f"spec.security.tls: the certificate and key cannot be loaded: {exc}") from None
    if tls is not None:
        gateway.tls_pin = lambda: tls.fingerprint
    asyncio.run(_serve_gateway(gateway, args.host, args.port, args.metrics_port, tls))
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from tritium.dataplane.config import ConfigError
    from tritium.dataplane.stages.server import StageProcessor

    config = _load(args.spec)
    if config.spec.security.redact_pii:
        # The stage runs the spec's scripts: whatever they print or log, and this process' own log
        # lines, go out through the same redaction as the gateway's.
        from tritium.dataplane.security.redact import RedactingStream, Redactor

        redactor = Redactor(config.spec.security.redact_patterns or ())
        sys.stdout = RedactingStream(sys.stdout, redactor)  # type: ignore[assignment]
        sys.stderr = RedactingStream(sys.stderr, redactor)  # type: ignore[assignment]
    _logging()
    try:
        processor = StageProcessor(args.stage, config.spec, scripts_dir=args.scripts_dir)
    except ConfigError as exc:
        raise _usage(str(exc)) from None
    _use_uvloop()
    asyncio.run(_serve_stage(processor, args.host, args.port, args.socket))
    return 0


async def _serve_stage(processor: Any, host: str, port: int, socket_path: str | None = None) -> None:
    from tritium.dataplane.http.sidecar_server import serve
    from tritium.dataplane.http.stage_wire import serve_wire
    from tritium.dataplane.stages.server import StageService

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The TCP port serves probes and scrapes, and messages only when there is no Unix socket (a
    # gateway given an http:// URL); the socket, when asked for, is the gateway's own path to the
    # stage (framed messages, see http/stage_wire.py) and then the only one (StageService). It is
    # bound first, so that a stage whose probe answers is reachable by its gateway.
    service = StageService(processor, tcp_processing=socket_path is None)
    servers = [await serve_wire(service.wire, socket_path, eager=service.eager)] if socket_path else []
    servers.append(await serve(service.http, host, port))
    logging.getLogger("tritium").info("%s stage listening on %s:%d%s", processor.stage, host, port,
                                      f" and {socket_path}" if socket_path else "")
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        if socket_path:
            with contextlib.suppress(OSError):
                os.unlink(socket_path)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("gateway", help="run the gateway (KServe v2 + invoke + SSE) in front of Triton")
    p.add_argument("--spec", required=True, help="data-plane config JSON (the revision ConfigMap's spec file)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, required=True, help="port of the API")
    p.add_argument("--metrics-port", type=int, required=True, help="port of the Prometheus /metrics endpoint")
    p.add_argument("--triton-grpc", required=True, help="Triton gRPC address, HOST:PORT")
    p.add_argument("--triton-http", required=True, help="Triton HTTP base URL (metadata, config, statistics)")
    p.add_argument("--pre", default=None, help="the preprocess stage: http://HOST:PORT or unix:/PATH/TO/SOCKET")
    p.add_argument("--post", default=None, help="the postprocess stage: http://HOST:PORT or unix:/PATH/TO/SOCKET")
    p.add_argument("--traffic-file", default=None, metavar="PATH",
                   help="the canary split (in a pod /etc/tritium/traffic/traffic.json), re-read every second; "
                        "without it nothing is forwarded")
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("stage", help="run a stage sidecar (pre or post processing)")
    p.add_argument("stage", choices=["pre", "post"], help="which stage")
    p.add_argument("--spec", required=True, help="data-plane config JSON (the revision ConfigMap's spec file)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, required=True, help="port to listen on (probes, metrics)")
    p.add_argument("--socket", default=None, help="also listen on this Unix socket (the gateway's path in a pod)")
    p.add_argument("--scripts-dir", default=None, help=argparse.SUPPRESS)  # where ConfigMap scripts are mounted
    p.set_defaults(func=cmd_stage)
