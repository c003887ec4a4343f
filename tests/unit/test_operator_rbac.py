"""The operator's RBAC is exactly what its code uses: derived from the code, compared with the chart.

Nothing here lists the operator's permissions by hand. The (apiGroup, resource, verb) it needs are
derived from the code in four parts, and the rules `helm template` renders for the operator's
ServiceAccount (cluster-wide and namespaced) must equal them: a permission the code needs and the
chart lacks fails, and so does one the chart grants and nothing uses. The user-facing aggregated
view/edit roles are not bound to the operator and are not compared.

1. kopf's handlers. Importing the controller modules that use kopf's decorators registers their
   handlers in kopf's default registry, and each handler's selector is a resource kopf lists and
   watches; resource-changing handlers (create/update/resume/delete) and daemons/timers would make
   kopf patch that resource too (its finalizer) and its status subresource (progress and
   diff-base); the operator has none (it is level-triggered), but kopf still removes the finalizer
   earlier versions put on InferenceServices (part 3).
   The registry rather than an `ast` walk of the decorators, because handlers.py applies
   `kopf.index` and `kopf.on.event` in factories over CHILD_KINDS: the resources are computed at
   import, and the registry holds exactly what kopf will watch.
2. The operator's own calls, by an `ast` walk of every module under tritium/controller. kube.py's
   KubeClient is parsed for what each method sends (HTTP method, `object_path` with or without a
   name, subresource, server-side apply, which also creates), and every call of one of those
   methods on a `client` gives the kind: a literal, an object literal, a call of a function of
   the same module whose returned dict names the kind, or one of the dynamic expressions in
   DYNAMIC_KINDS, each resolved from the code that produces it (the kinds render/ renders, the
   kinds handlers.py indexes, the kinds api/checks.py references). The kind's group and plural
   come from kube.RESOURCES. A call whose kind cannot be resolved, a raw `_request` the test does
   not know, an API client other than KubeClient, or a KubeClient held under another name fails
   the test instead of being skipped. (No registry of calls was added to the controller: the
   call sites name their kinds plainly enough to be read as they are.)
3. What kopf itself does besides the handlers (from kopf's own source): the finalizer of
   `settings.persistence.finalizer` removed where no handler needs it, the resource observer
   lists and watches CRDs, the namespace observer lists and watches namespaces when not
   cluster-wide, posting creates core v1 Events, and peering lists, watches and patches the
   (Cluster)KopfPeering; the peering object calls of `ensure_peering` are parsed as in part 2,
   with the paths `peering_paths` returns. The operator's mode (namespaces, peering name) is read
   from the rendered Deployment's arguments, as `tritium operator` would receive them.
4. Admission: children carry an ownerReference with blockOwnerDeletion (render.metadata, called
   here), and the OwnerReferencesPermissionEnforcement admission plugin then requires "update" on
   the owner's finalizers subresource.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kopf._cogs.structs import references as kopf_references

from tests.support.helm import CHART, NAMESPACE, REPO, VALUES_DIR, template
from tritium.api.resource import parse_inference_service
from tritium.controller import kube
from tritium.controller.main import peering_paths
from tritium.render.metadata import owner_references

SOURCE = REPO / "operator" / "tritium"
CONTROLLER = SOURCE / "controller"

Perm = tuple[str, str, str]  # (apiGroup, resource, verb)
Needs = dict[Perm, set[str]]  # what is needed -> why (file:line or kopf's part)

# Kubernetes built-in resources that are cluster-scoped (a fact of Kubernetes, not of this code);
# the chart's CRDs say their own scope.
CLUSTER_SCOPED_BUILTINS = {
    ("", "namespaces"), ("", "nodes"), ("", "persistentvolumes"),
    ("apiextensions.k8s.io", "customresourcedefinitions"), ("apiregistration.k8s.io", "apiservices"),
    ("rbac.authorization.k8s.io", "clusterroles"), ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("storage.k8s.io", "storageclasses"), ("scheduling.k8s.io", "priorityclasses"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
}
HTTP_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


# --- the chart's CRDs: scope and subresources of the custom resources --------------------------


@cache
def chart_crds() -> dict[tuple[str, str], dict[str, Any]]:
    crds = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                crds[(doc["spec"]["group"], doc["spec"]["names"]["plural"])] = doc
    return crds


def cluster_scoped(group: str, resource: str) -> bool:
    key = (group, resource.split("/")[0])
    crd = chart_crds().get(key)
    if crd is not None:
        return bool(crd["spec"]["scope"] == "Cluster")
    return key in CLUSTER_SCOPED_BUILTINS


def has_status_subresource(group: str, plural: str) -> bool:
    crd = chart_crds().get((group, plural))
    if crd is None:
        return True  # built-in kinds with a status have it as a subresource
    return any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"])


# --- part 1: kopf's handlers, from kopf's registry ----------------------------------------------


def _uses_kopf_decorators(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and ast.unparse(node.value) == "kopf.on" and node.attr not in ("login", "startup", "cleanup", "probe")):
            return True
        if isinstance(node, ast.Attribute) and ast.unparse(node) in ("kopf.index", "kopf.timer", "kopf.daemon"):
            return True
    return False


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(CONTROLLER.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts)


def kopf_handlers() -> list[tuple[str, Any]]:
    """(registry category, handler) of every resource handler the controller registers."""
    modules = {_module_name(p) for p, tree in _modules() if _uses_kopf_decorators(tree)}
    assert "tritium.controller.handlers" in modules
    for name in modules:
        importlib.import_module(name)
    registry = kopf.get_default_registry()
    found = []
    for category in ("_changing", "_watching", "_indexing", "_spawning", "_webhooks"):
        for handler in getattr(registry, category).get_all_handlers():
            if handler.fn.__module__ in modules:
                found.append((category, handler))
    return found


def _plural(selector: Any) -> str:
    plural = selector.plural or selector.any_name
    assert plural and plural == plural.lower(), f"name the plural in the kopf decorator, not {plural!r}"
    return str(plural)


# --- part 2: the operator's own calls, by an ast walk -------------------------------------------


@dataclass(frozen=True)
class Sends:
    """One request a KubeClient method sends."""

    http: str
    path: str  # "object" (object_path(...)) or "discovery" (an API group's resource list)
    kind_param: str = ""  # the method's parameter that is the kind ...
    object_param: str = ""  # ... or the object whose "kind" it is
    named: bool = False
    subresource: str = ""
    apply: bool = False

    def verbs(self) -> list[str]:
        verb = HTTP_VERBS[self.http]
        if self.http == "GET" and not self.named:
            verb = "list"
        if self.http == "DELETE" and not self.named:
            verb = "deletecollection"
        # Server-side apply of an object that does not exist yet is authorized as create too.
        return [verb, "create"] if self.apply else [verb]


def _kube_client_methods() -> dict[str, tuple[list[str], list[Sends]]]:
    """KubeClient method -> (its parameters, the requests it sends), from kube.py's source."""
    tree = ast.parse(Path(kube.__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KubeClient")
    methods: dict[str, tuple[list[str], list[Sends]]] = {}
    for fn in cls.body:
        if not isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef) or fn.name == "_request":
            continue
        params = [a.arg for a in fn.args.args[1:]] + [a.arg for a in fn.args.kwonlyargs]
        # `prefix, plural = RESOURCES[kind]`: prefix is an API group version's discovery path.
        prefixes = {
            t.elts[0].id for t in (n.targets[0] for n in ast.walk(fn) if isinstance(n, ast.Assign))
            if isinstance(t, ast.Tuple) and isinstance(t.elts[0], ast.Name)
        }
        sends = []
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "self._request"):
                continue
            method, path = call.args[0], call.args[1]
            assert isinstance(method, ast.Constant), f"KubeClient.{fn.name}: HTTP method not a literal"
            keywords = {k.arg: k.value for k in call.keywords}
            content = keywords.get("content_type")
            apply = isinstance(content, ast.Constant) and content.value == APPLY_CONTENT_TYPE
            if isinstance(path, ast.Name) and path.id in prefixes:
                assert method.value == "GET", f"KubeClient.{fn.name}: {method.value} to a discovery path"
                sends.append(Sends(method.value, "discovery"))
                continue
            assert isinstance(path, ast.Call) and ast.unparse(path.func) == "object_path", (
                f"KubeClient.{fn.name}: a request whose path is not object_path(...): teach this test what it is"
            )
            kind, *rest = path.args
            named = len(rest) >= 2 and not (isinstance(rest[1], ast.Constant) and rest[1].value is None)
            sub = rest[2].value if len(rest) >= 3 and isinstance(rest[2], ast.Constant) else ""
            if isinstance(kind, ast.Name):
                sends.append(Sends(method.value, "object", kind_param=kind.id, named=named, subresource=sub,
                                   apply=apply))
            else:
                assert isinstance(kind, ast.Subscript) and isinstance(kind.value, ast.Name), ast.unparse(kind)
                assert ast.unparse(kind.slice) == "'kind'", ast.unparse(kind)
                sends.append(Sends(method.value, "object", object_param=kind.value.id, named=named,
                                   subresource=sub, apply=apply))
        if sends:
            methods[fn.name] = (params, sends)
    return methods


