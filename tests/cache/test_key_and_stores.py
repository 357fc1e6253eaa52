"""The response cache's key (canonical request, tenant, Cache-Control) and its in-process store
(TTL by an advanced clock, LRU by entries and by bytes), without a gateway."""

from __future__ import annotations

import asyncio
from typing import Any

from faregate.cache.key import Directives, cache_key, cacheable, canonical, directives, tenant
from faregate.cache.stores import MemoryStore

BASE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "max_tokens": 50}


def key(payload: dict[str, Any], who: str = "team:t1", fmt: str = "openai_chat", endpoint: str = "chat") -> str:
    return cache_key(who, fmt, endpoint, "m", payload)


def test_fields_that_do_not_change_the_answer_are_not_keyed() -> None:
    same = {**BASE, "user": "alice", "metadata": {"a": 1}, "stream": True, "stream_options": {"include_usage": True}, "store": False}
    assert key(same) == key(BASE)
    assert key(dict(reversed(list(BASE.items())))) == key(BASE)  # key order does not matter
    assert canonical({"b": {"y": 1, "x": 2}, "a": 1}) == b'{"a":1,"b":{"x":2,"y":1}}'


def test_what_changes_the_answer_is_keyed() -> None:
    variants = [
        {**BASE, "temperature": 0.3},
        {**BASE, "top_p": 0.5},
        {**BASE, "max_tokens": 51},
        {**BASE, "stop": ["x"]},
        {**BASE, "messages": [{"role": "user", "content": "hi!"}]},
        {**BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {**BASE, "tool_choice": "none"},
        {**BASE, "response_format": {"type": "json_object"}},
        {**BASE, "seed": 1},
    ]
    keys = {key(v) for v in variants}
    assert len(keys) == len(variants) and key(BASE) not in keys


def test_tenants_formats_and_endpoints_never_share_a_key() -> None:
    assert tenant("k1", "t1") == "team:t1" and tenant("k1", None) == "key:k1" and tenant(None, None) == "master"
    assert len({key(BASE, "team:t1"), key(BASE, "team:t2"), key(BASE, "key:k1"), key(BASE, "master")}) == 4
    assert key(BASE, fmt="anthropic", endpoint="messages") != key(BASE)
    assert cache_key("ab", "c", "chat", "m", BASE) != cache_key("a", "bc", "chat", "m", BASE)  # parts cannot run together


def test_cache_control_directives() -> None:
    assert directives(None) == Directives(True, True)
    assert directives(b"max-age=0") == Directives(True, True)
    assert directives(b"No-Cache") == Directives(read=False, store=True)
    assert directives(b"no-cache, no-store") == Directives(read=False, store=False)
    assert directives(b"no-store") == Directives(read=False, store=False)


def test_several_choices_or_logprobs_are_not_cacheable() -> None:
    assert cacheable(BASE) and cacheable({**BASE, "n": 1})
    assert not cacheable({**BASE, "n": 2}) and not cacheable({**BASE, "logprobs": True})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_expires_entries_by_its_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)

    async def run() -> None:
        await store.put("a", b"x", ttl=5)
        clock.now += 4.999
        assert await store.get("a") == b"x"
        clock.now += 0.001
        assert await store.get("a") is None
        assert len(store) == 0 and store.size == 0

    asyncio.run(run())


def test_memory_store_is_bounded_by_entries_and_bytes_least_recently_used_first() -> None:
    store = MemoryStore(max_entries=3, max_bytes=10)

    async def run() -> None:
        for name in "abc":
            await store.put(name, b"12", ttl=60)
        assert await store.get("a") == b"12"  # a is now the most recently used
        await store.put("d", b"12", ttl=60)
        assert await store.get("b") is None and await store.get("a") == b"12" and len(store) == 3
        await store.put("e", b"1234567", ttl=60)  # 2 + 2 + 2 + 7 > 10: the least recently used go
        assert store.size <= 10 and await store.get("e") == b"1234567"
        assert await store.get("c") is None
        await store.put("huge", b"x" * 11, ttl=60)  # larger than the whole store: not kept
        assert await store.get("huge") is None
        held = len(store)
        assert held > 0 and await store.purge() == held and len(store) == 0 and store.size == 0

    asyncio.run(run())
