"""The InferenceService API models: defaults, CEL rules, schema limits, checks and revisions.

The models are the single source of truth of the API, and `tritium render` and the operator use
them to reject a manifest before it reaches a cluster; so every verdict here must name the field
the user has to fix, and must be the verdict the cluster would give (the CRD tests hold the CRD to
the same rule cases).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.specs import (
    RULE_CASES,
    SCHEMA_BAD,
    VARIANTS,
    all_example_paths,
    api_models,
    example_paths,
    load_example,
    manifest,
    merge,
)
from tritium.api import spec as spec_module
from tritium.api.base import ApiModel
from tritium.api.checks import Reference, check_spec, check_storage_uri, check_values, references
from tritium.api.resource import (
    InferenceService,
    SpecError,
    load_inference_services,
    parse_inference_service,
    spec_to_wire,
)
from tritium.api.spec import InferenceServiceSpec
from tritium.render.metadata import REVISION_SECTIONS, revision_of

# Spec sections applied in place (no new revision, no pod restart).
IN_PLACE_SECTIONS = ("replicas", "autoscaling", "rollout", "traffic", "monitoring")


def parse(obj: dict[str, Any]) -> InferenceService:
    return parse_inference_service(obj)


def rejection(obj: dict[str, Any]) -> SpecError:
    """The SpecError parsing ``obj`` raises (the test fails when it parses)."""
    with pytest.raises(SpecError) as info:
        parse_inference_service(obj)
    return info.value


# --- defaults -------------------------------------------------------------------------------------


def test_product_defaults() -> None:
    """The defaults the product promises: 2..10 pods at 70 %, 300 s scale-down, 5 % canary."""
    spec = parse(manifest()).spec
    assert spec.autoscaling.enabled is True
    assert spec.autoscaling.min_replicas == 2
    assert spec.autoscaling.max_replicas == 10
    assert spec.autoscaling.target_utilization == 0.7
    assert spec.autoscaling.scale_down_cooldown_seconds == 300
    assert spec.autoscaling.autoscaler == "hpa"
    assert spec.rollout.strategy == "BlueGreen"
    assert spec.rollout.canary_percent == 5
    assert spec.rollout.analysis.max_error_ratio == 0.01
    assert spec.rollout.analysis.max_p99_latency_ms == 1000
    assert spec.traffic.router == "gateway"
    assert spec.security.tls is None and spec.security.api_keys_secret_ref is None
    assert spec.preprocess is None and spec.postprocess is None


def test_wire_form_is_camel_case_with_defaults_filled() -> None:
    """What kube-apiserver stores (defaults applied, camelCase, unset optionals absent)."""
    wire = spec_to_wire(parse(manifest()).spec)
    assert wire["autoscaling"]["minReplicas"] == 2
    assert wire["autoscaling"]["scaleDownCooldownSeconds"] == 300
    assert wire["rollout"]["canaryPercent"] == 5
    assert wire["model"]["responseCache"] == {"enabled": False, "sizeBytes": 64 * 1024 * 1024}
    assert "preprocess" not in wire and "replicas" not in wire
    assert "dynamicBatching" not in wire["model"]


def test_examples_parse() -> None:
    """The shipped examples are valid (users copy them first)."""
    paths = all_example_paths()
    assert paths, "no examples found"
    for path in paths:
        isvc = parse(load_example(path))
        check_spec(isvc)


# --- CEL rules ------------------------------------------------------------------------------------


def test_every_cel_rule_has_good_and_bad_cases() -> None:
    """A rule added to a model without cases here fails: each rule must be proven in both directions."""
    rules = {(cls.__name__, r.message) for cls in api_models() for r in cls.cel_rules}
    assert rules, "no CEL rules found: the walk over the models is broken"
    cases = {(c.model, c.message) for c in RULE_CASES}
    assert rules - cases == set(), f"rules without cases: {sorted(rules - cases)}"
    assert cases - rules == set(), f"cases for rules that do not exist: {sorted(cases - rules)}"
    for case in RULE_CASES:
        assert case.good and case.bad, f"{case.model}: {case.message} needs good and bad examples"


def test_every_model_with_rules_is_reachable() -> None:
    """A model defined with rules but not used in the resource would have rules nobody checks."""
    defined = {
        obj
        for obj in vars(spec_module).values()
        if isinstance(obj, type) and issubclass(obj, ApiModel) and obj.cel_rules
    }
    assert defined <= set(api_models())


@pytest.mark.parametrize(
    ("case", "patch"),
    [(c, b) for c in RULE_CASES for b in c.bad],
    ids=[f"{c.model}:{c.message}:{i}" for c in RULE_CASES for i, _ in enumerate(c.bad)],
)
def test_cel_rule_rejects_bad_example_naming_the_field(case: Any, patch: dict[str, Any]) -> None:
    err = rejection(manifest(patch))
    assert err.field == case.field
    assert str(err) == f"{case.field}: {case.message}"


@pytest.mark.parametrize(
    ("case", "patch"),
    [(c, g) for c in RULE_CASES for g in c.good],
    ids=[f"{c.model}:{c.message}:{i}" for c in RULE_CASES for i, _ in enumerate(c.good)],
)
def test_cel_rule_accepts_good_example(case: Any, patch: dict[str, Any]) -> None:
    parse(manifest(patch))


def test_cel_error_on_model_class_directly() -> None:
    """Constructing a model in Python (SDK, tests) applies the same rules as parsing a manifest."""
    with pytest.raises(ValueError, match="minReplicas must be <= maxReplicas"):
        spec_module.AutoscalingSpec(min_replicas=3, max_replicas=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1000), st.integers(1, 1000))
def test_any_replica_pair_is_judged_by_min_le_max(low: int, high: int) -> None:
    """Every in-range pair parses exactly when minReplicas <= maxReplicas."""
    obj = manifest({"autoscaling": {"minReplicas": low, "maxReplicas": high}})
    if low <= high:
        spec = parse(obj).spec
        assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (low, high)
    else:
        assert str(rejection(obj)) == "spec.autoscaling.minReplicas: minReplicas must be <= maxReplicas"


# --- schema limits and unknown fields -------------------------------------------------------------


@pytest.mark.parametrize(("patch", "meta", "field"), SCHEMA_BAD, ids=[c[2] + f":{i}" for i, c in enumerate(SCHEMA_BAD)])
def test_schema_violation_names_the_field(patch: dict[str, Any], meta: dict[str, Any], field: str) -> None:
    assert rejection(manifest(patch, **meta)).field == field


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (merge(manifest(), {"spec": {"bogus": 1}}), "spec.bogus"),
        (merge(manifest(), {"spec": {"model": {"storageURI": "s3://x/y"}}}), "spec.model.storageURI"),
        (manifest({"model": {"instanceGroups": [{"count": 1, "gpu": 1}]}}), "spec.model.instanceGroups[0].gpu"),
        (manifest({"security": {"tls": {"secretName": "t", "ciphers": "all"}}}), "spec.security.tls.ciphers"),
        (manifest({"runtime": {"resources": {"nvidia.com/gpu": 1}}}), "spec.runtime.resources.nvidia.com/gpu"),
        (merge(manifest(), {"extra": True}), "extra"),
    ],
)
def test_unknown_fields_are_rejected_by_name(obj: dict[str, Any], field: str) -> None:
    """A typo must not be silently dropped: the user would believe a setting is applied."""
    err = rejection(obj)
    assert err.field == field
    assert err.message == "unknown field"


def test_metadata_keeps_unknown_fields() -> None:
    """metadata is Kubernetes', not ours: resourceVersion, managedFields... must pass through."""
    isvc = parse(manifest(resourceVersion="42", labels={"team": "a"}, uid="u-1"))
    assert isvc.metadata.uid == "u-1"
    assert isvc.metadata.labels == {"team": "a"}


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (2, "2"),
        (0, "0"),
        ("2", "2"),
        ("500m", "500m"),
        ("4Gi", "4Gi"),
        ("1.5", "1.5"),
        (".5", ".5"),
        ("1e3", "1e3"),
        ("+1", "+1"),
        ("128974848", "128974848"),
        ("129M", "129M"),
        ("2Ei", "2Ei"),
    ],
)
def test_quantity_accepts_ints_and_strings(value: Any, stored: str) -> None:
    spec = parse(manifest({"runtime": {"resources": {"cpu": value, "memory": value}}})).spec
    assert spec.runtime.resources.cpu == stored
    assert spec.runtime.resources.memory == stored


