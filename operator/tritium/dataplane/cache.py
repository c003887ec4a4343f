"""End-to-end response cache of the gateway: in memory by default, Redis when TRITIUM_REDIS_URL is set.

Keys hash the model, the version and a canonical form of the request (inputs and parameters,
never the request id header), so equal requests hit whichever client sent them. The cache is
best effort: a Redis that fails costs a miss and a log line, never a failed request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import orjson

log = logging.getLogger("tritium.gateway.cache")
KEY_PREFIX = "tritium:cache:"


@dataclass(frozen=True)
class CachedResponse:
    body: bytes
    content_type: str
    headers: dict[str, str]

    def encode(self) -> bytes:
        meta = orjson.dumps({"ct": self.content_type, "h": self.headers})
        return len(meta).to_bytes(4, "little") + meta + self.body

    @classmethod
    def decode(cls, blob: bytes) -> CachedResponse:
        n = int.from_bytes(blob[:4], "little")
        meta = orjson.loads(blob[4:4 + n])
        return cls(body=blob[4 + n:], content_type=meta["ct"], headers=meta["h"])


def cache_key(model: str, version: str, kind: str, *parts: bytes) -> str:
    h = hashlib.sha256()
    for part in (model.encode(), version.encode(), kind.encode(), *parts):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


class ResponseCache(Protocol):
    async def get(self, key: str) -> CachedResponse | None: ...
    async def set(self, key: str, value: CachedResponse) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    """LRU with a TTL, bounded by entry count (one process; each pod has its own)."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, CachedResponse]] = OrderedDict()

    async def get(self, key: str) -> CachedResponse | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: CachedResponse) -> None:
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    async def close(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class RedisCache:
    """Shared between pods: entries expire by Redis TTL; a sorted set of insertion times bounds the count."""

    def __init__(self, url: str, ttl_seconds: int, max_entries: int, namespace: str = "") -> None:
        import redis.asyncio as redis

        self.ttl = int(ttl_seconds)
        self.max_entries = max_entries
        self._prefix = KEY_PREFIX + (namespace + ":" if namespace else "")
        self._index = self._prefix + "index"
        self._redis = redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def get(self, key: str) -> CachedResponse | None:
        try:
            blob = await self._redis.get(self._prefix + key)
        except Exception as exc:  # any Redis failure is a miss
            log.warning("redis cache get failed: %s", exc)
            return None
        return CachedResponse.decode(blob) if blob else None

    async def set(self, key: str, value: CachedResponse) -> None:
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._prefix + key, value.encode(), ex=self.ttl)
                pipe.zadd(self._index, {key: now})
                pipe.zremrangebyscore(self._index, "-inf", now - self.ttl)  # expired by TTL anyway
                pipe.zcard(self._index)
                *_, count = await pipe.execute()
            if count > self.max_entries:
                oldest = await self._redis.zpopmin(self._index, count - self.max_entries)
                if oldest:
                    await self._redis.delete(*[self._prefix + k.decode() for k, _ in oldest])
        except Exception as exc:
            log.warning("redis cache set failed: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()
