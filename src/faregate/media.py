"""OpenAI's endpoints beyond text: moderations, image generation, transcription and speech.

They are served on the diagonal only (an OpenAI-compatible upstream that has them: no other wire
protocol has an equivalent to translate into), and their replies go back as the upstream sent
them: speech is audio (``audio/mpeg``, ``audio/wav``, ... or ``text/event-stream`` with
``stream_format: sse``), relayed as it arrives and never held whole; a transcription is JSON or
plain text (``response_format``); any ``text/event-stream`` reply (a streamed transcription or
image) is relayed as read, like the audio.

Pricing where the table knows the unit: moderations are free (cost 0); an image, transcription or
speech reply that reports its usage in tokens (``gpt-image-1``, ``gpt-4o-transcribe``,
``gpt-4o-mini-tts``: ``input_tokens`` / ``output_tokens``) is priced from it with the model's
per-token price; anything else (``dall-e-3`` images, ``whisper-1``'s usage in seconds, audio
bytes, relayed streams) has an unknown cost (None, never $0): the price table has no unit per
image or per second.

``unservable``: a model none of whose deployments (fallbacks included) has a provider type that
serves the endpoint is the client's mistake, answered 400 ``unsupported_endpoint`` naming the route.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

import orjson

from faregate import costs
from faregate.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from faregate.generation import Deployment, Generation, ModelRoute
from faregate.providers import SUPPORTED, openai
from faregate.providers.base import Transport
from faregate.routing import targets
from faregate.types import Endpoint, Usage
from faregate.upstream import Reply

ENDPOINTS: frozenset[Endpoint] = frozenset({"moderations", "images_generations", "audio_transcriptions", "audio_speech"})
NO_STREAM_USAGE: frozenset[Endpoint] = ENDPOINTS | {"embeddings"}  # no stream_options to ask for a stream's usage
# The route a client calls for each endpoint, as errors name it (Azure-style and bare paths are the same routes).
ROUTES: dict[str, str] = {
    "chat": "POST /v1/chat/completions",
    "completions": "POST /v1/completions",
    "embeddings": "POST /v1/embeddings",
    "messages": "POST /v1/messages",
    "count_tokens": "POST /v1/messages/count_tokens",
    "responses": "POST /v1/responses",
    "moderations": "POST /v1/moderations",
    "images_generations": "POST /v1/images/generations",
    "audio_transcriptions": "POST /v1/audio/transcriptions",
    "audio_speech": "POST /v1/audio/speech",
}


class Exchanged(Protocol):
    """What ``relay`` needs of the request's Exchange (pipeline.Exchange): filled in as it goes."""

    endpoint: Endpoint
    started: float
    ttfb: float | None
    usage: Usage | None
    cost: float | None
    status: int
    error_code: str | None


async def relay(
    ex: Exchanged, dep: Deployment, reply: Reply, transport: Transport, gen: Generation
) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """The reply of a successful status, as (body, None) or, for audio and event streams, (b"",
    the bytes as they come). A JSON reply is checked for an error object (a 200 that is an error is
    the upstream error it names) and priced from its usage, if in tokens."""
    content_type = reply.content_type
    if ex.endpoint == "audio_speech" or content_type.startswith(b"text/event-stream"):
        return b"", _as_read(ex, reply.chunks(gen.server.stream_heartbeat))
    body = await reply.read(gen.server.max_reply_bytes)
    if content_type.startswith(b"application/json"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("reply is not valid JSON") from exc
        failure = transport.error_in_reply(data, reply.headers, body, content_type, time.time())
        if failure is not None:
            raise failure
        if ex.endpoint != "moderations":
            ex.usage = openai.media_usage(data)
    elif ex.endpoint != "audio_transcriptions":  # a transcription may be text (response_format text, srt, vtt); the rest is JSON
        raise UpstreamProtocolError(f"answered {ex.endpoint} with {content_type.decode('latin-1')[:80]}, not application/json")
    ex.cost = 0.0 if ex.endpoint == "moderations" else costs.cost(ex.usage, dep.price)
    return body, None


async def _as_read(ex: Exchanged, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The reply's bytes as they arrive. Silence is not filled (no byte can be added to audio); an
    upstream that fails midway ends the reply without its last chunk (the client sees it cut)."""
    try:
        async for data in chunks:
            if data:  # upstream.HEARTBEAT (b"") marks silence
                if ex.ttfb is None:
                    ex.ttfb = time.perf_counter() - ex.started
                yield data
    except UpstreamError:
        ex.status, ex.error_code = 502, "stream_interrupted"
        raise
    finally:  # also when the client went away: the upstream connection is closed or returned now
        await chunks.aclose()  # type: ignore[attr-defined]


def unservable(gen: Generation, route: ModelRoute, endpoint: Endpoint) -> InvalidRequest | None:
    """The 400 for a model none of whose deployments, nor its fallbacks', can serve ``endpoint``
    (their provider types have no such endpoint); None when one could."""
    reasons: list[str] = []
    for target, _ in targets(gen, route):
        for dep in target.deployments:
            if endpoint in SUPPORTED[dep.provider.type]:
                return None
            reasons.append(f"{dep.label}: provider type {dep.provider.type} has no {endpoint} endpoint")
    where = ROUTES.get(endpoint, endpoint)
    return InvalidRequest(
        f"model '{route.name}' cannot serve {where}: its deployments ({'; '.join(reasons) or 'none'}) cannot; "
        f"use a model with a deployment on a provider that has {where.partition(' ')[2]}",
        param="model",
        code="unsupported_endpoint",
    )
