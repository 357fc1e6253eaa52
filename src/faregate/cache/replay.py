"""A cached entry as the client's answer: a plain reply (the bytes the first plain answer had, else
written from the neutral reply) or a stream in the client's format, written by the client codec's
own stream encoder from the reply's events (``neutral.replay``), exactly as a translated stream is."""

from __future__ import annotations

import orjson

from faregate.cache.entry import Entry
from faregate.formats import neutral
from faregate.translate import CLIENT_CODECS


def body(entry: Entry, fmt: str) -> bytes:
    if entry.body is not None:
        return entry.body
    reply = entry.reply
    return orjson.dumps(CLIENT_CODECS[fmt].encode_reply(reply, reply.model, reply.id))


def stream(entry: Entry, fmt: str, include_usage: bool) -> bytes:
    """The whole stream, as the client's format writes it (``include_usage``: OpenAI's
    ``stream_options.include_usage``, honoured as the client asked this time)."""
    reply = entry.reply
    encoder = CLIENT_CODECS[fmt].StreamEncoder(reply.model, reply.id, include_usage=include_usage)
    out = [encoder.encode(event) for event in neutral.replay(reply)]
    out.append(encoder.close())
    return b"".join(out)