@pytest.mark.parametrize(
    "value", ["abc", "", "2 Gi", "Gi", "1.2.3", "--1", "1e", "2gi", "0x10", True, 0.5, 2.0, None, [1]]
)
def test_quantity_rejects_junk(value: Any) -> None:
    """Junk is refused with the field named and the value quoted, never a garbled path."""
    err = rejection(manifest({"runtime": {"resources": {"cpu": value}}}))
    assert err.field == "spec.runtime.resources.cpu"
    assert ": " not in err.field


# --- checks beyond the schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/key",
        "gs://bucket/m",
        "http://host/m.tar.gz",
        "https://host/m",
        "file:///models/m",
        "/models/m",
        "pvc://claim/path",
        "S3://bucket/key",
    ],
)
def test_supported_storage_uris(uri: str) -> None:
    check_spec(parse(manifest({"model": {"storageUri": uri}})))


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("ftp://host/model", "ftp://"),
        ("hdfs://nn/model", "hdfs://"),
        ("models/iris", "(none)"),
        ("s3:///key-without-bucket", "no bucket"),
        ("pvc:///path", "no claim"),
    ],
)
def test_unsupported_storage_uri_names_the_field(uri: str, words: str) -> None:
    isvc = parse(manifest({"model": {"storageUri": uri}}))
    with pytest.raises(SpecError) as info:
        check_spec(isvc)
    assert info.value.field == "spec.model.storageUri"
    assert words in info.value.message
    assert str(info.value).startswith("spec.model.storageUri: ")


