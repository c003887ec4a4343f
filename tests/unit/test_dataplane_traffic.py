"""The canary split's pure parts: the counter's exactness, the traffic file's checks, when to forward."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.support.dataplane import base_spec, write_config
from tritium.dataplane.canary.traffic import (
    ROUTED_HEADER,
    SplitCounter,
    Target,
    Traffic,
    TrafficError,
    TrafficFile,
    TrafficSplit,
    forward_target,
    parse_traffic,
)
from tritium.dataplane.config import load_config
from tritium.dataplane.gateway import Gateway, GatewaySettings
from tritium.dataplane.metrics import GatewayMetrics

URL = "http://svc-abcdef0123.ns.svc.cluster.local:80"
GOOD = {"stable": "0123456789", "canary": "abcdef0123", "canaryWeight": 5, "canaryUrl": URL}


def _raw(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


# -- the counter ----------------------------------------------------------------------------------

def _picked(weight: int, n: int) -> int:
    counter = SplitCounter(weight)
    return sum(counter.take() for _ in range(n))


@settings(max_examples=300, deadline=None)
@given(weight=st.integers(0, 100), n=st.integers(0, 3000))
def test_first_n_requests_forward_exactly_floor_of_n_times_weight(weight: int, n: int) -> None:
    picked = _picked(weight, n)
    assert picked == n * weight // 100
    assert abs(picked - n * weight / 100) < 1


@settings(max_examples=200, deadline=None)
@given(weight=st.integers(0, 100), skip=st.integers(0, 500), n=st.integers(0, 1500))
def test_any_window_of_requests_is_within_one_request(weight: int, skip: int, n: int) -> None:
    """Not only from the start: the requests a gateway serves after any point are split exactly too."""
    counter = SplitCounter(weight)
    for _ in range(skip):
        counter.take()
    picked = sum(counter.take() for _ in range(n))
    assert abs(picked - n * weight / 100) < 1


@given(weight=st.integers(0, 100), loads=st.lists(st.integers(0, 800), min_size=1, max_size=6))
def test_several_gateways_each_exact_are_exact_together(weight: int, loads: list[int]) -> None:
    """Each stable gateway holds its own counter and gets its own share of the load (the Service
    balances unevenly): the fleet's total is still within one request per gateway."""
    total = sum(_picked(weight, n) for n in loads)
    assert abs(total - sum(loads) * weight / 100) < len(loads)


def test_forwarded_requests_are_spread_not_bunched() -> None:
    counter = SplitCounter(5)
    positions = [i for i in range(200) if counter.take()]
    assert positions == [19, 39, 59, 79, 99, 119, 139, 159, 179, 199]


# -- the file ---------------------------------------------------------------------------------------

def test_the_operators_file_parses() -> None:
    assert parse_traffic(_raw()) == Traffic("0123456789", "abcdef0123", 5, URL)


def test_canary_may_be_null_or_absent_and_unknown_keys_are_ignored() -> None:
    assert parse_traffic(b'{"stable": "r1", "canary": null, "canaryWeight": 0, "canaryUrl": null}') == Traffic(
        "r1", None, 0, None)
    assert parse_traffic(b'{"stable": "r1", "future": [1]}') == Traffic("r1", None, 0, None)
    assert parse_traffic(_raw(canaryUrl=URL + "/")).canary_url == URL


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "not valid JSON"),
    (b"{\"stable\": ", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object, not list"),
    (_raw(canaryWeight=101), "within 0 and 100"),
    (_raw(canaryWeight=-1), "within 0 and 100"),
    (_raw(canaryWeight="5"), "must be an integer"),
    (_raw(canaryWeight=5.5), "must be an integer"),
    (_raw(canaryWeight=True), "must be an integer"),
    (_raw(canaryUrl="svc:80"), "http:// or https://"),
    (_raw(canaryUrl="ftp://svc"), "http:// or https://"),
    (_raw(canaryUrl="http://"), "with a host"),
    (_raw(canaryUrl=URL + "?a=b"), "query or fragment"),
    (_raw(stable=7), "stable must be a string"),
    (_raw(canary=["x"]), "canary must be a string"),
])
def test_invalid_files_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(TrafficError, match=message.replace("?", r"\?")):
        parse_traffic(raw)


# -- when to forward ----------------------------------------------------------------------------------