def rendered_kinds() -> set[str]:
    """Kinds of the objects render/ builds: dict literals with apiVersion, kind and metadata."""
    kinds = set()
    for path in sorted((SOURCE / "render").glob("*.py")):
        tree = ast.parse(path.read_text())
        constants = {  # module-level NAME = "literal"
            t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict):
                continue
            keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)}
            if {"apiVersion", "kind", "metadata"} <= keys.keys():
                kind = keys["kind"]
                if isinstance(kind, ast.Name) and kind.id in constants:
                    kinds.add(constants[kind.id])
                    continue
                assert isinstance(kind, ast.Constant), f"{path.name}:{kind.lineno}: a rendered kind, not a literal"
                kinds.add(kind.value)
    return kinds


def watched_child_kinds() -> set[str]:
    """The kinds handlers.py indexes as children (ChildRef.kind holds one of them)."""
    from tritium.controller.handlers import CHILD_KINDS

    return set(CHILD_KINDS)


def referenced_kinds() -> set[str]:
    """The kinds api/checks.py references (Reference("Secret", ...), Reference("ConfigMap", ...))."""
    tree = ast.parse((SOURCE / "api" / "checks.py").read_text())
    kinds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Reference":
            kind = node.args[0]
            assert isinstance(kind, ast.Constant), "Reference(...) with a kind that is not a literal"
            kinds.add(kind.value)
    return kinds


