"""The `tritium` command line.

Errors are one clear line on stderr with exit code 2 for bad input (a bad file, a bad spec),
never a traceback: the CLI is what people type first, and what CI pipelines parse.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tritium.version import __version__

EXIT_BAD_INPUT = 2

# Modules exposing ``add_commands(subparsers)``; their commands' functions return an exit code
# and raise UsageError for bad input.
_COMMAND_MODULES = (
    "tritium.dataplane.cli",
    "tritium.dataplane.fetch",
    "tritium.local.cli",
    "tritium.client.cli",
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


def cmd_operator(args: argparse.Namespace) -> int:
    from tritium.controller.main import run_operator

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


if __name__ == "__main__":
    # `python -m tritium.cli`: run the copy subsystems import (tritium.cli), not this __main__ copy,
    # so that their UsageError is the class caught in main().
    from tritium.cli import main as _main

    sys.exit(_main())
