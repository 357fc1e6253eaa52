"""What one cached answer holds, and its bytes in a store.

An entry is the answer in the neutral model (``formats.neutral.Reply``: text, thinking and tool-call
blocks, the finish, the usage), from which a replay writes the client's reply or stream; the
client's own bytes when the answer was a plain reply (a plain request is then answered with exactly
the bytes it got the first time); and what the answer cost (a hit saves that). A plain reply is read
with the client format's codec; a streamed one is collected from the events the client was sent.
Only formats with a reader of their own replies (``READABLE``) are cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from faregate.formats import neutral
from faregate.providers import sse
from faregate.translate import PROVIDER_CODECS
from faregate.types import Usage

READABLE = frozenset(PROVIDER_CODECS) & {"openai_chat", "anthropic"}  # client formats whose replies faregate can read back
MAX_ENTRY_BYTES = 1 << 20  # a larger answer is not cached (both stores)
VERSION = 1


@dataclass(slots=True)
class Entry:
    reply: neutral.Reply
    body: bytes | None  # the client's bytes of a plain answer (None: the answer was streamed)
    cost: float | None  # what the answer cost when it was fetched (None: unpriced)


def dumps(entry: Entry) -> bytes | None:
    """The entry's bytes; None when it cannot be kept (a body that is not UTF-8, or too large)."""
    try:
        body = entry.body.decode() if entry.body is not None else None
    except UnicodeDecodeError:
        return None
    data = orjson.dumps({"v": VERSION, "reply": entry.reply, "body": body, "cost": entry.cost})
    return data if len(data) <= MAX_ENTRY_BYTES else None


def loads(data: bytes) -> Entry | None:
    """An entry, or None for bytes this version cannot read (an older format, damage): a miss."""
    try:
        raw = orjson.loads(data)
        if raw.get("v") != VERSION:
            return None
        r = raw["reply"]
        reply = neutral.Reply(
            id=r["id"],
            model=r["model"],
            blocks=[neutral.Block(**b) for b in r["blocks"]],
            finish=neutral.Finish(**r["finish"]) if r["finish"] is not None else None,
            usage=neutral.Usage(**r["usage"]),
        )
        body = raw["body"]
        return Entry(reply, body.encode() if body is not None else None, raw["cost"])
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None


def _with_usage(reply: neutral.Reply, usage: Usage | None) -> neutral.Reply:
    """The reply with the usage faregate priced (a stream may not have shown it to the client)."""
    if usage is not None and usage.anomaly is None:
        fresh = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_5m - usage.cache_write_1h
        reply.usage = neutral.Usage(
            input=fresh,
            cache_read=usage.cached_tokens or None,
            cache_write_5m=usage.cache_write_5m or None,
            cache_write_1h=usage.cache_write_1h or None,
            output=usage.completion_tokens,
            reasoning=usage.reasoning_tokens or None,
        )
    return reply


def from_body(fmt: str, body: bytes, usage: Usage | None, cost: float | None) -> Entry | None:
    """The entry of a plain answer in the client's format ``fmt``; None when it cannot be read
    back or holds an error."""
    try:
        data = orjson.loads(body)
        reply = PROVIDER_CODECS[fmt].decode_reply(data)
    except Exception:  # noqa: BLE001 - a reply faregate cannot read back: not cached
        return None
    if reply.error is not None or reply.finish is None:
        return None
    return Entry(_with_usage(reply, usage), body, cost)


def from_stream(fmt: str, chunks: list[bytes], usage: Usage | None, cost: float | None) -> Entry | None:
    """The entry of a stream the client was sent, in its format ``fmt``, collected from its events;
    None when it did not end as that format ends a stream, or holds an error."""
    splitter = sse.Splitter(MAX_ENTRY_BYTES)
    decoder: Any = PROVIDER_CODECS[fmt].StreamDecoder()
    events: list[neutral.Event] = []
    try:
        complete = [event for chunk in chunks for event in splitter.feed(chunk)]
        for event in complete:
            value = sse.data_of(event)
            if value is None:
                continue
            if value == b"[DONE]":
                end = getattr(decoder, "end", None)
                events.extend(end() if end is not None else [])
                break
            data = orjson.loads(value)
            if type(data) is not dict:
                return None
            events.extend(decoder.feed(data))
    except Exception:  # noqa: BLE001 - an event faregate cannot read back: not cached
        return None
    reply = neutral.collect(events)
    if reply.error is not None or reply.finish is None:
        return None
    return Entry(_with_usage(reply, usage), None, cost)