# Kinds at call sites that are not literals: (module, expression) -> the code that says which kinds
# it can hold. A call site not named here fails the test until it is added.
DYNAMIC_KINDS: dict[tuple[str, str], Callable[[], set[str]]] = {
    ("reconcile.py", "obj"): rendered_kinds,  # Reconciler._apply(obj): each object render_children returns
    ("reconcile.py", "child.kind"): watched_child_kinds,  # children from the indexes (prune, deletion)
    ("reconcile.py", "old.kind"): watched_child_kinds,  # the autoscaler handed over (a child too)
    ("reconcile.py", "ref.kind"): referenced_kinds,  # the Secrets and ConfigMaps a spec refers to
}
# Raw `client._request` calls outside kube.py: the function whose paths they loop over, called
# with the operator's (namespaces, peering name).
RAW_PATHS: dict[tuple[str, str], Callable[[list[str], str | None], list[str]]] = {
    ("main.py", "peering_paths"): lambda ns, peering: [p for p, _ in peering_paths(peering, ns)] if peering else [],
}


def _returned_kinds(tree: ast.Module, name: str) -> set[str]:
    """The "kind" of the dict a module-level function of this module returns."""
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    assert fn is not None, f"{name} is not a function of this module"
    kinds = set()
    for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)):
        for k, v in zip(ret.value.keys, ret.value.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == "kind" and isinstance(v, ast.Constant):
                kinds.add(v.value)
    assert kinds, f"{name} returns no dict with a literal kind"
    return kinds


def _is_client(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "client") or (
        isinstance(node, ast.Attribute) and node.attr == "client"
    )


def _check_client_names(path: Path, tree: ast.Module) -> None:
    """A KubeClient is only ever held as `client` or `<x>.client`, so that every call is seen."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None and "KubeClient" in ast.unparse(node.annotation):
            assert node.arg == "client", f"{path.name}:{node.lineno}: a KubeClient parameter must be named client"
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            held = value is not None and (
                _is_client(value) or (isinstance(value, ast.Call) and ast.unparse(value.func) == "KubeClient")
            )
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if held:
                assert all(_is_client(t) for t in targets), (
                    f"{path.name}:{node.lineno}: a KubeClient must be held as client or <x>.client"
                )
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("kubernetes", "kubernetes_asyncio", "pykube") for n in names), (
                f"{path.name}:{node.lineno}: the controller calls the API through KubeClient only"
            )
            assert not any(n.startswith("kopf._cogs.clients") for n in names), (
                f"{path.name}:{node.lineno}: kopf's API clients are not part of what this test derives"
            )


def _argument(call: ast.Call, params: list[str], param: str) -> ast.expr:
    for k in call.keywords:
        if k.arg == param:
            return k.value
    index = params.index(param)
    before = call.args[: index + 1]
    assert not any(isinstance(a, ast.Starred) for a in before), f"line {call.lineno}: {param} passed through *args"
    assert len(call.args) > index, f"line {call.lineno}: no {param} argument"
    return call.args[index]


def _kinds_of(path: Path, tree: ast.Module, expr: ast.expr) -> set[str]:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        return _returned_kinds(tree, expr.func.id)
    if isinstance(expr, ast.Dict):  # an object written out at the call
        kinds = {v.value for k, v in zip(expr.keys, expr.values, strict=True)
                 if isinstance(k, ast.Constant) and k.value == "kind" and isinstance(v, ast.Constant)}
        assert kinds, f"{path.name}:{expr.lineno}: an object without a literal kind"
        return kinds
    source = DYNAMIC_KINDS.get((path.name, ast.unparse(expr)))
    assert source is not None, (
        f"{path.name}:{expr.lineno}: cannot tell which kinds `{ast.unparse(expr)}` can be: add it to DYNAMIC_KINDS"
    )
    return source()


def _group_resource(kind: str) -> tuple[str, str]:
    assert kind in kube.RESOURCES, f"{kind} is not in kube.RESOURCES"
    prefix, plural = kube.RESOURCES[kind]
    parts = prefix.strip("/").split("/")  # api/v1 or apis/GROUP/VERSION
    return ("" if parts[0] == "api" else parts[1]), plural


def _resource_of_path(path: str) -> tuple[str, str]:
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    return group, rest[0]


def _raw_request(path: Path, tree: ast.Module, call: ast.Call, namespaces: list[str],
                 peering: str | None) -> list[tuple[Perm, str]]:
    """A `client._request(METHOD, PATH)` outside kube.py, inside `for collection, _ in f(...)`."""
    where = f"{path.name}:{call.lineno}"
    method, url = call.args[0], call.args[1]
    assert isinstance(method, ast.Constant), f"{where}: HTTP method not a literal"
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.AsyncFor) and call in list(ast.walk(n))]
    assert loops, f"{where}: a raw request this test does not know: use a KubeClient method"
    loop = loops[-1]
    assert isinstance(loop.iter, ast.Call) and isinstance(loop.iter.func, ast.Name), where
    paths = RAW_PATHS.get((path.name, loop.iter.func.id))
    assert paths is not None, f"{where}: raw requests to the paths of {loop.iter.func.id}(): add it to RAW_PATHS"
    target = loop.target.elts[0] if isinstance(loop.target, ast.Tuple) else loop.target
    assert isinstance(target, ast.Name), where
    if isinstance(url, ast.Name) and url.id == target.id:
        named = False
    else:
        assert isinstance(url, ast.JoinedStr), f"{where}: unrecognised path {ast.unparse(url)}"
        first = url.values[0]
        assert isinstance(first, ast.FormattedValue) and ast.unparse(first.value) == target.id, where
        named = True
    verb = HTTP_VERBS[method.value]
    if method.value == "GET" and not named:
        verb = "list"
    return [((*_resource_of_path(p), verb), where) for p in paths(namespaces, peering)]


def own_calls(namespaces: list[str], peering: str | None) -> list[tuple[Perm, str]]:
    """Every (group, resource, verb) the operator's own code requests, with where."""
    methods = _kube_client_methods()
    found: list[tuple[Perm, str]] = []
    for path, tree in _modules():
        _check_client_names(path, tree)
        if path.name == "kube.py":
            continue
        for call in ast.walk(tree):
            is_call = isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            if not (is_call and _is_client(call.func.value)):
                continue
            name, where = call.func.attr, f"{path.name}:{call.lineno}"
            if name == "_request":
                found += _raw_request(path, tree, call, namespaces, peering)
                continue
            if name not in methods:
                continue  # set_credentials, close: no request
            params, sends = methods[name]
            for send in sends:
                if send.path == "discovery":
                    continue  # /apis/GROUP/VERSION: a non-resource URL every authenticated user may read
                expr = _argument(call, params, send.kind_param or send.object_param)
                for kind in sorted(_kinds_of(path, tree, expr)):
                    group, plural = _group_resource(kind)
                    resource = f"{plural}/{send.subresource}" if send.subresource else plural
                    found += [((group, resource, verb), f"{where} client.{name}") for verb in send.verbs()]
    return found


# --- parts 3 and 4, and the whole -----------------------------------------------------------------


def _settings() -> dict[str, Any]:
    """`settings.SECTION.NAME = value` assignments of the startup handlers: a literal's value, else
    the expression's source."""
    out: dict[str, Any] = {}
    for _, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                text = ast.unparse(node.targets[0])
                if text.startswith("settings."):
                    value = node.value.value if isinstance(node.value, ast.Constant) else ast.unparse(node.value)
                    out[text.removeprefix("settings.")] = value
    return out


def operator_needs(namespaces: list[str], peering: str | None) -> Needs:
    needs: Needs = defaultdict(set)

    def add(group: str, resource: str, verbs: tuple[str, ...] | list[str], why: str) -> None:
        for verb in verbs:
            needs[(group, resource, verb)].add(why)

    clusterwide = not namespaces
    for category, handler in kopf_handlers():
        assert category != "_webhooks", "admission webhooks need RBAC this test does not derive yet"
        group, plural = handler.selector.group, _plural(handler.selector)
        add(group, plural, ("list", "watch"), f"kopf watches it for handler {handler.id}")
        if category in ("_changing", "_spawning"):
            add(group, plural, ("patch",), f"kopf patches its finalizer for handler {handler.id}")
            if has_status_subresource(group, plural):
                add(group, f"{plural}/status", ("patch",), f"kopf keeps handler {handler.id}'s progress in status")

    settings = _settings()
    if "persistence.finalizer" in settings:
        # kopf removes its finalizer from any object it sees that carries it while no handler needs
        # it: earlier versions of the operator put it on InferenceServices.
        isvc_group, isvc_plural = "serving.tritium.dev", "inferenceservices"
        add(isvc_group, isvc_plural, ("patch",), "kopf removes the finalizer earlier versions put on services")
    if not settings.get("scanning.disabled", False):
        crds = kopf_references.CRDS
        add(crds.group, _plural(crds), ("list", "watch"), "kopf's resource observer")
        if not clusterwide:
            ns = kopf_references.NAMESPACES
            add(ns.group, _plural(ns), ("list", "watch"), "kopf's namespace observer (not cluster-wide)")
    if settings.get("posting.enabled", True):
        events = kopf_references.EVENTS
        add(events.group, _plural(events), ("create",), "kopf posts Events")
    if peering is not None:
        selector = kopf_references.CLUSTER_PEERINGS_K if clusterwide else kopf_references.NAMESPACED_PEERINGS_K
        group, plural = selector.group, _plural(selector)
        add(group, plural, ("list", "watch", "patch"), "kopf's peering (keep-alive in the peering object)")
        if has_status_subresource(group, plural):
            add(group, f"{plural}/status", ("patch",), "kopf's peering keep-alive in status")

    isvc = parse_inference_service({
        "apiVersion": "serving.tritium.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns", "uid": "0000"},
        "spec": {"model": {"name": "m", "storageUri": "gs://bucket/m", "format": "onnx"}},
    })
    for ref in owner_references(isvc):
        if ref.get("blockOwnerDeletion"):
            group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
            plural = _group_resource(ref["kind"])[1]
            add(group, f"{plural}/finalizers", ("update",), "children block their owner's deletion (admission)")

    for perm, where in own_calls(namespaces, peering):
        needs[perm].add(where)
    return dict(needs)


