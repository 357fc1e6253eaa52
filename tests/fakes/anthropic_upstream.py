"""A fake Anthropic upstream: a real HTTP server on loopback speaking the Messages API.

It answers ``POST /v1/messages`` (JSON, or SSE with Anthropic's exact event sequence),
``POST /v1/messages/count_tokens`` and ``GET /v1/models[/{id}]`` with Anthropic's status codes,
headers and error bodies; it records every request and can be told to misbehave (errors, stalls,
paused, cut or failing streams).  It requires ``anthropic-version`` and a key (``x-api-key``, or a
Bearer token) like the real API.  The server runs on its own event loop in a background thread,
so plain synchronous tests can drive it::

    with FakeAnthropic() as fake:
        fake.set_rule("claude-bad", errors.overloaded())
        ...  # point the gateway (or anthropic.Anthropic(base_url=fake.url)) at fake.url
        assert fake.requests[-1].version == "2023-06-01"

Unlike FakeOpenAI's, ``url`` has no ``/v1``: Anthropic's base URL is the host (the SDK and the
gateway's ``https://api.anthropic.com`` default add ``/v1/messages`` themselves).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import anthropic_checks
from tests.fakes import anthropic_wire as wire
from tests.fakes.anthropic_wire import DEFAULT_REPLY, Behaviour, errors
from tests.fakes.loopback import ScriptedServer

__all__ = ["Behaviour", "FakeAnthropic", "Recorded", "errors"]

MAX_BODY = 32 * 1024 * 1024  # the Messages API's request size limit (413 request_too_large past it)


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

    @property
    def api_key(self) -> str | None:
        """The key presented: ``x-api-key``, else the Bearer token (the SDK since 2.x sends its
        ``api_key`` as ``Authorization: Bearer``; the API accepts both)."""
        return self.x_api_key or self.bearer

    @property
    def x_api_key(self) -> str | None:
        return self.headers.get("x-api-key") or None

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    @property
    def version(self) -> str | None:
        return self.headers.get("anthropic-version")

    @property
    def betas(self) -> list[str]:
        return [b.strip() for b in self.headers.get("anthropic-beta", "").split(",") if b.strip()]

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True


def _peer(request: web.Request) -> str:
    transport = request.transport
    info = transport.get_extra_info("peername") if transport is not None else None
    return f"{info[0]}:{info[1]}" if info else ""


class FakeAnthropic(ScriptedServer[Recorded, Behaviour]):
    """A fake Anthropic upstream served by aiohttp on 127.0.0.1 in a background thread.

    Each request takes the next enqueued Behaviour, else the rule for its model, else the default.
    """

    NAME = "fake Anthropic upstream"

    def __init__(self, reply_text: str = DEFAULT_REPLY) -> None:
        super().__init__()
        self.reply_text = reply_text
        self.require_version = True  # a request without anthropic-version gets the API's 400
        self.require_key = True  # a request without x-api-key or a Bearer token gets the API's 401
        self.strict_fields = True  # an unknown top-level field gets the API's 400 ("Extra inputs are not permitted")
        self.max_body = MAX_BODY
        self.page_size: int | None = None  # the most models per page of GET /v1/models, below what is asked (None: as asked)
        # None: any model name is served (tests name their own). A set: a POST for any other model gets
        # Anthropic's 404 {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}, "request_id": ...}.
        self.known_models: frozenset[str] | None = None

    # -- test-facing controls --------------------------------------------------

    def clear(self) -> None:
        """Forget the requests, the queue and the rules, and check requests strictly again."""
        self._forget()
        self.require_version = self.require_key = self.strict_fields = True
        self.max_body = MAX_BODY
        self.page_size = None
        self.known_models = None

    def count(self, model: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._requests if (model is None or r.model == model) and (path is None or r.path == path))

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
        rec = Recorded(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=payload,
            time=arrived,
            model=model if isinstance(model, str) else None,
            peer=_peer(request),
        )
        behaviour = self._take(rec, rec.model) or self._unknown(rec) or Behaviour()
        request_id = wire.new_id("req_01")
        if behaviour.stall > 0:
            await asyncio.sleep(behaviour.stall)
        if behaviour.release is not None:
            await asyncio.to_thread(behaviour.release.wait, 30)
        if behaviour.is_error:
            return await self._send_error(request, rec, behaviour, request_id)
        if behaviour.bad_json:
            broken = b'{"id": "msg_fake", "type": "message", "content": [<html>'
            return await self._send(request, 200, broken, "application/json", behaviour, request_id)
        refusal = self._refusal(request, rec, len(body), parsed, payload)
        if refusal is not None:
            return await self._send_error(request, rec, refusal, request_id)
        if request.method == "GET":
            if request.path == "/v1/models":
                asked = request.query.get("limit", "20")
                limit = min(int(asked) if asked.isdigit() else 20, self.page_size or 1000)
                return await self._send_json(request, wire.models_list(request.query.get("after_id"), limit), behaviour, request_id)
            model_id = request.path.removeprefix("/v1/models/")
            found = wire.model_info(model_id)
            if found is None:
                return await self._send_error(request, rec, errors.model_not_found(model_id), request_id)
            return await self._send_json(request, found, behaviour, request_id)
        assert isinstance(payload, dict)
        if request.path == "/v1/messages/count_tokens":
            return await self._send_json(request, wire.count_tokens_reply(payload, behaviour), behaviour, request_id)
        content = wire.reply_content(payload, behaviour, self.reply_text)
        reply = wire.message(payload, content, behaviour, wire.reply_usage(payload, content, behaviour))
        if payload.get("stream") is True:
            events = wire.stream_events(reply, behaviour.chunks, behaviour.legacy_delta_usage)
            return await self._stream(request, events, behaviour, request_id)
        return await self._send_json(request, reply, behaviour, request_id)

    def _unknown(self, rec: Recorded) -> Behaviour | None:
        """Anthropic's answer for a model this fake does not know, when it knows only ``known_models``."""
        known = self.known_models
        if known is None or rec.method != "POST" or rec.model is None or rec.model in known:
            return None
        return errors.model_not_found(rec.model)

    def _refusal(self, request: web.Request, rec: Recorded, size: int, parsed: bool, payload: Any) -> Behaviour | None:
        """The error the real API would answer before looking at the request's meaning, if any."""
        method, path = request.method, request.path
        known_get = method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/"))
        if not known_get and (method, path) not in {("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")}:
            return errors.not_found()
        if size > self.max_body:
            return errors.too_large()
        if self.require_key and rec.api_key is None:
            return errors.missing_key()
        if self.require_version and not rec.version:
            return errors.missing_version()
        if method == "GET":
            return None
        problem = anthropic_checks.check(path, parsed, payload, self.strict_fields)
        return errors.bad_request(problem) if problem is not None else None

    async def _send_error(self, request: web.Request, rec: Recorded, behaviour: Behaviour, request_id: str) -> web.StreamResponse:
        body, content_type = wire.error_body(behaviour, rec.api_key, request_id)
        return await self._send(request, behaviour.status, body, content_type, behaviour, request_id)

    async def _send_json(self, request: web.Request, payload: Any, behaviour: Behaviour, request_id: str) -> web.StreamResponse:
        return await self._send(request, 200, orjson.dumps(payload), "application/json", behaviour, request_id)

    async def _send(
        self, request: web.Request, status: int, body: bytes, content_type: str, behaviour: Behaviour, request_id: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=wire.response_headers(behaviour, content_type, request_id))
        resp.content_length = len(body)
        await resp.prepare(request)
        if behaviour.drop_after_bytes is None:
            await resp.write(body)
            await resp.write_eof()
        else:
            await resp.write(body[: behaviour.drop_after_bytes])
            await _abort(request)
        return resp

    async def _stream(
        self, request: web.Request, events: list[tuple[str, bytes]], behaviour: Behaviour, request_id: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=wire.response_headers(behaviour, wire.SSE_CONTENT_TYPE, request_id))
        await resp.prepare(request)
        names = [name for name, _ in events]
        drop_at = wire.position(names, behaviour.stream_drop_after)
        error_at = wire.position(names, behaviour.error_after)
        pause_at = wire.position(names, behaviour.pause_before_event)
        for index, (_, event) in enumerate(events):
            if index == pause_at:
                await _paused(behaviour)
            if index in behaviour.inject:
                await resp.write(behaviour.inject[index])
            if index == drop_at:
                await _abort(request)
                return resp
            if index == error_at:
                error = behaviour.stream_error or {"type": "overloaded_error", "message": "Overloaded"}
                await resp.write(wire.error_event(error, request_id))
                await resp.write_eof()
                return resp
            if index and behaviour.chunk_delay > 0:
                await asyncio.sleep(behaviour.chunk_delay)
            await resp.write(event)  # one write per event: each reaches the socket on its own
        if len(events) in behaviour.inject:
            await resp.write(behaviour.inject[len(events)])
        await resp.write_eof()
        return resp


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
