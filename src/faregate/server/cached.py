"""The response cache's hooks in a proxied request's life (``proxy.handle``), for a public model
with ``cache: {ttl}`` only: a model without it costs one ``route.cache_ttl is None`` check.

Before admission, ``lookup`` answers a hit (no rate-limited tokens, no budget reservation, no
upstream call) or returns where a fresh answer is to be kept. After the answer was sent, ``keep``
(a plain reply) or ``keep_stream`` (a stream, captured as it was relayed by ``Capture``: the same
chunks, at the same moments) store it, only when it was a 200 that ended cleanly. The store is
awaited before the request is recorded (its access line, metrics and spend row): the client already
has its answer, and a request whose line is written can be found in the cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from faregate.cache import entry, replay
from faregate.cache.key import cache_key, cacheable, directives, tenant
from faregate.gateway import Gateway
from faregate.pipeline import Answer, Exchange
from faregate.providers import CONVERSATION
from faregate.server.http import Scope, header


@dataclass(frozen=True, slots=True)
class Pending:
    """Where the fresh answer of a miss (or of a ``no-cache`` request) is kept, and for how long."""

    key: str
    ttl: float


async def lookup(gw: Gateway, ex: Exchange, payload: dict[str, Any], scope: Scope, ttl: float) -> tuple[Pending | None, Answer | None]:
    """(where to keep the fresh answer, None) or (None, the cached answer). Sets ``ex.cache``; a
    hit also its saved cost, cost 0 and 0 tokens (it counts against requests per minute and
    parallel requests, not tokens per minute or the budget)."""
    if ex.endpoint not in CONVERSATION:  # embeddings, token counts, ...: never cached, nothing said
        return None, None
    wanted = directives(header(scope, b"cache-control"))
    if ex.format not in entry.READABLE or not cacheable(payload):
        ex.cache = "uncacheable"
        return None, None
    if not wanted.store:
        ex.cache = "no_store"
        return None, None
    pending = Pending(cache_key(tenant(ex.key_id, ex.team_id), ex.format, ex.endpoint, ex.model, payload), ttl)
    if not wanted.read:
        ex.cache = "no_cache"
        return pending, None
    data = await gw.cache.get(pending.key)
    found = entry.loads(data) if data is not None else None
    answer = _replayed(found, ex, payload) if found is not None else None
    if found is None or answer is None:
        ex.cache = "miss"
        return pending, None
    ex.cache, ex.saved_cost, ex.cost, ex.tokens = "hit", found.cost, 0.0, 0
    return None, answer


def _replayed(found: entry.Entry, ex: Exchange, payload: dict[str, Any]) -> Answer | None:
    try:
        if ex.stream:
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return Answer(200, b"text/event-stream", stream=_once(replay.stream(found, ex.format, include_usage)))
        return Answer(200, b"application/json", replay.body(found, ex.format))
    except Exception:  # noqa: BLE001 - an entry this client format cannot be written from: a miss
        return None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def keep(gw: Gateway, pending: Pending, ex: Exchange, answer: Answer) -> None:
    """Store a plain answer that was a 200."""
    if answer.status != 200 or ex.status != 200 or ex.error_code is not None:
        return
    await _put(gw, pending, entry.from_body(ex.format, answer.body, ex.usage, ex.cost))


class Capture:
    """The chunks of a relayed stream, kept as they pass (up to ``entry.MAX_ENTRY_BYTES``)."""

    __slots__ = ("chunks", "overflow", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def around(self, answer: Answer) -> Answer:
        assert answer.stream is not None
        return Answer(answer.status, answer.content_type, stream=self._relay(answer.stream))

    async def _relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for data in chunks:
                if not self.overflow:
                    self.size += len(data)
                    if self.size > entry.MAX_ENTRY_BYTES:
                        self.overflow, self.chunks = True, []
                    else:
                        self.chunks.append(data)
                yield data
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]


async def keep_stream(gw: Gateway, pending: Pending, ex: Exchange, capture: Capture) -> None:
    """Store a stream that ended cleanly (a 200, no cut, the client stayed)."""
    if ex.status != 200 or ex.error_code is not None or capture.overflow:
        return
    await _put(gw, pending, entry.from_stream(ex.format, capture.chunks, ex.usage, ex.cost))


async def _put(gw: Gateway, pending: Pending, found: entry.Entry | None) -> None:
    data = entry.dumps(found) if found is not None else None
    if data is not None:
        await gw.cache.put(pending.key, data, pending.ttl)
