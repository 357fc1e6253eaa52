"""Translation off the diagonal: a request in its client's format sent to a provider that speaks
another, and the reply brought back (DESIGN.md, Protocols). No I/O: bytes and data in and out.

The pipeline asks for it only when the client's format differs from the deployment's transport
format (the diagonal stays bytes; a provider that speaks the client's format itself is a diagonal,
``providers.native``; the mock answers OpenAI Chat and Anthropic as they are and has any other
client format translated for it, as a provider of OpenAI Chat). One ``Translator`` per
request decodes the client's payload once into the neutral model (``formats.neutral``); each
attempt encodes that for its deployment's format (``prepare``: the deployment's ``drop_params``
decides whether a field the format cannot carry is a 400 naming it or dropped and disclosed) and
translates the reply: whole (``reply``) or streamed (``stream``, a stream watch the relay feeds
complete SSE events to). Usage is taken from the neutral reply and priced exactly as on the
diagonal, so a request costs the same streamed or not.

A new format is one codec module and one line in ``CLIENT_CODECS`` (a format clients speak), in
``PROVIDER_CODECS`` (a format transports speak), or both; nothing here names a format otherwise.
What differs per client format outside translation goes through its client codec too: the
heartbeat, the event that ends a cut stream (``cut_event``), an upstream's 4xx in the client's
shape (``passthrough_body``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from faregate import costs
from faregate.errors import (
    CredentialRejected,
    InvalidRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from faregate.formats import anthropic, bedrock_converse, gemini, neutral, openai_chat, openai_responses
from faregate.generation import Deployment
from faregate.providers import sse
from faregate.providers.base import Transport
from faregate.types import Usage


class Decoder(Protocol):
    done: bool

    def feed(self, data: dict[str, Any]) -> list[neutral.Event]: ...


class Encoder(Protocol):
    heartbeat: bytes

    def encode(self, event: neutral.Event) -> bytes: ...

    def close(self) -> bytes: ...


class ProviderCodec(Protocol):
    """What a codec module provides for a format transports speak (ISSUE10.md, "Codec module API"):
    requests encoded into it, its replies and streams decoded."""

    @property
    def NAME(self) -> str: ...

    def encode_request(self, request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]: ...

    def decode_reply(self, data: dict[str, Any]) -> neutral.Reply: ...

    @property
    def StreamDecoder(self) -> Callable[[], Decoder]: ...


class ClientCodec(Protocol):
    """What a codec module provides for a format clients speak: their requests decoded, replies
    and streams encoded, errors in their shape (whole, as a stream's last event, an upstream's 4xx
    passed on), the heartbeat written between a stream's events."""

    @property
    def NAME(self) -> str: ...

    @property
    def HEARTBEAT(self) -> bytes: ...

    def decode_request(self, payload: dict[str, Any]) -> neutral.Request: ...

    def encode_reply(self, reply: neutral.Reply, model: str, id: str) -> dict[str, Any]: ...

    @property
    def StreamEncoder(self) -> Callable[..., Encoder]: ...

    def error_body(self, status: int, kind: str, message: str, code: str | None) -> bytes: ...

    def error_event(self, kind: str, message: str, code: str | None) -> bytes: ...

    def own_error(self, data: Any) -> bool: ...

    def upstream_error_body(self, status: int, upstream_type: str | None, message: str) -> bytes: ...


class Codec(ProviderCodec, ClientCodec, Protocol):
    """A format spoken both ways (OpenAI Chat, Anthropic Messages)."""


# Formats clients speak (a route's Front names one) and formats transports speak (Transport.format).
CLIENT_CODECS: dict[str, ClientCodec] = {
    openai_chat.NAME: openai_chat,
    anthropic.NAME: anthropic,
    openai_responses.NAME: openai_responses,
}
PROVIDER_CODECS: dict[str, ProviderCodec] = {openai_chat.NAME: openai_chat, anthropic.NAME: anthropic}
PROVIDER_CODECS[bedrock_converse.NAME] = bedrock_converse
PROVIDER_CODECS[gemini.NAME] = gemini
CODECS = PROVIDER_CODECS  # the provider codecs under their issue-10 name

