"""`tritium up -f FILE`: run an InferenceService on this machine until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from tritium.cli import UsageError


def cmd_up(args: argparse.Namespace) -> int:
    from tritium.local.manifest import load_manifest
    from tritium.local.runner import Interrupted, LocalRun, StartError
    from tritium.local.tritonserver import TritonNotFoundError

    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be within 1..65535, got {args.port}")
    if args.watch:
        return cmd_up_watch(args)
    isvc = load_manifest(args.file, args.name)
    try:
        run = LocalRun(isvc, sys.stdout, gateway_port=args.port, ready_timeout=args.timeout,
                       secrets_dir=args.secrets)
    except TritonNotFoundError as exc:
        raise UsageError(str(exc)) from None

    def on_signal(signum: int, frame: Any) -> None:
        run.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            run.start()
        except (StartError, TritonNotFoundError) as exc:
            run.starting = False
            run.say(f"failed to start: {exc}")
            return 1
        return run.wait()
    except Interrupted:
        run.starting = False
        run.say("interrupted while starting; stopping")
        return 0
    finally:
        run.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_up_watch(args: argparse.Namespace) -> int:
    """`tritium up --watch`: blue-green rollouts of the file's changes (local/watch.py)."""
    import threading

    from tritium.local.runner import LOG, StartError
    from tritium.local.tritonserver import TritonNotFoundError, find_tritonserver
    from tritium.local.watch import watch

    try:
        find_tritonserver()
    except TritonNotFoundError as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return watch(args.file, args.name, sys.stdout, args.port, args.timeout, stop, secrets_dir=args.secrets)
    except (StartError, OSError) as exc:
        print(f"[{LOG}] failed to start: {exc}", flush=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "up", help="run an InferenceService locally (real Triton, stage sidecars, gateway) until Ctrl-C",
        description="Run one InferenceService on this machine, wired exactly like its pod: the model "
        "is fetched into a temporary model repository, then Triton, the stage sidecars and the gateway "
        "start as local processes. Prints 'gateway: http://127.0.0.1:PORT' once ready; Ctrl-C or "
        "SIGTERM stops everything.",
    )
    p.add_argument("-f", "--file", required=True, help="InferenceService manifest (YAML)")
    p.add_argument("--name", help="which InferenceService of the file to run (when it holds several)")
    p.add_argument("--port", type=int, help="gateway port on 127.0.0.1 (a free one when not given)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness (default 180)")
    p.add_argument("--watch", action="store_true",
                   help="follow FILE: a change of revision starts it beside the running one and rolls it out "
                   "blue-green (spec.rollout: canary share, analysis, promotion or rollback)")
    p.add_argument("--secrets", metavar="DIR",
                   help="where the Secrets the spec names are: Secret NAME's key KEY is the file DIR/NAME/KEY, "
                   "as a pod mounts it (API keys, Redis URLs)")
    p.set_defaults(func=cmd_up)