def test_check_storage_uri_lists_the_supported_schemes() -> None:
    with pytest.raises(SpecError, match=r"use one of s3://, gs://, http://, https://, file://, pvc://"):
        check_storage_uri("ftp://x/y")


@pytest.mark.parametrize(
    ("security", "field"),
    [
        ({"ipAllowlist": ["10.0.0.0/8", "10.0.0.0/33"]}, "spec.security.ipAllowlist[1]"),
        ({"ipAllowlist": ["not-an-ip"]}, "spec.security.ipAllowlist[0]"),
        ({"trustedProxies": ["300.1.1.1"]}, "spec.security.trustedProxies[0]"),
        ({"trustedProxies": [""]}, "spec.security.trustedProxies[0]"),
    ],
)
def test_bad_cidrs_are_rejected(security: dict[str, Any], field: str) -> None:
    isvc = parse(manifest({"security": security}))
    with pytest.raises(SpecError) as info:
        check_spec(isvc)
    assert info.value.field == field


KEYS = {"name": "keys", "key": "keys"}


@pytest.mark.parametrize(
    ("security", "refused"),
    [
        ({}, True),
        ({"rateLimit": {"requestsPerSecond": 5}, "apiKeysSecretRef": KEYS}, True),  # counted per key
        ({"apiKeysSecretRef": KEYS, "redactPII": True}, True),
        ({"ipAllowlist": ["10.0.0.0/8"]}, False),
        ({"rateLimit": {"requestsPerSecond": 5}}, False),  # per key without keys: per client address
        ({"rateLimit": {"requestsPerSecond": 5, "per": "clientAddress"}, "apiKeysSecretRef": KEYS}, False),
        ({"audit": {"enabled": True}}, False),
    ],
)
def test_trusted_proxies_need_a_layer_that_reads_the_client_address(security: dict[str, Any], refused: bool) -> None:
    isvc = parse(manifest({"security": {**security, "trustedProxies": ["172.16.0.0/12"]}}))
    if not refused:
        check_values(isvc)
        return
    with pytest.raises(SpecError) as info:
        check_values(isvc)
    assert info.value.field == "spec.security.trustedProxies"
    assert "nothing reads the client address" in info.value.message


