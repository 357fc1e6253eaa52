"""Translation off the diagonal: a request in its client's format sent to a provider that speaks
another, and the reply brought back (DESIGN.md, Protocols). No I/O: bytes and data in and out.

The pipeline asks for it only when the client's format differs from the deployment's transport
format (a local mock speaks every format, and the diagonal stays bytes). One ``Translator`` per
request decodes the client's payload once into the neutral model (``formats.neutral``); each
attempt encodes that for its deployment's format (``prepare``: the deployment's ``drop_params``
decides whether a field the format cannot carry is a 400 naming it or dropped and disclosed) and
translates the reply: whole (``reply``) or streamed (``stream``, a stream watch the relay feeds
complete SSE events to). Usage is taken from the neutral reply and priced exactly as on the
diagonal, so a request costs the same streamed or not.

A new format is one codec module and one line in ``CODECS``; nothing here names a format otherwise.
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
from faregate.formats import anthropic, neutral, openai_chat
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


class Codec(Protocol):
    """What a module in ``faregate.formats`` provides (ISSUE10.md, "Codec module API")."""

    @property
    def NAME(self) -> str: ...

    def decode_request(self, payload: dict[str, Any]) -> neutral.Request: ...

    def encode_request(self, request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]: ...

    def decode_reply(self, data: dict[str, Any]) -> neutral.Reply: ...

    def encode_reply(self, reply: neutral.Reply, model: str, id: str) -> dict[str, Any]: ...

    @property
    def StreamDecoder(self) -> Callable[[], Decoder]: ...

    @property
    def StreamEncoder(self) -> Callable[..., Encoder]: ...

    def error_body(self, status: int, kind: str, message: str, code: str | None) -> bytes: ...

    def error_event(self, kind: str, message: str, code: str | None) -> bytes: ...


CODECS: dict[str, Codec] = {openai_chat.NAME: openai_chat, anthropic.NAME: anthropic}

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
        self.client = CODECS[client_format]
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
        payload, left_out = CODECS[target_format].encode_request(self.request, dep.model)
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
        reply = _decoded(CODECS[transport.format].decode_reply, data)
        if reply.error is not None:
            raise failure(reply.error)
        usage = None if reply.usage == _NO_USAGE else costs.usage_from_neutral(reply.usage)
        return orjson.dumps(self.client.encode_reply(reply, model, id)), usage

    def stream(self, transport: Transport, model: str, id: str) -> StreamTranslator:
        """The stream watch that translates one upstream stream into the client's events."""
        encoder = self.client.StreamEncoder(model, id, include_usage=self.include_usage)
        return StreamTranslator(CODECS[transport.format], encoder, transport.stream_events(strip=False).end)


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

    def __init__(self, source: Codec, encoder: Encoder, end: str) -> None:
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
