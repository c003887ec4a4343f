"""`tritium promote|abort|pause|resume|status NAME`: a person's hand on a rollout, from a terminal.

The commands only write the annotations of rollout/commands.py (a JSON merge patch of
metadata.annotations) and read status: the operator stays the one that acts, so `kubectl
annotate`, these commands and a commit in Git all mean the same thing. ``promote`` and ``abort``
read the canary revision from status and name it, so a command typed for one rollout never acts
on a later one.

Exit codes: 0 done; 1 the service is missing, has no canary in flight (promote, abort), is not
paused (resume), or the API server refused or could not be reached; 2 bad input (unusable
kubeconfig, unknown context, a namespace that is not a DNS label). The kubernetes client is
imported only when one of these commands runs, so `tritium --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from tritium.cli import UsageError

# tritium.api, tritium.render and tritium.rollout (the names used below) import pydantic and the
# CEL evaluator: half a second that `tritium --help` should not pay, so they are imported in use.

EXIT_FAILED = 1
_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_REQUEST_TIMEOUT = 15.0  # seconds per API call: a terminal command must not hang on a dead server
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # RFC 1123 label: what a namespace name must be


class CommandFailed(Exception):
    """The cluster said no (missing object, no canary, HTTP error): one line, exit code 1."""


class Cluster(Protocol):
    """The calls the commands make; tests put a fake in its place."""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService as stored, or None when it does not exist."""
        ...

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the InferenceService; the object as stored afterwards."""
        ...

    def deployments(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The per-revision Deployments of the service (selected by its label)."""
        ...

    def namespace_exists(self, namespace: str) -> bool | None:
        """Whether the namespace exists; None when that cannot be told (reading namespaces forbidden)."""
        ...


# -- credentials ------------------------------------------------------------------------------


def kubeconfig_path(explicit: str | None) -> str:
    """As kubectl: --kubeconfig, else $KUBECONFIG (a path list, merged), else ~/.kube/config."""
    return explicit or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _in_cluster(args: argparse.Namespace) -> bool:
    """No kubeconfig anywhere but a service account token: run as the pod's service account."""
    if args.kubeconfig or args.context or os.environ.get("KUBECONFIG"):
        return False
    return not Path("~/.kube/config").expanduser().exists() and (_SERVICE_ACCOUNT_DIR / "token").exists()


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's several-line error as one line: what is wrong, and where."""
    context = getattr(exc, "context", None)
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = ", ".join(str(part) for part in (context, problem) if part) or " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {what}"


def kubeconfig_problem(path: str) -> str | None:
    """What makes the kubeconfig ``path`` (a path list, as $KUBECONFIG) unusable, in one line; None if nothing.

    The kubernetes client says "No configuration found" for a file that does not exist and lets
    PyYAML's errors through as tracebacks; this names the file and the problem instead.
    """
    files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
    existing = [f for f in files if os.path.exists(f)]
    if not existing:
        return f"kubeconfig {path} does not exist" if len(files) <= 1 else f"none of the kubeconfig files {path} exists"
    import yaml

    for file in existing:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            return f"cannot read the kubeconfig {file}: {exc.strerror or exc}"
        except UnicodeDecodeError:
            return f"kubeconfig {file} is not UTF-8 text"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return f"kubeconfig {file} is {_yaml_problem(exc)}"
        if data is None:
            return f"kubeconfig {file} is empty"
        if not isinstance(data, dict):
            return f"kubeconfig {file} is not a kubeconfig: a YAML {type(data).__name__}, not a mapping"
    return None


def _credentials_error(path: str, exc: Exception) -> UsageError:
    """The kubernetes client's complaint about a kubeconfig (a ConfigException, a KeyError...) as one line."""
    detail = f"no {exc} entry" if isinstance(exc, KeyError) else " ".join(str(exc).split()) or type(exc).__name__
    return UsageError(f"cannot use the Kubernetes credentials in {path}: {detail}")