# Dropped whatever drop_params says (issue 10, item 8): a thinking signature binds to the Anthropic
# account that made it, so a request failing over elsewhere loses it, and says so.
ALWAYS_DROPPABLE = frozenset({"thinking"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # a field name that may be echoed in a header or a message


def shown(name: str) -> str:
    """A client's field name as faregate may echo it (a response header, an error message): token
    characters only, at most 64 (a JSON key can hold anything, CR and LF included)."""
    if _SAFE_NAME.fullmatch(name):
        return name
    return re.sub(r"[^A-Za-z0-9_.\-]", "?", name[:64]) or "?"


class Translator:
    """One request's translation, from its client's format. The client's payload is decoded at most
    once, on the first attempt that needs it."""

    __slots__ = ("_request", "client", "include_usage", "payload")

    def __init__(self, client_format: str, payload: dict[str, Any]) -> None:
        self.client = CLIENT_CODECS[client_format]
        self.payload = payload
        self._request: neutral.Request | None = None
        options = payload.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True

    @property
    def request(self) -> neutral.Request:
        """The client's request in the neutral model; InvalidRequest (a 400 in the client's format)
        when the client codec cannot read it."""
        if self._request is None:
            self._request = self.client.decode_request(self.payload)
        return self._request

    def prepare(self, target_format: str, dep: Deployment) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The payload for ``dep`` and the fields left out of it. A field the target cannot carry is
        a 400 naming it unless ``dep.drop_params`` (then it is dropped and the caller discloses it
        in ``x-faregate-dropped``); a thinking signature is always dropped and disclosed."""
        payload, left_out = PROVIDER_CODECS[target_format].encode_request(self.request, dep.model)
        dropped = tuple(shown(name) for name in left_out)
        refused = [name for name in dropped if name not in ALWAYS_DROPPABLE]
        if refused and not dep.drop_params:
            names = ", ".join(refused)
            raise InvalidRequest(
                f"{names} cannot be carried to deployment {dep.label} (it speaks {target_format}); "
                f"remove {'it' if len(refused) == 1 else 'them'}, or set drop_params: true on that deployment "
                "to have faregate drop what it cannot carry (named in the x-faregate-dropped header)",
                param=refused[0],
                code="unsupported_parameter",
            )
        return payload, dropped

    def reply(
        self, transport: Transport, body: bytes, headers: Mapping[str, str], content_type: bytes, model: str, id: str
    ) -> tuple[bytes, Usage | None]:
        """A whole upstream reply (success status) in the client's format, and its usage (None: not
        reported). An error object in it is the error it names (``Transport.error_in_reply``)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("reply is not valid JSON") from exc
        if type(data) is not dict:
            raise UpstreamProtocolError("reply is not a JSON object")
        if "error" in data:
            failed = transport.error_in_reply(data, headers, body, content_type, time.time())
            if failed is not None:
                raise failed
        reply = _decoded(PROVIDER_CODECS[transport.format].decode_reply, data)
        if reply.error is not None:
            raise failure(reply.error)
        usage = None if reply.usage == _NO_USAGE else costs.usage_from_neutral(reply.usage)
        return bytes(memoryview(orjson.dumps(self.client.encode_reply(reply, model, id)))), usage  # right-sized: base.UpstreamRequest

    def stream(self, transport: Transport, model: str, id: str) -> StreamTranslator:
        """The stream watch that translates one upstream stream into the client's events."""
        encoder = self.client.StreamEncoder(model, id, include_usage=self.include_usage)
        return StreamTranslator(PROVIDER_CODECS[transport.format], encoder, transport.stream_events(strip=False).end)


_NO_USAGE = neutral.Usage()


def _decoded(decode: Callable[[dict[str, Any]], neutral.Reply], data: dict[str, Any]) -> neutral.Reply:
    try:
        return decode(data)
    except (InvalidRequest, KeyError, TypeError, ValueError) as exc:  # a reply the codec cannot read
        raise UpstreamProtocolError(f"reply could not be read: {exc}") from exc


def failure(error: neutral.Error) -> UpstreamError:
    """An error the upstream reported inside a reply or a stream, as the attempt's failure."""
    reason = f"upstream error ({error.kind}): {error.message}"
    if error.kind == "rate_limit":
        return UpstreamRateLimited(reason, code=error.code)
    if error.kind in ("authentication", "permission"):
        return CredentialRejected(reason, code=error.code)
    return UpstreamServerError(reason, status=529 if error.kind == "overloaded" else None, code=error.code)


class StreamTranslator:
    """A stream watch (as ``Transport.stream_events``) that translates: complete upstream SSE
    events in, the client's events out. The relay splits the upstream's events, writes the client's
    heartbeat between them and ends a cut stream with the client's error event; this decodes each
    event's data with the provider codec and encodes the neutral events with the client codec.
    An upstream error event is raised as the attempt's failure (the relay ends the stream with it)."""

    __slots__ = ("_usage", "decoder", "done", "encoder", "end", "seen", "usage")

    def __init__(self, source: ProviderCodec, encoder: Encoder, end: str) -> None:
        self.decoder = source.StreamDecoder()
        self.encoder = encoder
        self.end = end
        self.done = False
        self.seen = 0
        self._usage: neutral.Usage | None = None  # what the usage events said so far, merged
        self.usage: Usage | None = None  # the same, as faregate prices it

    def feed(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        try:
            return self._feed(events, out)
        except UpstreamError as err:  # what the good events before the bad one became goes out first
            err.before = b"".join(out)
            raise

    def _feed(self, events: list[bytes], out: list[bytes]) -> bytes:
        for event in events:
            self.seen += 1
            value = sse.data_of(event)
            if value is None or self.done:  # a comment, a keep-alive; or anything after the end
                continue
            if value == b"[DONE]":  # OpenAI's end: the decoder is told, and flushes what it holds
                end = getattr(self.decoder, "end", None)
                self._encode(end() if end is not None else [], out)
                self._finish(out)
                continue
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError:
                data = None
            if type(data) is not dict:
                raise UpstreamProtocolError(
                    f"event {self.seen} of the stream is not a JSON object ({len(value)} bytes of data)", code="upstream_malformed_event"
                )
            try:
                decoded = self.decoder.feed(data)
            except (InvalidRequest, KeyError, TypeError, ValueError) as exc:
                raise UpstreamProtocolError(
                    f"event {self.seen} of the stream could not be read: {exc}", code="upstream_malformed_event"
                ) from exc
            self._encode(decoded, out)
            if self.decoder.done:
                self._finish(out)
        return b"".join(out)

    def _encode(self, events: list[neutral.Event], out: list[bytes]) -> None:
        for event in events:
            if isinstance(event, neutral.Error):
                raise failure(event)
            if isinstance(event, neutral.Usage):
                self._usage = event if self._usage is None else neutral.merge_usage(self._usage, event)
                self.usage = costs.usage_from_neutral(self._usage)
            out.append(self.encoder.encode(event))

    def _finish(self, out: list[bytes]) -> None:
        if not self.done:
            self.done = True
            out.append(self.encoder.close())

    def error_event(self, kind: str, message: str, code: str | None) -> bytes | None:
        """The event that ends this stream cut midway, written by the client's encoder when it keeps
        state the event must carry (Responses' sequence numbers); None: the codec's own will do."""
        own = getattr(self.encoder, "error_event", None)
        return own(kind, message, code) if own is not None else None


def cut_event(fmt: str, message: str, code: str, *, overloaded: bool = False, watch: object = None) -> bytes:
    """The event that ends a stream faregate cannot finish, in the client's format ``fmt``: the
    stream watch's own when it has one (``error_event``: a translated Responses stream knows its
    sequence numbers), else the client codec's. ``overloaded``: the upstream cut it as overloaded
    (Anthropic's 529), which an Anthropic client tells from an api_error."""
    kind = "overloaded_error" if overloaded else "upstream_error"
    own = getattr(watch, "error_event", None)
    event = own(kind, message, code) if own is not None else None
    return event or CLIENT_CODECS[fmt].error_event(kind, message, code)


def passthrough_body(body: bytes, suffix: str, status: int, fmt: str) -> bytes:
    """An upstream's 4xx error body for a client of format ``fmt``, its message extended by
    ``suffix``: a body already in the client's shape is kept as sent; one in another shape (a
    translated request) is rewritten into the client's; anything else is wrapped."""
    codec = CLIENT_CODECS[fmt]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "") + suffix
        error["message"] = message
        if codec.own_error(data):
            return orjson.dumps(data)
        kind = error.get("type")
        return codec.upstream_error_body(status, kind if isinstance(kind, str) else None, message)
    return codec.upstream_error_body(status, None, body[:300].decode("utf-8", "replace").strip() + suffix)
