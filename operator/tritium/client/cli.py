"""`tritium invoke` and `tritium stream`: quick checks of an endpoint from a terminal, built on the SDK.

Exit codes: 0 success; 2 bad input (a malformed --input, or the server's 400/404/413/415: the
request is wrong, retrying will not help); 1 any other failure (unreachable, 401/403, 429, 5xx).
The SDK is imported only when one of these commands runs, so `tritium --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from tritium.cli import UsageError

if TYPE_CHECKING:
    from tritium.client import InferenceClient, Response, TritiumError

EXIT_SERVER_ERROR = 1
_MAX_CELL = 80


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, func, help_text in (
        ("invoke", cmd_invoke, "run one inference against an endpoint and print the outputs"),
        ("stream", cmd_stream, "stream a decoupled model's responses as they arrive"),
    ):
        p = subparsers.add_parser(
            name, help=help_text,
            epilog="VALUE is JSON when it parses as JSON ([1,2,3], 4, true, \"text\"), else a plain string; "
                   "@FILE reads the JSON value from FILE. Exit codes: 0 ok, 2 bad input (also the server's "
                   "400/404/413/415), 1 other failures.",
        )
        p.add_argument("model", metavar="MODEL", help="model name")
        p.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE",
                       help="an input tensor (repeatable)")
        p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a request parameter (repeatable)")
        p.add_argument("--version", dest="model_version", default=None, help="model version (default: the latest)")
        p.add_argument("--endpoint", default=None, help="base URL (default: $TRITIUM_ENDPOINT)")
        p.add_argument("--api-key", default=None, help="API key (default: $TRITIUM_API_KEY)")
        p.add_argument("--timeout", type=float, default=None, help="seconds for the whole call (also the deadline)")
        p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
        p.add_argument("--ca-bundle", "--cacert", dest="ca_bundle", default=None, metavar="FILE",
                       help="CA certificate(s) (PEM) to verify the server's TLS certificate with, e.g. the "
                            "issuer of the gateway's spec.security.tls Secret (--cacert as in curl)")
        p.add_argument("--json", action="store_true",
                       help="print JSON (invoke: the response; stream: one line per chunk)")
        p.set_defaults(func=func)


def _value(text: str, what: str) -> Any:
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path) as f:
                return json.load(f)
        except OSError as exc:
            raise UsageError(f"{what}: {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{what}: {path} is not JSON: {exc}") from None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(items: list[str], flag: str) -> dict[str, Any]:
    """``["NAME=VALUE", ...]`` -> ``{NAME: value}`` (JSON values, else strings); UsageError names a bad one."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{flag} {item!r}: expected NAME=VALUE")
        if name in out:
            raise UsageError(f"{flag} {name}: given twice")
        out[name] = _value(raw, f"{flag} {name}")
    return out


def _client(args: argparse.Namespace) -> InferenceClient:
    from tritium.client import InferenceClient

    verify: bool | str = False if args.insecure else (args.ca_bundle or True)
    try:
        return InferenceClient(endpoint=args.endpoint, api_key=args.api_key, verify=verify)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    inputs = parse_pairs(args.input, "--input")
    if not inputs:
        raise UsageError("give at least one --input NAME=VALUE")
    return inputs, parse_pairs(args.param, "--param")


def _fail(command: str, exc: TritiumError) -> int:
    """One line on stderr; exit 2 when the request is at fault, 1 otherwise."""
    if exc.status_code in (400, 404, 413, 415):
        raise UsageError(str(exc)) from None
    print(f"tritium {command}: {exc}", file=sys.stderr)
    return EXIT_SERVER_ERROR


def _cell(value: Any) -> str:
    text = json.dumps(value.tolist() if hasattr(value, "tolist") else value, separators=(", ", ": "))
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."


def _describe(value: Any) -> tuple[str, str]:
    """(type, shape) of an output for the table."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return str(value.dtype), "x".join(str(d) for d in value.shape) or "scalar"
    return type(value).__name__, str(len(value)) if isinstance(value, list) else "-"


def format_table(response: Response) -> str:
    """The outputs as an aligned table (name, type, shape, value), then the text when there is one."""
    rows = [("OUTPUT", "TYPE", "SHAPE", "VALUE")]
    for name, value in response.outputs.items():
        rows.append((name, *_describe(value), _cell(value)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows]
    if not response.outputs:
        lines = []
    if response.text is not None:
        lines.append(f"text: {response.text}")
    return "\n".join(lines)


def cmd_invoke(args: argparse.Namespace) -> int:
    from tritium.client import TritiumError

    inputs, params = _request(args)
    with _client(args) as client:
        try:
            response = client.invoke(args.model, inputs, params or None, version=args.model_version,
                                     timeout=args.timeout)
        except TritiumError as exc:
            return _fail("invoke", exc)
    if args.json:
        doc = response.json() if response.is_json else {"body": response.text}
        meta = {"request_id": response.request_id, "latency_ms": round(response.latency_ms, 3),
                "cached": response.cached, "revision": response.revision}
        print(json.dumps({**doc, **meta} if isinstance(doc, dict) else {"body": doc, **meta}))
    else:
        print(format_table(response))
        print(f"request {response.request_id}  revision {response.revision}  "
              f"cache {'hit' if response.cached else 'miss'}  {response.latency_ms:.1f} ms", file=sys.stderr)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from tritium.client import TritiumError

    inputs, params = _request(args)
    out = sys.stdout
    wrote_text = False
    with _client(args) as client, client.stream(args.model, inputs, params or None, version=args.model_version,
                                                timeout=args.timeout) as chunks:
        try:
            for chunk in chunks:
                if args.json:
                    out.write(json.dumps(chunk.data) + "\n")
                elif chunk.text is not None:
                    out.write(chunk.text)
                    wrote_text = True
                else:
                    out.write(json.dumps(chunk.data.get("outputs") if isinstance(chunk.data, dict) else chunk.data)
                              + "\n")
                out.flush()
        except TritiumError as exc:
            if wrote_text:
                out.write("\n")
                out.flush()
            return _fail("stream", exc)
    if wrote_text:
        out.write("\n")
    return 0
