"""The gateway's security layers, in the order a request meets them: allowlist, API key, rate limit.

Cheapest and least revealing first: a client outside the allowlist learns nothing about keys
(403 before 401), and a request without a valid key is refused before it can spend anyone's rate
limit. Health endpoints are exempt (kubelet probes from the node's address, carrying no key); the
metrics port is a separate server and never passes through here.

Each refusal is an ApiError, so it is answered in the gateway's error JSON and counted in
tritium_gateway_requests like any other answer. The key's id (never the key) is kept in the
request's state for later layers (audit) and counted per key: tritium_gateway_key_requests (by
endpoint and status code, so errors are its 4xx/5xx codes), and bytes received and sent and
inference seconds, per key only (a key's usage, not a second breakdown of the requests counter).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from tritium.api.spec import SecuritySpec
from tritium.dataplane.errors import ApiError
from tritium.dataplane.http.server import Request
from tritium.dataplane.security.apikeys import KeyFile, presented_key
from tritium.dataplane.security.clientip import Address, Network, client_address, parse_networks, within
from tritium.dataplane.security.ratelimit import RateLimiter, StorageUnavailable
from tritium.dataplane.security.signing import SIGNING_KEY_FILE_ENV

API_KEYS_FILE_ENV = "TRITIUM_API_KEYS_FILE"
RATELIMIT_REDIS_URL_ENV = "TRITIUM_RATELIMIT_REDIS_URL"
KEY_ID_STATE = "api_key_id"
CLIENT_STATE = "client_address"
# The probes' endpoints: open to anyone (kubelets and load balancers carry no key), never signed nor audited.
OPEN_ENDPOINTS = frozenset(("live", "ready"))
_CHALLENGE = 'Bearer realm="tritium"'
_MAX_KEY_CHILDREN = 1_000
_MAX_VERDICTS = 65_536  # allowlist answers kept; cleared whole when full (a scan of many addresses)


@dataclass
class SecuritySettings:
    """What the gateway process was given besides the spec: where the keys are mounted, the limiter's Redis."""

    api_keys_file: str | None = None
    ratelimit_redis_url: str | None = None
    signing_key_file: str | None = None  # dataplane/security/signing.py

    @classmethod
    def from_env(cls) -> SecuritySettings:
        return cls(os.environ.get(API_KEYS_FILE_ENV) or None, os.environ.get(RATELIMIT_REDIS_URL_ENV) or None,
                   os.environ.get(SIGNING_KEY_FILE_ENV) or None)


