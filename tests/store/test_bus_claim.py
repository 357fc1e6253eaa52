"""``ControlBus.claim``: the first caller takes a key for ``ttl`` seconds and everyone else, on any
worker (two connections to one SQLite file, or to one Redis), is told no until it lapses; it is
what deduplicates alerts across workers and instances."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faregate.store.redis_bus import RedisBus
from faregate.store.sqlite_bus import SqliteBus
from tests.support.redis import RedisServer


async def _claims(a: SqliteBus | RedisBus, b: SqliteBus | RedisBus) -> None:
    assert await a.claim("alert:x", 60) is True
    assert await b.claim("alert:x", 60) is False  # another worker, the same condition
    assert await a.claim("alert:x", 60) is False  # and the first one again
    assert await b.claim("alert:y", 60) is True  # another key is its own
    assert await a.claim("alert:short", 0.001) is True
    for _ in range(1000):  # lapses: ttl 1 ms (polled, never timed)
        if await b.claim("alert:short", 60):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("a claim did not lapse after its ttl")
    assert await a.claim("alert:short", 60) is False


def test_sqlite_claims(tmp_path: Path) -> None:
    async def run() -> None:
        a, b = SqliteBus(tmp_path / "control.db"), SqliteBus(tmp_path / "control.db")
        try:
            await _claims(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_redis_claims(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:

        async def run() -> None:
            a, b = RedisBus(server.url), RedisBus(server.url)
            try:
                await _claims(a, b)
            finally:
                await a.close()
                await b.close()

        asyncio.run(run())