# --- the chart, rendered by tests/support/helm.py (the `helm` fixture: tests/unit/conftest.py) ---


def operator_mode(objs: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """The namespaces and peering name the chart's Deployment gives `tritium operator`."""
    deploy = next(o for o in objs if o["kind"] == "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "operator"
    namespaces = [a.split("=", 1)[1] for a in args if a.startswith("--namespace=")]
    peering = next((a.split("=", 1)[1] for a in args if a.startswith("--peering=")), None)
    return namespaces, peering


def granted(role: dict[str, Any]) -> set[Perm]:
    out = set()
    for rule in role.get("rules") or []:
        assert not rule.get("nonResourceURLs") and not rule.get("resourceNames"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}: {rule}"
                    out.add((group, resource, verb))
    return out


def bound_roles(objs: list[dict[str, Any]], account: str) -> dict[tuple[str, str, str], set[Perm]]:
    """(binding kind, namespace, role name) -> rules, for each role bound to the ServiceAccount."""
    roles = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    out = {}
    for b in (o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} not in b["subjects"]:
            continue
        namespace = b["metadata"].get("namespace", "") if b["kind"] == "RoleBinding" else ""
        ref = b["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])]
        out[(b["kind"], namespace, ref["name"])] = granted(role)
    return out


def compare(needed: Needs, have: set[Perm], where: str) -> list[str]:
    problems = [f"{where}: missing {g or 'core'}/{r} {v} (used by {', '.join(sorted(needed[(g, r, v)]))})"
                for g, r, v in sorted(needed.keys() - have)]
    problems += [f"{where}: granted but unused: {g or 'core'}/{r} {v}" for g, r, v in sorted(have - needed.keys())]
    return problems


def check_chart(objs: list[dict[str, Any]], opt_out: frozenset[Perm] = frozenset()) -> None:
    namespaces, peering = operator_mode(objs)
    needed = {p: why for p, why in operator_needs(namespaces, peering).items() if p not in opt_out}
    account = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    bound = bound_roles(objs, account)
    problems = []
    if not namespaces:
        assert [k for k in bound if k[0] != "ClusterRoleBinding"] == [], "cluster-wide: ClusterRoleBindings only"
        assert len(bound) == 1, bound.keys()
        problems += compare(needed, next(iter(bound.values())), "ClusterRole")
    else:
        cluster = {p: w for p, w in needed.items() if cluster_scoped(p[0], p[1])}
        local = {p: w for p, w in needed.items() if not cluster_scoped(p[0], p[1])}
        cluster_roles = [v for k, v in bound.items() if k[0] == "ClusterRoleBinding"]
        assert len(cluster_roles) == 1, "namespaced: one ClusterRole, for the cluster-scoped reads"
        problems += compare(cluster, cluster_roles[0], "ClusterRole")
        by_namespace = {k[1]: v for k, v in bound.items() if k[0] == "RoleBinding"}
        assert sorted(by_namespace) == sorted(namespaces), "one Role bound in each watched namespace"
        for ns, rules in sorted(by_namespace.items()):
            problems += compare(local, rules, f"Role in {ns}")
    assert not problems, "the chart's RBAC differs from what the operator's code uses:\n" + "\n".join(problems)


# --- the tests -------------------------------------------------------------------------------------


def test_cluster_wide_rbac_is_exactly_what_the_code_uses(helm: str) -> None:
    check_chart(template(helm))


def test_namespaced_rbac_is_exactly_what_the_code_uses(helm: str) -> None:
    check_chart(template(helm, "-f", str(VALUES_DIR / "namespaced.yaml")))


@pytest.mark.parametrize("values", [(), ("-f", str(VALUES_DIR / "namespaced.yaml"))],
                         ids=["cluster-wide", "namespaced"])
def test_peering_create_false_withholds_only_create(helm: str, values: tuple[str, ...]) -> None:
    """The documented opt-out: the operator's create of its peering object is then refused, by design."""
    objs = template(helm, *values, "--set", "peering.create=false")
    peering = {(g, r) for g, r, v in operator_needs(*operator_mode(objs)) if r.endswith("kopfpeerings")}
    check_chart(objs, opt_out=frozenset((g, r, "create") for g, r in peering))


def test_every_rendered_kind_is_watched_and_known() -> None:
    """What the derivation assumes: each kind render/ builds is indexed (so it can be pruned) and in RESOURCES."""
    assert rendered_kinds() == watched_child_kinds()
    assert referenced_kinds() <= set(kube.RESOURCES)
    assert watched_child_kinds() <= set(kube.RESOURCES)


def test_the_derivation_sees_the_operators_calls() -> None:
    """A few calls the code is known to make, so that a derivation finding nothing cannot pass."""
    needs = operator_needs([], "tritium")
    for perm in [("apps", "deployments", "patch"), ("apps", "deployments", "create"), ("", "pods", "list"),
                 ("", "secrets", "get"), ("serving.tritium.dev", "inferenceservices/status", "patch"),
                 ("kopf.dev", "clusterkopfpeerings", "create"), ("", "events", "create")]:
        assert perm in needs, perm
    assert any(w.startswith("reconcile.py:") for w in needs[("apps", "deployments", "delete")])