class Security:
    """The layers one gateway enforces, built from its spec; ``enabled`` is False when none is set."""

    def __init__(self, spec: SecuritySpec, settings: SecuritySettings, registry: CollectorRegistry,
                 namespace: str = "tritium") -> None:
        self.allow: tuple[Network, ...] | None = (
            parse_networks(spec.ip_allowlist, "ipAllowlist") if spec.ip_allowlist is not None else None)
        self.trusted = parse_networks(spec.trusted_proxies or (), "trustedProxies")
        self.keys: KeyFile | None = None
        if spec.api_keys_secret_ref is not None:
            if not settings.api_keys_file:
                # Serving without the keys would be a silent no-op of the field: refuse to start.
                raise ValueError(f"spec.security.apiKeysSecretRef is set but {API_KEYS_FILE_ENV} is not")
            self.keys = KeyFile(settings.api_keys_file)
        self.limiter: RateLimiter | None = None
        self.limit_per_key = False
        limit = spec.rate_limit
        if limit is not None:
            if limit.redis is not None and not settings.ratelimit_redis_url:
                raise ValueError(f"spec.security.rateLimit.redis is set but {RATELIMIT_REDIS_URL_ENV} is not")
            self.limiter = RateLimiter(limit.requests_per_second, limit.burst,
                                       settings.ratelimit_redis_url if limit.redis else None, namespace,
                                       fail_closed=limit.redis is not None and limit.redis.failure_policy == "closed",
                                       on_failure=self._storage_failed)
            self.limit_per_key = limit.per == "key" and self.keys is not None
        self.enabled = self.allow is not None or self.keys is not None or self.limiter is not None
        self.key_requests = Counter(
            "tritium_gateway_key_requests", "Requests answered, by the id of the API key that made them.",
            ["key", "endpoint", "code"], registry=registry,
        )
        self.key_received = Counter(
            "tritium_gateway_key_received_bytes", "Request body bytes received, by API key id.", ["key"],
            registry=registry)
        self.key_sent = Counter(
            "tritium_gateway_key_sent_bytes", "Response body bytes sent, by API key id.", ["key"], registry=registry)
        self.key_inference = Counter(
            "tritium_gateway_key_inference_seconds", "Seconds spent answering inference calls (infer, invoke, "
            "stream), by API key id.", ["key"], registry=registry)
        storage_failures = Counter(
            "tritium_gateway_ratelimit_storage_failures", "Requests decided while the rate limit's Redis could "
            "not be reached, by outcome: passed (failurePolicy open) or refused (closed, a 503).", ["outcome"],
            registry=registry)
        self._storage_outcomes = {True: storage_failures.labels("refused"), False: storage_failures.labels("passed")}
        self._children: dict[tuple[str, str, int], Any] = {}
        self._usage: dict[str, tuple[Any, Any, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._verdicts: dict[Address, bool] = {}

    async def start(self) -> None:
        if self.keys is not None:
            self.keys.poll()
            self._task = asyncio.create_task(self.keys.watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.limiter is not None:
            await self.limiter.close()

    async def admit(self, request: Request, endpoint: str) -> None:
        """Raise the refusal (403, 401, 429) of a request that may not go on; note who made it."""
        if endpoint in OPEN_ENDPOINTS:
            return
        address = None
        if self.allow is not None or (self.limiter is not None and not self.limit_per_key):
            address = client_address(request.peer, request.headers.get("x-forwarded-for"), self.trusted)
            request.state[CLIENT_STATE] = address
        if self.allow is not None and (address is None or not self._allowed(address)):
            raise ApiError(403, "forbidden", f"client address {address or 'unknown'} is not in the allowlist")
        key_id = None
        if self.keys is not None:
            presented = presented_key(request.headers)
            if presented is None:
                raise ApiError(401, "unauthorized", "an API key is required: Authorization: Bearer KEY or "
                               "X-API-Key: KEY", headers={"WWW-Authenticate": _CHALLENGE})
            key_id = self.keys.keys.identify(presented)
            if key_id is None:
                raise ApiError(401, "unauthorized", "the API key is not valid",
                               headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'})
            request.state[KEY_ID_STATE] = key_id
        if self.limiter is not None:
            identity = f"key:{key_id}" if self.limit_per_key else f"ip:{address or 'unknown'}"
            try:
                refused = await self.limiter.check(identity)
            except StorageUnavailable as exc:
                raise ApiError(503, "rate_limit_unavailable", f"the rate limit's storage cannot be reached ({exc}); "
                               "requests are refused until it is back (failurePolicy closed)",
                               headers={"Retry-After": "1"}) from None
            if refused is not None:
                headers = refused.headers()
                raise ApiError(429, "rate_limited", f"rate limit exceeded; retry after {headers['Retry-After']} s",
                               headers=headers)

    def _storage_failed(self, refused: bool) -> None:
        self._storage_outcomes[refused].inc()

    def _allowed(self, address: Address) -> bool:
        """Allowlist membership, remembered per address (a CIDR test per network costs microseconds)."""
        allowed = self._verdicts.get(address)
        if allowed is None:
            assert self.allow is not None
            allowed = within(address, self.allow)
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[address] = allowed
        return allowed

    def client(self, request: Request) -> Address | None:
        """The client's address as the allowlist resolves it (peer, or X-Forwarded-For past trusted proxies)."""
        address = request.state.get(CLIENT_STATE)
        if address is None:
            address = client_address(request.peer, request.headers.get("x-forwarded-for"), self.trusted)
            request.state[CLIENT_STATE] = address
        return address

    def count(self, request: Request, endpoint: str, status: int, sent: int = 0, inference: float = 0.0) -> None:
        """Count an answered request under its key id (requests without a valid key are not counted here):
        the request, its body bytes, the ``sent`` response bytes and the ``inference`` seconds."""
        key_id = request.state.get(KEY_ID_STATE)
        if key_id is None:
            return
        usage = self._usage.get(key_id)
        if usage is None:
            usage = (self.key_received.labels(key_id), self.key_sent.labels(key_id), self.key_inference.labels(key_id))
            if len(self._usage) < _MAX_KEY_CHILDREN:
                self._usage[key_id] = usage
        if request.body:
            usage[0].inc(len(request.body))
        if sent:
            usage[1].inc(sent)
        if inference:
            usage[2].inc(inference)
        ident = (key_id, endpoint, status)
        child = self._children.get(ident)
        if child is None:
            child = self.key_requests.labels(key_id, endpoint, str(status))
            if len(self._children) < _MAX_KEY_CHILDREN:
                self._children[ident] = child
        child.inc()