def test_good_cidrs_pass() -> None:
    check_values(
        parse(
            manifest(
                {
                    "security": {
                        "ipAllowlist": ["10.0.0.0/8", "::1", "2001:db8::/32", "192.168.1.7"],
                        "trustedProxies": ["172.16.0.0/12"],
                    }
                }
            )
        )
    )


def test_top_k_output_must_be_a_model_output() -> None:
    obj = manifest(
        {
            "model": {"outputs": [{"name": "probs", "dataType": "FP32", "dims": [10]}]},
            "postprocess": {"builtin": {"topK": {"output": "logits", "k": 3}}},
        }
    )
    with pytest.raises(SpecError) as info:
        check_spec(parse(obj))
    assert info.value.field == "spec.postprocess.builtin.topK.output"


def test_references_lists_every_secret_and_configmap() -> None:
    """The operator waits for (and reports) exactly these objects before creating pods."""
    obj = manifest(
        merge(
            VARIANTS["scripts"],
            {
                "model": {"storageSecretName": "creds"},
                "security": {"apiKeysSecretRef": {"name": "keys", "key": "k.txt"}, "tls": {"secretName": "tls"}},
                "gateway": {"cache": {"enabled": True, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}},
                "monitoring": {"webhook": {"secretRef": {"name": "hook", "key": "url"}}},
            },
        )
    )
    assert references(parse(obj)) == [
        Reference("ConfigMap", "pre-code", "pre.py", "spec.preprocess.script.configMapRef"),
        Reference("ConfigMap", "post-code", "stage.py", "spec.postprocess.script.configMapRef"),
        Reference("Secret", "creds", "", "spec.model.storageSecretName"),
        Reference("Secret", "keys", "k.txt", "spec.security.apiKeysSecretRef"),
        Reference("Secret", "tls", "tls.crt", "spec.security.tls.secretName"),
        Reference("Secret", "redis", "url", "spec.gateway.cache.redis.urlSecretRef"),
        Reference("Secret", "hook", "url", "spec.monitoring.webhook.secretRef"),
    ]
    assert references(parse(manifest())) == []


# --- parsing whole files --------------------------------------------------------------------------


def test_wrong_kind_or_version() -> None:
    for obj in (merge(manifest(), {"kind": "Deployment"}), merge(manifest(), {"apiVersion": "serving.tritium.dev/v1"})):
        assert rejection(obj).field == "kind"
    with pytest.raises(SpecError):
        parse_inference_service(["not", "a", "mapping"])


def test_load_skips_other_kinds_and_reports_yaml_errors() -> None:
    text = yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Secret"}, manifest(), None])
    assert [s.name for s in load_inference_services(text)] == ["demo"]
    with pytest.raises(SpecError, match="no InferenceService"):
        load_inference_services("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line 2"):
        load_inference_services("a: 1\nb: c: d\n")


# --- revisions ------------------------------------------------------------------------------------


def test_revision_sections_cover_the_whole_spec() -> None:
    """A new spec field must be classified: restart pods (revision) or apply in place."""
    fields = {f.alias or name for name, f in InferenceServiceSpec.model_fields.items()}
    assert set(REVISION_SECTIONS) | set(IN_PLACE_SECTIONS) == fields
    assert not set(REVISION_SECTIONS) & set(IN_PLACE_SECTIONS)


def shuffled(obj: Any, rnd: random.Random) -> Any:
    """The same document with every mapping's keys in a random order."""
    if isinstance(obj, dict):
        keys = list(obj)
        rnd.shuffle(keys)
        return {k: shuffled(obj[k], rnd) for k in keys}
    if isinstance(obj, list):
        return [shuffled(v, rnd) for v in obj]
    return obj


