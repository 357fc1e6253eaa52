"""A fake OpenAI-compatible upstream: a real HTTP server on loopback.

It speaks OpenAI's wire format (status codes, headers, JSON bodies, SSE
framing, error bodies; Chat Completions, Completions, Embeddings, and the
Responses API from ``openai_responses_wire``, where ``stored`` holds the ids of
the responses it keeps for ``previous_response_id``), records every request it receives, and can be told
to misbehave (errors, stalls, truncated bodies, dropped streams) so tests can
check how the gateway copes.  The server runs on its own event loop in a
background thread, so plain synchronous tests can drive it::

    with FakeOpenAI() as fake:
        fake.enqueue(errors.rate_limited(retry_after=7))
        ...  # point the gateway at fake.url
        assert fake.count("gpt-4o-mini") == 2
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import openai_media_wire as media_wire
from tests.fakes import openai_responses_wire as responses_wire
from tests.fakes import openai_wire as wire
from tests.fakes.loopback import ScriptedServer
from tests.fakes.openai_wire import DEFAULT_REPLY, Behaviour, errors

__all__ = ["Behaviour", "FakeOpenAI", "Recorded", "errors"]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any | None
    time: float
    model: str | None
    peer: str = ""  # the client's address:port, to tell connections apart
    form: dict[str, bytes] | None = None  # a multipart/form-data body's parts by name (transcriptions)

    @property
    def api_key(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None


def _peer(request: web.Request) -> str:
    transport = request.transport
    info = transport.get_extra_info("peername") if transport is not None else None
    return f"{info[0]}:{info[1]}" if info else ""


class FakeOpenAI(ScriptedServer[Recorded, Behaviour]):
    """A fake OpenAI upstream served by aiohttp on 127.0.0.1 in a background thread."""

    NAME = "fake OpenAI upstream"

    def __init__(self, reply_text: str = DEFAULT_REPLY) -> None:
        super().__init__()
        self.reply_text = reply_text
        # None: any model name is served (tests name their own). A set: a POST for any other model gets
        # OpenAI's 404 model_not_found ("The model `x` does not exist or you do not have access to it.").
        self.known_models: frozenset[str] | None = None
        self.stored: set[str] = set()  # ids of the Responses it answered with store on (previous_response_id)

    @property
    def url(self) -> str:  # the base URL an OpenAI client is given
        return f"http://127.0.0.1:{self.port}/v1"

    # -- test-facing controls --------------------------------------------------

    def clear(self) -> None:
        self._forget()
        with self._lock:
            self.stored.clear()
            self.known_models = None

    def count(self, model: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._requests if model is None or r.model == model)

    # -- request handling ------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._respond(request)
        except ConnectionError:  # the client went away, e.g. it timed out during a stall
            return web.Response(status=499)

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        body = await request.read()
        try:
            payload: Any = orjson.loads(body) if body else None
            parsed = True
        except orjson.JSONDecodeError:
            payload, parsed = None, False
        model = payload.get("model") if isinstance(payload, dict) else None
        form = media_wire.form_fields(body, request.headers["content-type"]) if request.content_type == "multipart/form-data" else None
        if form is not None and "model" in form:
            model = form["model"].decode("utf-8", "replace")
        rec = Recorded(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=payload,
            time=arrived,
            model=model if isinstance(model, str) else None,
            peer=_peer(request),
            form=form,
        )
        behaviour = self._take(rec, rec.model) or self._unknown(rec) or Behaviour()
        if behaviour.stall > 0:
            await asyncio.sleep(behaviour.stall)
        if behaviour.early_hints or behaviour.release is not None:
            await _interim(request, behaviour)
        if behaviour.is_error:
            return await self._send_error(request, rec, behaviour)
        if behaviour.bad_json:
            broken = b'{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [<html>'
            return await self._send(request, 200, broken, "application/json", behaviour)

        route = (request.method, request.path)
        if request.method == "POST" and request.path in media_wire.PATHS:
            return await self._media(request, rec, payload, behaviour)
        if route == ("POST", responses_wire.PATH):
            return await self._responses(request, rec, parsed, payload, behaviour)
        if route == ("GET", "/v1/models"):
            listed = sorted(self.known_models) if self.known_models is not None else wire.MODELS  # what it serves, it lists
            return await self._send_json(request, wire.models_list(listed), behaviour)
        if route not in wire.POST_ROUTES:
            message = f"Invalid URL ({request.method} {request.path})"
            not_found = wire.error_behaviour(404, message, "invalid_request_error")
            return await self._send_error(request, rec, not_found)
        problem = wire.validate(request.path, parsed, payload)
        if problem is not None:
            return await self._send_error(request, rec, problem)
        assert isinstance(payload, dict)
        if request.path == "/v1/embeddings":
            return await self._send_json(request, wire.embeddings(payload), behaviour)
        chat = request.path == "/v1/chat/completions"
        text = behaviour.reply_text if behaviour.reply_text is not None else self.reply_text
        usage = dict(behaviour.usage or wire.default_usage(payload, text))
        if payload.get("stream") is True:
            events = wire.stream_events(payload, behaviour.chunks, chat, text, usage, behaviour.tool_calls)
            return await self._stream(request, events, behaviour)
        return await self._send_json(request, wire.completion(payload, chat, text, usage, behaviour.tool_calls), behaviour)

    async def _responses(self, request: web.Request, rec: Recorded, parsed: bool, payload: Any, behaviour: Behaviour) -> web.StreamResponse:
        """POST /v1/responses: OpenAI's Responses API (tests.fakes.openai_responses_wire)."""
        with self._lock:
            problem = responses_wire.validate(parsed, payload, frozenset(self.stored))
        if problem is not None:
            return await self._send_error(request, rec, problem)
        text = behaviour.reply_text if behaviour.reply_text is not None else self.reply_text
        whole = responses_wire.reply(payload, behaviour, text, int(rec.time))
        if payload.get("store") is not False:
            with self._lock:
                self.stored.add(whole["id"])
        if payload.get("stream") is True:
            return await self._stream(request, responses_wire.stream_events(payload, whole, behaviour), behaviour)
        return await self._send_json(request, whole, behaviour)

    async def _media(self, request: web.Request, rec: Recorded, payload: Any, behaviour: Behaviour) -> web.StreamResponse:
        """Moderations, images, transcriptions and speech (tests.fakes.openai_media_wire); speech is
        written chunk by chunk, and ``stream_drop_after`` cuts it after that many chunks."""
        reply = media_wire.answer(request.path, payload, rec.form)
        if isinstance(reply, Behaviour):
            return await self._send_error(request, rec, reply)
        if reply.json is not None:
            return await self._send_json(request, reply.json, behaviour)
        if not reply.chunks:
            return await self._send(request, 200, reply.body, reply.content_type, behaviour)
        resp = web.StreamResponse(status=200, headers=wire.response_headers(behaviour, reply.content_type))
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for index, chunk in enumerate(reply.chunks):
            if behaviour.stream_drop_after is not None and index >= behaviour.stream_drop_after:
                await _abort(request)
                return resp
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    def _unknown(self, rec: Recorded) -> Behaviour | None:
        """OpenAI's answer for a model this fake does not know, when it knows only ``known_models``."""
        known = self.known_models
        if known is None or rec.method != "POST" or rec.model is None or rec.model in known:
            return None
        return errors.model_not_found(rec.model)

    async def _send_error(self, request: web.Request, rec: Recorded, behaviour: Behaviour) -> web.StreamResponse:
        body, content_type = wire.error_body(behaviour, rec.api_key)
        return await self._send(request, behaviour.status, body, content_type, behaviour)

    async def _send_json(self, request: web.Request, payload: Any, behaviour: Behaviour) -> web.StreamResponse:
        return await self._send(request, 200, orjson.dumps(payload), "application/json", behaviour)

    async def _send(self, request: web.Request, status: int, body: bytes, content_type: str, behaviour: Behaviour) -> web.StreamResponse:
        headers = wire.response_headers(behaviour, content_type)
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        if behaviour.drop_after_bytes is None:
            await resp.write(body)
            await resp.write_eof()
        else:
            await resp.write(body[: behaviour.drop_after_bytes])
            await _abort(request)
        return resp

    async def _stream(self, request: web.Request, events: list[bytes], behaviour: Behaviour) -> web.StreamResponse:
        headers = wire.response_headers(behaviour, "text/event-stream")
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        events = wire.stream_faults(events, behaviour)
        for index, event in enumerate(events):
            if behaviour.stream_drop_after is not None and index >= behaviour.stream_drop_after:
                await _abort(request)
                return resp
            if index and behaviour.chunk_delay > 0:
                await asyncio.sleep(behaviour.chunk_delay)
            if index == behaviour.pause_before_event:
                await _paused(behaviour)
            if index == behaviour.pause_in_event:  # half an event, then silence
                await resp.write(event[: len(event) // 2])
                await _paused(behaviour)
                event = event[len(event) // 2 :]
            await resp.write(event)  # one write per event: each reaches the socket on its own
        await resp.write_eof()
        return resp


async def _interim(request: web.Request, behaviour: Behaviour) -> None:
    """Write ``early_hints`` interim 103 replies straight to the socket (aiohttp has no API for
    them), then wait for ``release`` if the test holds the reply back."""
    transport = request.transport
    if transport is not None:
        for _ in range(behaviour.early_hints):
            transport.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
    if behaviour.release is not None:
        await asyncio.get_running_loop().run_in_executor(None, behaviour.release.wait, 30)


async def _paused(behaviour: Behaviour) -> None:
    """Wait until the test sets ``behaviour.resume`` (30 s at most, so a failing test cannot hang)."""
    assert behaviour.resume is not None, "a pause needs a resume event"
    await asyncio.to_thread(behaviour.resume.wait, 30)


async def _abort(request: web.Request) -> None:
    """Flush what was written so far, then kill the TCP connection mid-response."""
    transport = request.transport
    if transport is None:
        return
    deadline = time.monotonic() + 2.0
    while transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    transport.abort()
