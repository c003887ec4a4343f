"""IP allowlist (403) and rate limits (429) on the gateway, with real connections from 127.0.0.1.

X-Forwarded-For stands in for clients behind a proxy: believed only when the peer (127.0.0.1
here) is a trusted proxy, and then its right-most untrusted hop is the client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway_inproc import INFER_BODY, serving
from tritium.dataplane.security.apikeys import entry, new_key
from tritium.dataplane.security.layers import SecuritySettings

JSON = {"Content-Type": "application/json"}


async def _infer(client: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return await client.post(f"{url}/v2/models/add/infer", content=INFER_BODY, headers={**JSON, **extra})


@pytest.mark.parametrize(("security", "xff", "status"), [
    ({"ipAllowlist": ["127.0.0.0/8"]}, None, 200),
    ({"ipAllowlist": ["127.0.0.2/32"]}, None, 403),
    ({"ipAllowlist": ["::1/128", "127.0.0.1"]}, None, 200),
    ({"ipAllowlist": ["10.0.0.0/24"]}, "10.0.0.5", 403),  # spoofed from an untrusted peer: ignored
    ({"ipAllowlist": ["10.0.0.0/24"], "trustedProxies": ["127.0.0.0/8"]}, "10.0.0.5", 200),
    ({"ipAllowlist": ["10.0.0.0/24"], "trustedProxies": ["127.0.0.0/8"]}, "10.0.0.5, 192.0.2.1", 403),
    ({"ipAllowlist": ["192.0.2.0/24"], "trustedProxies": ["127.0.0.0/8"]}, "10.0.0.5, 192.0.2.1", 200),
    ({"ipAllowlist": ["2001:db8::/32"], "trustedProxies": ["127.0.0.1/32"]}, "2001:db8::5", 200),
    ({"ipAllowlist": ["2001:db8::/32"], "trustedProxies": ["127.0.0.1/32"]}, "2001:db9::5", 403),
])
async def test_allowlist(tmp_path: Path, security: dict[str, Any], xff: str | None, status: int) -> None:
    async with serving(tmp_path, security) as (url, _), httpx.AsyncClient() as client:
        answer = await _infer(client, url, **({"X-Forwarded-For": xff} if xff else {}))
        assert answer.status_code == status, answer.text
        if status == 403:
            assert answer.json()["code"] == "forbidden" and answer.json()["request_id"]
        assert (await client.get(f"{url}/v2/health/live")).status_code == 200  # probes come from the node


async def test_allowlist_comes_before_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(entry("a", new_key()) + "\n")
    security = {"ipAllowlist": ["127.0.0.2/32"], "apiKeysSecretRef": {"name": "k", "key": "keys"}}
    async with serving(tmp_path, security, SecuritySettings(api_keys_file=str(keys))) as (url, _), \
            httpx.AsyncClient() as client:
        assert (await _infer(client, url)).status_code == 403


async def test_rate_limit_per_client_address(tmp_path: Path) -> None:
    security = {"rateLimit": {"requestsPerSecond": 1, "burst": 2}, "trustedProxies": ["127.0.0.0/8"]}
    async with serving(tmp_path, security) as (url, _), httpx.AsyncClient() as client:
        codes = [(await _infer(client, url, X_Forwarded_For="192.0.2.1")).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]  # the bucket holds burst 2
        refused = await _infer(client, url, X_Forwarded_For="192.0.2.1")
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Limit"] == "2" and refused.headers["RateLimit-Remaining"] == "0"
        assert "RateLimit-Reset" in refused.headers
        # Another client has a bucket of its own; health is never limited.
        assert (await _infer(client, url, X_Forwarded_For="192.0.2.2")).status_code == 200
        assert all([(await client.get(f"{url}/v2/health/live")).status_code == 200 for _ in range(5)])


async def test_rate_limit_per_key(tmp_path: Path) -> None:
    a, b = new_key(), new_key()
    keys = tmp_path / "keys"
    keys.write_text(f"{entry('a', a)}\n{entry('b', b)}\n")
    security = {"rateLimit": {"requestsPerSecond": 1, "burst": 2}, "apiKeysSecretRef": {"name": "k", "key": "keys"}}
    async with serving(tmp_path, security, SecuritySettings(api_keys_file=str(keys))) as (url, _), \
            httpx.AsyncClient() as client:
        assert [(await _infer(client, url, X_API_Key=a)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await _infer(client, url, X_API_Key=b)).status_code == 200  # same address, other key
        assert (await _infer(client, url)).status_code == 401  # no key: refused before any bucket


async def test_bucket_refills_at_the_rate(tmp_path: Path) -> None:
    """An empty bucket gets one token back per 1/rate seconds: at 1/s, one more after a second, not before."""
    async with serving(tmp_path, {"rateLimit": {"requestsPerSecond": 1, "burst": 1}}) as (url, _), \
            httpx.AsyncClient() as client:
        assert [(await _infer(client, url)).status_code for _ in range(2)] == [200, 429]
        await asyncio.sleep(1.05)
        assert [(await _infer(client, url)).status_code for _ in range(2)] == [200, 429]


async def test_shared_limit_in_redis_across_gateways(tmp_path: Path, redis_url: str) -> None:
    """Two gateways (two replicas) on one Redis share one bucket; with Redis gone, requests pass (fail open)."""
    security = {"rateLimit": {"requestsPerSecond": 1, "burst": 3, "per": "clientAddress",
                              "redis": {"urlSecretRef": {"name": "r", "key": "url"}}}}
    settings = SecuritySettings(ratelimit_redis_url=redis_url)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with serving(tmp_path / "a", security, settings) as (url_a, gw_a), \
            serving(tmp_path / "b", security, settings) as (url_b, _), httpx.AsyncClient() as client:
        await gw_a.security.limiter.reset()  # type: ignore[union-attr]
        codes = [(await _infer(client, url_a if i % 2 else url_b)).status_code for i in range(6)]
        assert codes == [200] * 3 + [429] * 3
        refused = await _infer(client, url_a)
        assert refused.headers["RateLimit-Limit"] == "3" and int(refused.headers["Retry-After"]) >= 1
    broken = SecuritySettings(ratelimit_redis_url="redis://127.0.0.1:1/0")
    (tmp_path / "c").mkdir()
    async with serving(tmp_path / "c", security, broken) as (url, gw), httpx.AsyncClient() as client:
        assert [(await _infer(client, url)).status_code for _ in range(6)] == [200] * 6
        assert _storage_failures(gw) == {"passed": 6.0, "refused": 0.0}


def _storage_failures(gateway: Any) -> dict[str, float]:
    return {outcome: gateway.metrics.registry.get_sample_value(
        "tritium_gateway_ratelimit_storage_failures_total", {"outcome": outcome}) for outcome in ("passed", "refused")}


async def test_a_redis_outage_fails_closed_when_the_spec_says(tmp_path: Path, redis_url: str) -> None:
    """failurePolicy closed: with Redis unreachable nothing passes uncounted (503, Retry-After), and
    health stays open; with Redis there the same limit works as usual."""
    security = {"rateLimit": {"requestsPerSecond": 1, "burst": 2, "per": "clientAddress",
                              "redis": {"urlSecretRef": {"name": "r", "key": "url"}, "failurePolicy": "closed"}}}
    (tmp_path / "up").mkdir()
    async with serving(tmp_path / "up", security, SecuritySettings(ratelimit_redis_url=redis_url)) as (url, gw), \
            httpx.AsyncClient() as client:
        await gw.security.limiter.reset()  # type: ignore[union-attr]
        assert [(await _infer(client, url)).status_code for _ in range(3)] == [200, 200, 429]
        assert _storage_failures(gw) == {"passed": 0.0, "refused": 0.0}
    (tmp_path / "down").mkdir()
    broken = SecuritySettings(ratelimit_redis_url="redis://127.0.0.1:1/0")
    async with serving(tmp_path / "down", security, broken) as (url, gw), httpx.AsyncClient() as client:
        answers = [await _infer(client, url) for _ in range(4)]
        assert [r.status_code for r in answers] == [503] * 4
        body = answers[0].json()
        assert body["code"] == "rate_limit_unavailable" and "failurePolicy closed" in body["error"], body
        assert answers[0].headers["Retry-After"] == "1"
        assert _storage_failures(gw) == {"passed": 0.0, "refused": 4.0}
        assert (await client.get(f"{url}/v2/health/live")).status_code == 200