BASES = [manifest(), manifest(VARIANTS["everything"]), *(load_example(p) for p in example_paths())]

POD_CHANGES = st.one_of(
    st.integers(32, 4096).map(lambda n: {"model": {"maxBatchSize": n}}),  # >= every base's preferred sizes
    st.from_regex(r"\Areg\.example/triton:[a-z0-9]{1,8}\Z").map(lambda i: {"runtime": {"image": i}}),
    st.integers(3, 64).map(lambda n: {"runtime": {"resources": {"cpu": n}}}),
    st.integers(1025, 10**9).filter(lambda n: n != 16 * 1024 * 1024).map(lambda n: {"gateway": {"maxRequestBytes": n}}),
    st.just({"security": {"redactPII": True, "audit": {"enabled": True}}}),
    st.sampled_from(["json", "xml", "binary"]).map(lambda f: {"preprocess": {"builtin": {"format": f}}}),
    st.just({"model": {"storageUri": "gs://other-bucket/model"}}),
)
IN_PLACE_CHANGES = st.one_of(
    st.integers(0, 500).flatmap(
        lambda lo: st.integers(max(lo, 1), 1000).map(lambda hi: {"autoscaling": {"minReplicas": lo, "maxReplicas": hi}})
    ),
    st.integers(1, 50).map(lambda p: {"rollout": {"canaryPercent": p, "autoPromote": False}}),
    st.lists(st.from_regex(r"\A[a-z]{1,10}\.example\Z"), max_size=3).map(lambda h: {"traffic": {"hostnames": h}}),
    st.booleans().map(lambda b: {"monitoring": {"serviceMonitor": b}}),
    st.integers(0, 1000).map(lambda n: {"replicas": n}),
    st.just({"traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), st.randoms(use_true_random=False))
def test_revision_is_stable_under_key_reordering(base: dict[str, Any], rnd: random.Random) -> None:
    assert revision_of(parse(shuffled(base, rnd)).spec) == revision_of(parse(base).spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), POD_CHANGES)
def test_revision_changes_with_pod_relevant_fields(base: dict[str, Any], change: dict[str, Any]) -> None:
    before = parse(base).spec
    after = parse(merge(base, {"spec": change})).spec
    if spec_to_wire(before) != spec_to_wire(after):  # the change may repeat what the base already says
        assert revision_of(after) != revision_of(before)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), IN_PLACE_CHANGES)
def test_revision_ignores_scaling_rollout_traffic_monitoring(base: dict[str, Any], change: dict[str, Any]) -> None:
    """Scaling or rollout settings must never restart pods (no new revision)."""
    assert revision_of(parse(merge(base, {"spec": change})).spec) == revision_of(parse(base).spec)


def test_revision_is_short_and_label_safe() -> None:
    rev = revision_of(parse(manifest()).spec)
    assert len(rev) == 10 and rev.isalnum() and rev == rev.lower()


@pytest.mark.parametrize(("metric", "own", "refused"), [
    ("rps", {"targetRequestsPerSecond": 20}, "targetRequestsPerSecond"),
    ("queueTime", {"targetQueueTimeMs": 20}, "targetQueueTimeMs"),
    ("pending", {}, "targetPendingRequests"),
    ("cpu", {}, None),
])
def test_target_utilization_only_for_the_metrics_that_read_it(metric: str, own: dict[str, Any],
                                                              refused: str | None) -> None:
    patch = {"autoscaling": {"metric": metric, "targetUtilization": 0.5, **own},
             "monitoring": {"serviceMonitor": True}}
    if refused is None:
        check_values(parse(manifest(patch)))
        return
    with pytest.raises(SpecError) as info:
        check_values(parse(manifest(patch)))
    assert info.value.field == "spec.autoscaling.targetUtilization" and refused in info.value.message
    patch["autoscaling"].pop("targetUtilization")  # the default is what every stored object carries
    check_values(parse(manifest(patch)))