def test_only_the_stable_revision_forwards_when_everything_is_set() -> None:
    traffic = parse_traffic(_raw())
    assert forward_target(traffic, "0123456789") == (Target("abcdef0123", URL), 5)
    assert forward_target(traffic, "abcdef0123") is None  # the canary itself
    assert forward_target(traffic, "old0000000") is None  # neither (an older revision draining)
    assert forward_target(traffic, "") is None


@pytest.mark.parametrize("changes", [
    {"canary": None}, {"canaryUrl": None}, {"canaryWeight": 0}, {"stable": None}, {"canary": "0123456789"},
])
def test_nothing_is_forwarded_without_a_canary_a_url_or_a_weight(changes: dict[str, object]) -> None:
    assert forward_target(parse_traffic(_raw(**changes)), "0123456789") is None


def test_no_file_means_no_forwarding() -> None:
    assert forward_target(None, "0123456789") is None


def test_a_routed_request_is_never_forwarded_again() -> None:
    split = TrafficSplit("0123456789")
    split.update(parse_traffic(_raw(canaryWeight=100)))
    assert split.route({}) == Target("abcdef0123", URL)
    assert all(split.route({ROUTED_HEADER.lower(): "0123456789"}) is None for _ in range(100))


def test_a_new_weight_starts_the_counter_over() -> None:
    split = TrafficSplit("0123456789")
    split.update(parse_traffic(_raw(canaryWeight=50)))
    assert split.route({}) is None  # the first of each pair stays
    split.update(parse_traffic(_raw(canaryWeight=50)))  # the same: no restart
    assert split.route({}) is not None
    assert split.update(parse_traffic(_raw(canaryWeight=20)))
    picked = sum(split.route({}) is not None for _ in range(10))
    assert picked == 2
    assert not split.update(parse_traffic(_raw(canaryWeight=20)))
    assert split.update(None) and split.weight == 0 and split.route({}) is None


# -- the canary weight gauge ----------------------------------------------------------------------

GAUGE = "tritium_gateway_canary_weight_percent"


def _weights(registry: CollectorRegistry) -> dict[str, float]:
    """The gauge's series as scraped: canary revision -> percent."""
    return {sample.labels["canary"]: sample.value
            for family in registry.collect() if family.name == GAUGE for sample in family.samples}


def test_the_canary_weight_gauge_follows_the_split_and_leaves_no_stale_canary() -> None:
    """A dashboard reads the weight from this gauge: it must say what the split does now, and a
    canary that is no longer forwarded to must disappear rather than linger at its last weight."""
    metrics = GatewayMetrics(CollectorRegistry())
    split = TrafficSplit("0123456789", on_change=metrics.set_canary_weight)
    assert _weights(metrics.registry) == {}
    assert f"# TYPE {GAUGE} gauge" in generate_latest(metrics.registry).decode()  # declared before any canary
    split.update(parse_traffic(_raw(canaryWeight=5)))
    assert _weights(metrics.registry) == {"abcdef0123": 5}
    split.update(parse_traffic(_raw(canaryWeight=30)))
    assert _weights(metrics.registry) == {"abcdef0123": 30}
    split.update(parse_traffic(_raw(canary="fedcba9876", canaryWeight=30)))
    assert _weights(metrics.registry) == {"fedcba9876": 30}  # the old canary's series is gone
    split.update(parse_traffic(_raw(canary="fedcba9876", canaryWeight=0)))
    assert _weights(metrics.registry) == {}
    split.update(parse_traffic(_raw(canaryWeight=100)))
    assert _weights(metrics.registry) == {"abcdef0123": 100}
    split.update(None)  # file gone or invalid: nothing forwarded
    assert _weights(metrics.registry) == {}
    assert "abcdef0123" not in generate_latest(metrics.registry).decode()


def test_a_gateway_that_is_not_the_stable_revision_reports_no_weight() -> None:
    """The canary's own gateways read the same file but forward nothing: no series from them."""
    metrics = GatewayMetrics(CollectorRegistry())
    split = TrafficSplit("abcdef0123", on_change=metrics.set_canary_weight)
    split.update(parse_traffic(_raw(canaryWeight=50)))
    assert split.weight == 0 and _weights(metrics.registry) == {}


# -- reading and re-reading the file ------------------------------------------------------------------