def kubeconfig_namespace(path: str, context: str | None) -> str:
    """The namespace of the chosen context (kubectl's default for -n), else "default"."""
    from kubernetes import config

    problem = kubeconfig_problem(path)
    if problem:
        raise UsageError(problem)
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
    except Exception as exc:  # a ConfigException, or a KeyError/TypeError from a malformed file
        raise _credentials_error(path, exc) from None
    wanted = context or (current or {}).get("name")
    found = next((c for c in contexts or [] if c.get("name") == wanted), None)
    if found is None:
        raise UsageError(f"context {wanted!r} not found in {path}" if wanted else f"{path} sets no current-context")
    return str((found.get("context") or {}).get("namespace") or "default")


def check_namespace(namespace: str) -> str:
    """A namespace name must be an RFC 1123 label: refuse another before asking the API server."""
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise UsageError(f"invalid namespace {namespace!r}: a namespace is at most 63 lowercase letters, digits "
                         "and '-', starting and ending with a letter or digit")
    return namespace


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it: urllib3's ``reason``, then ``__cause__``/``__context__``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (getattr(current, "reason", None), current.__cause__, current.__context__)
                    if isinstance(e, BaseException))


def connection_failure(exc: BaseException, timeout: float = _REQUEST_TIMEOUT) -> str:
    """Why a request did not reach the API server, without urllib3's wrapper text: "connection refused"."""
    chain = list(_chain(exc))
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return f"no answer within {timeout:g} s"
    for e in reversed(chain):  # the root cause last
        if isinstance(e, OSError) and e.strerror:
            reason = str(getattr(e, "verify_message", None) or e.strerror)
            return reason[:1].lower() + reason[1:]
    root = chain[-1]
    text = " ".join(str(root).split()) or type(root).__name__
    return text.rsplit(": ", 1)[-1] if "object at 0x" in text else text


class KubeCluster:
    """The kubernetes client on the user's credentials; raw JSON in and out, so no field is lost."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._apps = client.AppsV1Api(api_client)

    def close(self) -> None:
        self._api_client.close()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from kubernetes.client.rest import ApiException

        try:
            yield
        except CommandFailed:
            raise
        except ApiException as exc:
            raise CommandFailed(f"{what}: {_api_error(exc)}") from None
        except Exception as exc:  # urllib3 connection errors and timeouts have no common base worth importing
            host = self._api_client.configuration.host
            raise CommandFailed(f"cannot reach the Kubernetes API at {host}: {connection_failure(exc)}") from None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        from tritium.api.resource import GROUP, PLURAL, SINGULAR, VERSION

        with self._errors(f"reading {SINGULAR} {namespace}/{name}"):
            try:
                response = self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False, _request_timeout=_REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404 and _is_object_not_found(exc):
                    return None
                if exc.status == 404:
                    raise CommandFailed(f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: is the "
                                        "CRD installed? (tritium crd --check)") from None
                raise
            return _json(response)

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from tritium.api.resource import GROUP, PLURAL, SINGULAR, VERSION

        with self._errors(f"patching {SINGULAR} {namespace}/{name}"):
            response = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json",
                _preload_content=False, _request_timeout=_REQUEST_TIMEOUT)
            return _json(response)

    def deployments(self, namespace: str, name: str) -> list[dict[str, Any]]:
        from tritium.api.resource import SINGULAR
        from tritium.render.metadata import LABEL_ISVC

        with self._errors(f"listing the deployments of {SINGULAR} {namespace}/{name}"):
            response = self._apps.list_namespaced_deployment(
                namespace, label_selector=f"{LABEL_ISVC}={name}", _preload_content=False,
                _request_timeout=_REQUEST_TIMEOUT)
            items: list[dict[str, Any]] = _json(response).get("items") or []
            return items

    def namespace_exists(self, namespace: str) -> bool | None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            client.CoreV1Api(self._api_client).read_namespace(
                namespace, _preload_content=False, _request_timeout=_REQUEST_TIMEOUT)
        except ApiException as exc:
            return False if exc.status == 404 else None  # 403: this user may not read namespaces
        except Exception:  # the server went away since the first call: the plain "not found" stands
            return None
        return True


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def _api_error(exc: Any) -> str:
    """``HTTP 403 Forbidden: <the server's message>``: the Status message says which permission."""
    message = ""
    with contextlib.suppress(ValueError, TypeError):
        message = str(json.loads(exc.body).get("message") or "")
    return f"HTTP {exc.status} {exc.reason}" + (f": {message}" if message else "")


