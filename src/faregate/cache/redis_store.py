"""The response cache in Redis (``state.redis``): one string per entry under ``PREFIX``, with the
model's TTL; shared by every worker of every instance. Imported only when ``state.redis`` is set.
A Redis error on a read is a miss, on a write the answer is not kept, on a purge it is reported."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("faregate.cache")

PREFIX = "faregate:rc:"  # the response cache's namespace in Redis
TIMEOUT_SECONDS = 0.5  # the most a lookup waits for Redis before it is a miss
WARN_EVERY_SECONDS = 30.0


class RedisStore:
    """Shared: one Redis string per entry under ``PREFIX``, set with its TTL (``PX``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: aioredis.Redis | None = None
        self._warned = 0.0

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        return self._client

    def _warn(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS or not self._warned:
            self._warned = now
            log.warning(f"response cache: redis unreachable ({exc.__class__.__name__}) on {what}; answering without the cache")

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis().get(PREFIX + key)
        except (RedisError, OSError) as exc:
            self._warn("a lookup", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        try:
            await self._redis().set(PREFIX + key, value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            self._warn("a store", exc)

    async def purge(self) -> int | None:
        """Every key under ``PREFIX`` (SCAN, never KEYS: Redis keeps serving), nothing else."""
        client = self._redis()
        count = 0
        batch: list[bytes] = []
        try:
            async for name in client.scan_iter(match=PREFIX + "*", count=500):
                batch.append(name)
                if len(batch) >= 500:
                    count += await client.unlink(*batch)
                    batch = []
            if batch:
                count += await client.unlink(*batch)
        except (RedisError, OSError) as exc:
            self._warn("a purge", exc)
            return None
        return count

    def clear_local(self) -> None:
        """Nothing is held here: the worker that was asked purges Redis."""

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