def _kubelet_write(directory: Path, content: bytes, generation: int) -> Path:
    """What kubelet does on a ConfigMap update: a new timestamped directory, then `..data` swapped to it."""
    data = directory / f"..gen{generation}"
    data.mkdir()
    (data / "traffic.json").write_bytes(content)
    link = directory / "..data"
    tmp = directory / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, link)
    visible = directory / "traffic.json"
    if not visible.is_symlink():
        visible.symlink_to("..data/traffic.json")
    return visible


def test_a_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    path = _kubelet_write(tmp_path, _raw(canaryWeight=5), 1)
    split = TrafficSplit("0123456789")
    traffic = TrafficFile(path, split)
    traffic.poll()
    assert split.weight == 5
    _kubelet_write(tmp_path, _raw(canaryWeight=30), 2)
    traffic.poll()
    assert split.weight == 30
    _kubelet_write(tmp_path, _raw(canary=None), 3)
    traffic.poll()
    assert split.weight == 0 and split.target is None


def test_invalid_files_warn_once_per_problem_and_stop_forwarding(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "traffic.json"
    split = TrafficSplit("0123456789")
    traffic = TrafficFile(path, split)
    with caplog.at_level(logging.WARNING, logger="tritium.traffic"):
        path.write_bytes(_raw())
        traffic.poll()
        assert split.weight == 5
        path.write_bytes(b"{not json")
        for _ in range(3):
            traffic.poll()
        assert split.weight == 0
        assert len(caplog.records) == 1 and "is invalid: not valid JSON" in caplog.records[0].getMessage()
        assert caplog.records[0].levelno == logging.WARNING
        path.write_bytes(_raw(canaryWeight=200))
        traffic.poll()
        assert len(caplog.records) == 2 and "within 0 and 100" in caplog.records[1].getMessage()
        path.write_bytes(_raw())
        traffic.poll()
        assert split.weight == 5
        path.write_bytes(b"{not json")
        traffic.poll()
        assert split.weight == 0 and len(caplog.records) == 3  # invalid again after being fine: told again


def test_a_missing_file_is_the_normal_state_and_logs_no_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No rollout in flight: the file is absent (an optional ConfigMap; `tritium up` writes none)."""
    path = tmp_path / "traffic.json"
    split = TrafficSplit("0123456789")
    traffic = TrafficFile(path, split)
    with caplog.at_level(logging.DEBUG, logger="tritium.traffic"):
        for _ in range(3):
            traffic.poll()
        assert split.weight == 0 and split.target is None
        assert [r.levelno for r in caplog.records] == [logging.DEBUG]
        path.write_bytes(_raw())
        traffic.poll()
        assert split.weight == 5
        caplog.clear()
        path.unlink()  # the rollout is over: forwarding stops, said at info (the split changed), no warning
        traffic.poll()
        assert split.weight == 0 and split.target is None
        assert all(r.levelno < logging.WARNING for r in caplog.records), caplog.records
        assert any("serves every request itself" in r.getMessage() for r in caplog.records)


def test_a_file_that_exists_but_cannot_be_read_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "traffic.json"
    path.mkdir()  # there, but not readable as a file
    traffic = TrafficFile(path, TrafficSplit("0123456789"))
    with caplog.at_level(logging.WARNING, logger="tritium.traffic"):
        traffic.poll()
    assert len(caplog.records) == 1 and "cannot be read" in caplog.text and "no canary forwarding" in caplog.text


def test_the_gauge_is_set_from_the_traffic_file(tmp_path: Path) -> None:
    """An invalid file stops the forwarding: the gauge must stop showing the canary too."""
    path = _kubelet_write(tmp_path, _raw(canaryWeight=5), 1)
    metrics = GatewayMetrics(CollectorRegistry())
    traffic = TrafficFile(path, TrafficSplit("0123456789", on_change=metrics.set_canary_weight))
    traffic.poll()
    assert _weights(metrics.registry) == {"abcdef0123": 5}
    _kubelet_write(tmp_path, b"{not json", 2)
    traffic.poll()
    assert _weights(metrics.registry) == {}


def test_a_gateway_reports_its_split_on_its_metrics_port(tmp_path: Path) -> None:
    """The gateway wires its split to its own registry, the one its metrics port serves."""
    config = load_config(write_config(tmp_path, base_spec("add"), revision="0123456789"))
    gateway = Gateway(GatewaySettings(config=config, triton_grpc="127.0.0.1:1", triton_http="http://127.0.0.1:1"))
    gateway.split.update(parse_traffic(_raw(canaryWeight=20)))
    assert _weights(gateway.metrics.registry) == {"abcdef0123": 20}