def _is_object_not_found(exc: Any) -> bool:
    """A 404 about the object itself, not about the API (the CRD not installed answers 404 too)."""
    try:
        details = json.loads(exc.body).get("details") or {}
    except (ValueError, TypeError, AttributeError):
        return False
    return bool(details.get("name"))


def connect(args: argparse.Namespace) -> tuple[Cluster, str]:
    """The cluster on kubectl's credentials and the namespace to work in (-n, else the context's)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    if args.namespace is not None:
        check_namespace(args.namespace)
    if _in_cluster(args):
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise UsageError(f"cannot use the in-cluster service account: {exc}") from None
        namespace = args.namespace or _service_account_namespace()
        return KubeCluster(client.ApiClient(configuration)), namespace
    path = kubeconfig_path(args.kubeconfig)
    problem = kubeconfig_problem(path)
    if problem:
        raise UsageError(problem)
    namespace = args.namespace or kubeconfig_namespace(path, args.context)
    try:
        api_client = config.new_client_from_config(config_file=path, context=args.context, persist_config=False)
    except Exception as exc:  # a ConfigException, or a KeyError/TypeError from a malformed file
        raise _credentials_error(path, exc) from None
    return KubeCluster(api_client), namespace


def _service_account_namespace() -> str:
    try:
        return (_SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


# -- the commands -----------------------------------------------------------------------------


def annotation_patch(annotations: Mapping[str, str | None]) -> dict[str, Any]:
    """A merge patch of metadata.annotations; None removes an annotation."""
    return {"metadata": {"annotations": dict(annotations)}}


def _service(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    from tritium.api.resource import SINGULAR

    found = cluster.get(namespace, name)
    if found is None:
        if cluster.namespace_exists(namespace) is False:
            raise CommandFailed(f"{SINGULAR} {namespace}/{name} not found: namespace {namespace} does not exist")
        raise CommandFailed(f"{SINGULAR} {namespace}/{name} not found")
    return found


def _canary(obj: Mapping[str, Any], namespace: str, name: str, verb: str) -> str:
    """The canary in flight; promote and abort without one is a mistake worth saying."""
    status = obj.get("status") or {}
    canary = status.get("canaryRevision")
    if not canary:
        stable = status.get("stableRevision")
        where = f" (stable revision {stable})" if stable else ""
        raise CommandFailed(f"no canary in flight for {namespace}/{name}{where}: nothing to {verb}")
    return str(canary)


def _run(args: argparse.Namespace, action: Callable[[Cluster, str], str]) -> int:
    """Connect, act, print the one line that says what was asked; a refusal is one line, exit 1."""
    cluster, namespace = connect(args)
    try:
        print(action(cluster, namespace))
    except CommandFailed as exc:
        print(f"tritium {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close = getattr(cluster, "close", None)
        if close is not None:
            close()
    return 0


def _command_for_canary(args: argparse.Namespace, annotation: str, verb: str) -> int:
    """Annotate the service with ``annotation`` = its canary revision (promote and abort alike)."""

    def ask(cluster: Cluster, namespace: str) -> str:
        canary = _canary(_service(cluster, namespace, args.name), namespace, args.name, verb)
        cluster.patch(namespace, args.name, annotation_patch({annotation: canary}))
        return f"{verb} requested: revision {canary} of {namespace}/{args.name}"

    return _run(args, ask)


def cmd_promote(args: argparse.Namespace) -> int:
    from tritium.rollout.commands import PROMOTE

    return _command_for_canary(args, PROMOTE, "promote")


def cmd_abort(args: argparse.Namespace) -> int:
    from tritium.rollout.commands import ABORT

    return _command_for_canary(args, ABORT, "abort")


def _is_paused(obj: Mapping[str, Any]) -> bool:
    from tritium.rollout.commands import commands_from

    return commands_from((obj.get("metadata") or {}).get("annotations")).paused


def cmd_pause(args: argparse.Namespace) -> int:
    from tritium.rollout.commands import PAUSED

    # The annotation holds until resume: without a canary in flight the operator starts the next
    # rollout's canary and stops it at its first step (rollout/machine.py, Canary -> Paused).
    def pause(cluster: Cluster, namespace: str) -> str:
        obj = _service(cluster, namespace, args.name)
        cluster.patch(namespace, args.name, annotation_patch({PAUSED: "true"}))
        if not (obj.get("status") or {}).get("canaryRevision"):
            return (f"paused {namespace}/{args.name}: no canary in flight, so the next rollout waits at its first "
                    "step until resume")
        return f"pause requested: {namespace}/{args.name}"

    return _run(args, pause)


def cmd_resume(args: argparse.Namespace) -> int:
    from tritium.rollout.commands import PAUSED

    def resume(cluster: Cluster, namespace: str) -> str:
        obj = _service(cluster, namespace, args.name)
        if not _is_paused(obj):
            rollout = (obj.get("status") or {}).get("rollout") or {}
            waiting = ""
            if rollout.get("phase") == "Paused" and rollout.get("reason"):
                waiting = f" (its rollout waits for promote or abort: {rollout['reason']})"
            raise CommandFailed(f"{namespace}/{args.name} is not paused, nothing to resume{waiting}")
        cluster.patch(namespace, args.name, annotation_patch({PAUSED: None}))
        return f"resume requested: {namespace}/{args.name}"

    return _run(args, resume)


def cmd_status(args: argparse.Namespace) -> int:
    def status(cluster: Cluster, namespace: str) -> str:
        obj = _service(cluster, namespace, args.name)
        return format_status(obj, cluster.deployments(namespace, args.name))

    return _run(args, status)


# -- the status tables ------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, the last one unpadded (no trailing blanks)."""
    cells = [[" ".join(str(c).split()) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
                     for row in cells)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def revision_rows(obj: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row per revision: its role, its share of traffic, and its Deployment's replicas."""
    from tritium.render.metadata import LABEL_REVISION

    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    canary = status.get("canaryRevision")
    canary_weight = int(status.get("canaryWeight") or 0) if canary else 0
    by_revision = {str(rev): d for d in deployments
                   if (rev := ((d.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION))}
    roles: dict[str, tuple[str, int | None]] = {}
    for revision, role, weight in (
        (status.get("stableRevision"), "stable", 100 - canary_weight),
        (canary, "canary", canary_weight),
        (rollout.get("previousRevision"), "previous", 0),
        (rollout.get("rejectedRevision"), "rejected", 0),
    ):
        if revision and revision not in roles and (role != "rejected" or revision in by_revision):
            roles[str(revision)] = (role, weight)
    for revision in sorted(by_revision):  # a Deployment status does not mention (being removed, say)
        roles.setdefault(revision, ("-", None))
    rows: list[tuple[str, ...]] = [("REVISION", "ROLE", "WEIGHT", "REPLICAS")]
    for revision, (role, weight) in roles.items():
        deployment = by_revision.get(revision)
        replicas = "-"
        if deployment is not None:
            desired = (deployment.get("spec") or {}).get("replicas", 1)
            ready = (deployment.get("status") or {}).get("readyReplicas") or 0
            replicas = f"{desired}/{ready}"
        rows.append((revision, role, "-" if weight is None else f"{weight} %", replicas))
    return rows


def rollout_rows(obj: Mapping[str, Any]) -> list[tuple[str, ...]] | None:
    """The rollout's phase and why, or None when the service never had one."""
    rollout = (obj.get("status") or {}).get("rollout")
    if not rollout:
        return None
    steps = ((obj.get("spec") or {}).get("rollout") or {}).get("steps") or []
    step = int(rollout.get("step") or 0) + 1  # stored as an index; people count from 1
    return [
        ("PHASE", "REVISION", "STEP", "FAILURES", "REASON", "MESSAGE"),
        (str(rollout.get("phase") or "-"), str(rollout.get("revision") or "-"), f"{step}/{max(len(steps), 1)}",
         str(rollout.get("failures") or 0), str(rollout.get("reason") or "-"), str(rollout.get("message") or "")),
    ]


def analysis_rows(obj: Mapping[str, Any]) -> list[tuple[str, ...]] | None:
    """The recent measurements, oldest first as status keeps them; None when there are none."""
    items = [i for i in (obj.get("status") or {}).get("analysis") or [] if isinstance(i, Mapping)]
    if not items:
        return None
    rows: list[tuple[str, ...]] = [("TIME", "REVISION", "RESULT", "REQUESTS", "ERROR RATIO", "P99 MS", "MESSAGE")]
    for item in items:
        rows.append((str(item.get("time") or "-"), str(item.get("revision") or "-"), str(item.get("result") or "-"),
                     _number(item.get("requests")), _number(item.get("errorRatio")),
                     _number(item.get("p99LatencyMs")), str(item.get("message") or "")))
    return rows


def why_not_ready(obj: Mapping[str, Any]) -> str | None:
    """The Ready condition's reason and message, on one line, when it is not True; else None."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), None)
    if ready is None or str(ready.get("status")) == "True":
        return None
    reason = str(ready.get("reason") or f"Ready={ready.get('status') or 'Unknown'}")
    message = " ".join(str(ready.get("message") or "").split())
    return f"{reason}: {message}" if message else reason


def format_status(obj: Mapping[str, Any], deployments: Sequence[Mapping[str, Any]]) -> str:
    """A heading line, then the revisions, the rollout and the analysis tables, blank lines between."""
    from tritium.api.resource import SINGULAR
    from tritium.rollout.commands import PAUSED

    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    heading = f"{SINGULAR} {meta.get('namespace', '')}/{meta.get('name', '')}: {status.get('phase') or 'no status yet'}"
    if status.get("replicas") is not None:
        heading += f", {status.get('readyReplicas') or 0}/{status['replicas']} replicas ready"
    paused = (meta.get("annotations") or {}).get(PAUSED, "").strip().lower() == "true"
    if paused:
        heading += " (paused by a person: tritium resume)"
    why = why_not_ready(obj)
    if why:
        heading += f"\nwhy: {why}"
    rollout = rollout_rows(obj)
    analysis = analysis_rows(obj)
    return "\n\n".join([
        heading,
        table(revision_rows(obj, deployments)),
        table(rollout) if rollout else "rollout: none yet",
        table(analysis) if analysis else "analysis: no measurements yet",
    ])


# -- registration -----------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, func, help_text in (
        ("promote", cmd_promote, "promote the canary in flight now (it becomes the stable revision)"),
        ("abort", cmd_abort, "roll the canary in flight back now"),
        ("pause", cmd_pause, "hold the canary at its current weight until resume, promote or abort"),
        ("resume", cmd_resume, "let a paused rollout go on"),
        ("status", cmd_status, "show the revisions, the rollout and the last analysis results"),
    ):
        p = subparsers.add_parser(
            name, help=help_text,
            epilog="Writes or reads only the InferenceService (annotations serving.tritium.dev/promote, "
                   "/abort, /paused); the operator acts on them. Exit codes: 0 ok, 1 not found, no canary, "
                   "not paused, or refused or not reached by the API server, 2 bad input.",
        )
        p.add_argument("name", metavar="NAME", help="the InferenceService")
        p.add_argument("-n", "--namespace", default=None,
                       help="its namespace (default: the kubeconfig context's, else 'default')")
        p.add_argument("--context", default=None, help="the kubeconfig context to use (default: the current one)")
        p.add_argument("--kubeconfig", default=None,
                       help="path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
        p.set_defaults(func=func)
