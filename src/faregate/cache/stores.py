"""Where cached answers live: Redis when ``state.redis`` is set (shared by every worker of every
instance, each entry with its TTL), else a bounded in-process store per worker (LRU by entries and
by bytes, entries expiring by a clock that tests may advance).

A store failing is never the client's problem: a Redis error on a read is a miss, on a write the
answer is not kept (warned at most every ``WARN_EVERY_SECONDS``). Only faregate's own keys
(``redis_store.PREFIX``) are ever written or purged.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

MAX_ENTRIES = 2048  # the in-process store, per worker
MAX_BYTES = 64 << 20


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def purge(self) -> int | None:
        """Drop every cached answer of this store; how many were dropped (None: the store is unreachable)."""
        ...

    def clear_local(self) -> None:
        """Drop what this worker holds itself (a purge announced by another worker)."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """Per worker: at most ``max_entries`` entries and ``max_bytes`` bytes of values, the least
    recently used going first; an entry past its expiry is a miss (and removed)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.max_bytes, self.clock = max_entries, max_bytes, clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size = 0

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if self.clock() >= expires:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (self.clock() + ttl, value)
        self.size += len(value)
        while len(self._items) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self.size -= len(value)

    def __len__(self) -> int:
        return len(self._items)

    async def purge(self) -> int | None:
        count = len(self._items)
        self.clear_local()
        return count

    def clear_local(self) -> None:
        self._items.clear()
        self.size = 0

    async def close(self) -> None:
        self.clear_local()


def make_store(redis_url: str | None) -> Store:
    if not redis_url:
        return MemoryStore()
    from faregate.cache.redis_store import RedisStore  # redis only where state.redis is set

    return RedisStore(redis_url)
