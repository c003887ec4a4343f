"""The `tritium` command line.

Errors are one clear line on stderr with exit code 2 for bad input (a bad file, a bad spec),
never a traceback: the CLI is what people type first, and what CI pipelines parse.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tritium.version import __version__

EXIT_BAD_INPUT = 2
# What a shell reports for a command killed by SIGPIPE: `tritium invoke ... | head` stops quietly.
EXIT_CLOSED_STDOUT = 128 + 13

# Modules exposing ``add_commands(subparsers)``; their commands' functions return an exit code
# and raise UsageError for bad input.
_COMMAND_MODULES = (
    "tritium.dataplane.cli",
    "tritium.dataplane.fetch",
    "tritium.local.cli",
    "tritium.client.cli",
    "tritium.rollout_cli",
    "tritium.keys_cli",
)


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None


def cmd_render(args: argparse.Namespace) -> int:
    from tritium.api.checks import check_spec
    from tritium.api.resource import SpecError, load_inference_services
    from tritium.images import Images
    from tritium.render import render_children, to_yaml

    try:
        services = load_inference_services(_read(args.file))
        for isvc in services:
            check_spec(isvc)
    except SpecError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    # The same default images the operator would use (TRITIUM_STAGE_IMAGE / TRITIUM_TRITON_IMAGE).
    images = Images.from_env(os.environ)
    children = [child for isvc in services for child in render_children(isvc, images=images)]
    sys.stdout.write(to_yaml(children))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    if args.check:
        from tritium.crd_check import check_cluster

        return check_cluster()
    from tritium.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _credentials_source() -> str:
    kubeconfig = os.environ.get("KUBECONFIG")
    return f"KUBECONFIG {kubeconfig}" if kubeconfig else "~/.kube/config"


def check_cluster_access(connect_timeout: float = 5.0) -> None:
    """Fail in one line before kopf starts when there is no cluster to talk to.

    The same credentials the operator's login handler finds (in-cluster service account first,
    then KUBECONFIG or ~/.kube/config), and one TCP connection to their API server; kopf would
    otherwise retry the login (or the connection) forever with a traceback each time.
    """
    import socket
    from urllib.parse import urlsplit

    import kopf

    settings = kopf.OperatorSettings()
    try:
        info = kopf.login_with_service_account(settings=settings)
        source = "the in-cluster service account"
        if info is None:
            source = _credentials_source()
            info = kopf.login_with_kubeconfig(settings=settings)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise UsageError(f"cannot read the Kubernetes credentials ({where}{exc.strerror or exc})") from None
    except Exception as exc:  # malformed kubeconfig: yaml errors, a missing context or cluster
        detail = f"no {exc} entry" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise UsageError(f"cannot use the Kubernetes credentials in {_credentials_source()}: {detail}") from None
    if info is None:
        raise UsageError(
            "no Kubernetes cluster: not running in a cluster (no service account token), "
            "and neither KUBECONFIG nor ~/.kube/config is set"
        )
    url = urlsplit(info.server or "")
    host = url.hostname
    port = url.port or (80 if url.scheme == "http" else 443)
    if not host:
        raise UsageError(f"the Kubernetes credentials in {source} name no API server")
    try:
        socket.create_connection((host, port), timeout=connect_timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UsageError(f"cannot reach the Kubernetes API server {info.server} (from {source}): {reason}") from None


def without_kubernetes_client() -> None:
    """Keep the `kubernetes` package out of the operator process (about 20 MB of its memory).

    The operator talks to the API server with its own aiohttp client (controller/kube.py) and
    never imports `kubernetes`; kopf imports it only when it is installed (it is, for the CLI's
    other commands), to recognise that library's model objects, which the operator never hands
    it. Marked absent before kopf is first imported, kopf takes the path it takes without it.
    """
    if "kopf" not in sys.modules:
        sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]


_NAMESPACE_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123, at most 63 characters
_NAMESPACE_PATTERN = re.compile(r"[-a-z0-9*?\[\]]+")  # kopf's globs (web-*, ns-?) over those characters


def check_watched_namespace(value: str) -> str:
    """A namespace to watch: a name, a glob of names, or either after "!" (excluded), as kopf takes them.

    Anything else could never match a namespace, and the operator would sit idle without a word.
    """
    name = value[1:] if value.startswith("!") else value
    if set("*?[") & set(name):
        ok = bool(_NAMESPACE_PATTERN.fullmatch(name))
    else:
        ok = len(name) <= 63 and bool(_NAMESPACE_LABEL.fullmatch(name))
    if not ok:
        raise UsageError(f"--namespace {value!r} can match no namespace: a namespace is at most 63 lowercase "
                         "letters, digits and '-', starting and ending with a letter or digit (globs with * ? [] "
                         "and a leading ! to exclude are allowed)")
    return value


def cmd_operator(args: argparse.Namespace) -> int:
    for namespace in args.namespace:
        check_watched_namespace(namespace)
    without_kubernetes_client()
    check_cluster_access()
    from tritium.controller.handlers import PROMETHEUS_URL_ENV
    from tritium.controller.main import run_operator

    if args.prometheus_url:
        os.environ[PROMETHEUS_URL_ENV] = args.prometheus_url

    return run_operator(
        namespaces=args.namespace,
        peering=args.peering,
        liveness_port=args.liveness_port,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritium", description="Run NVIDIA Triton on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"tritium {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="print the Kubernetes objects an InferenceService becomes")
    p.add_argument("-f", "--file", required=True, help="InferenceService manifest (YAML, '-' for stdin)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("crd", help="print the InferenceService CustomResourceDefinition")
    p.add_argument(
        "--check", action="store_true",
        help="compare the CRD installed in the cluster (in-cluster config or KUBECONFIG) with this version's: "
        "exit 0 up to date, 1 older or different, 2 not installed, 3 cluster not reachable",
    )
    p.set_defaults(func=cmd_crd)

    p = sub.add_parser("operator", help="run the operator (in a cluster or against KUBECONFIG)")
    p.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch only this namespace (repeatable); all namespaces when not given",
    )
    p.add_argument(
        "--peering", default=None,
        help="peering object name for leader election between replicas; standalone when not given",
    )
    p.add_argument("--liveness-port", type=int, default=8080, help="port of the /healthz liveness endpoint")
    p.add_argument("--metrics-port", type=int, default=9090, help="port of the Prometheus /metrics endpoint")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--prometheus-url", default=None, metavar="URL",
                   help="Prometheus for rollout analysis with provider prometheus when a service names none "
                   "(also TRITIUM_PROMETHEUS_URL)")
    p.set_defaults(func=cmd_operator)

    # Commands of the other subsystems register themselves (each module owns its flags).
    for module in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name and exc.name.startswith("tritium"):
                continue  # that subsystem is not part of this build
            raise
        mod.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"tritium {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_stdout()


def _closed_stdout() -> int:
    """The reader of stdout went away (`| head`): stop without a traceback.

    What is still buffered cannot be written either; stdout points at /dev/null from here on so
    that the interpreter's flush at exit does not report the same broken pipe again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (captured in-process): nothing flushes it at exit
    return EXIT_CLOSED_STDOUT


if __name__ == "__main__":
    # `python -m tritium.cli`: run the copy subsystems import (tritium.cli), not this __main__ copy,
    # so that their UsageError is the class caught in main().
    from tritium.cli import main as _main

    sys.exit(_main())
