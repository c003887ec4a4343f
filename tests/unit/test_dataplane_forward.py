"""The headers a stable gateway sends with a request it forwards to the canary."""

from __future__ import annotations

from tritium.dataplane.canary.forward import REQUEST_ID_HEADER, CanaryForwarder
from tritium.dataplane.canary.traffic import ROUTED_KEY
from tritium.dataplane.http.server import Request
from tritium.dataplane.metrics import GatewayMetrics


def _forwarded(headers: dict[str, str], peer: str) -> dict[str, str]:
    forwarder = CanaryForwarder("aaaaaaaaaa", GatewayMetrics(), lambda exc, request: None)  # type: ignore[arg-type]
    request = Request("POST", "/v2/models/m/infer", "", headers, b"{}", peer=peer)
    request.state[REQUEST_ID_HEADER] = "rid"
    return forwarder.request_headers(request, 5.0)


def test_the_client_travels_in_x_forwarded_for_so_the_canary_can_check_it() -> None:
    out = _forwarded({"authorization": "Bearer k", "connection": "keep-alive"}, peer="127.0.0.9")
    assert out["x-forwarded-for"] == "127.0.0.9"
    assert out["authorization"] == "Bearer k" and "connection" not in out
    assert {k.lower(): v for k, v in out.items()}[ROUTED_KEY] == "aaaaaaaaaa"
    behind_proxy = _forwarded({"x-forwarded-for": "203.0.113.7"}, peer="127.0.0.9")
    assert behind_proxy["x-forwarded-for"] == "203.0.113.7, 127.0.0.9"
    assert "x-forwarded-for" not in _forwarded({}, peer="")  # a Unix socket has no address to add
