"""A fake Gemini API (AI Studio, v1beta REST) upstream: a real HTTP server on loopback.

It answers ``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse`` (SSE
``data: {GenerateContentResponse}`` events, no ``[DONE]``: the last chunk has the finishReason),
``:embedContent``, ``:batchEmbedContents`` and ``GET /v1beta/models`` (paged with ``pageToken``),
``/v1beta/models/{model}`` (and the same under ``/v1``, as the API), with Google's error shape ``{"error": {"code", "message", "status",
"details"}}``. The key is read from ``x-goog-api-key`` (or ``?key=``): none is a 403, one not in
``keys`` (when set) Google's 400 with reason ``API_KEY_INVALID``. Request bodies are checked as the
API checks them (``gemini_wire.check_generate``: unknown fields, schema keywords). It records every
request and can be told to fail, cut or break its streams::

    with FakeGemini() as fake:
        fake.enqueue(Behaviour(parts=[call("get_weather", {"city": "Paris"}, signature="c2ln")]))
        ...  # genai.Client(api_key=..., http_options={"base_url": fake.url})
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import gemini_wire as wire
from tests.fakes.gemini_wire import Behaviour, errors
from tests.fakes.loopback import ScriptedServer

__all__ = ["Behaviour", "FakeGemini", "Recorded", "errors"]

ACTIONS = ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "countTokens")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # with the query
    headers: dict[str, str]
    json: Any | None
    model: str | None  # from the URL
    action: str | None  # generateContent, streamGenerateContent, ...
    api_key: str | None


class FakeGemini(ScriptedServer[Recorded, Behaviour]):
    NAME = "fake Gemini upstream"

    """Each request takes the next enqueued Behaviour, else the rule for its model, else the default."""

    def __init__(self, reply_text: str = wire.DEFAULT_REPLY) -> None:
        super().__init__()
        self.reply_text = reply_text
        self.keys: frozenset[str] | None = None  # None: any key is accepted
        self.known_models: frozenset[str] | None = None  # None: any model is served
        self.page_size: int | None = None

    # -- test-facing controls ------------------------------------------------------------------
    def clear(self) -> None:
        self._forget()
        self.keys = self.known_models = self.page_size = None

    # -- request handling ----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._respond(request)
        except ConnectionError:
            return web.Response(status=499)

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = ...
        version, _, path = request.path.removeprefix("/").partition("/")  # the API serves v1beta and v1 alike
        path = "/v1beta/" + path if version in ("v1beta", "v1") else request.path
        model = action = None
        if path.startswith("/v1beta/models/"):
            model, _, action = path.removeprefix("/v1beta/models/").partition(":")
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        rec = Recorded(
            request.method, request.path_qs, {k.lower(): v for k, v in request.headers.items()}, payload, model, action or None, key
        )
        behaviour = self._take(rec, model) or Behaviour()
        if behaviour.release is not None:
            await asyncio.to_thread(behaviour.release.wait, 30)
        refusal = self._refusal(request, path, rec, payload)
        if refusal is not None:
            return self._error(refusal)
        if behaviour.is_error:
            return self._error(behaviour)
        if request.method == "GET":
            if path == "/v1beta/models":
                size = min(int(request.query.get("pageSize", "50")), self.page_size or 1000)
                return self._json(wire.models_page(request.query.get("pageToken"), size))
            return self._json({"name": f"models/{model}", "displayName": model})
        assert model is not None
        if action == "embedContent":
            return self._json({"embedding": _embed(payload)})
        if action == "batchEmbedContents":
            return self._json({"embeddings": [_embed(item) for item in payload.get("requests", [])]})
        parts = wire.reply_parts(behaviour, self.reply_text)
        meta = wire.count_usage(payload, parts, behaviour)
        if action == "streamGenerateContent":
            return await self._stream(request, wire.stream_chunks(model, parts, behaviour, meta), behaviour)
        return self._json(wire.response(model, parts, behaviour, meta))

    def _refusal(self, request: web.Request, path: str, rec: Recorded, payload: Any) -> Behaviour | None:
        method, action = request.method, rec.action
        listing = method == "GET" and path.startswith("/v1beta/models")
        if not listing and not (method == "POST" and rec.model and action in ACTIONS):
            return wire.google_error(404, "NOT_FOUND", "Requested entity was not found.")
        if rec.api_key is None:
            message = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
            return wire.google_error(403, "PERMISSION_DENIED", message)
        if self.keys is not None and rec.api_key not in self.keys:
            return errors.invalid_key()
        if action == "streamGenerateContent" and request.query.get("alt") != "sse":
            return errors.bad_request("this fake streams only with alt=sse")
        if self.known_models is not None and rec.model and rec.model not in self.known_models:
            return errors.model_not_found(rec.model)
        if payload is ...:
            return errors.bad_request("Invalid JSON payload received.")
        if action in ("generateContent", "streamGenerateContent"):
            problem = wire.check_generate(payload)
            return errors.bad_request(problem) if problem is not None else None
        if action == "embedContent" and not isinstance((payload or {}).get("content"), dict):
            return errors.bad_request("* EmbedContentRequest.content: contents is not specified")
        if action == "batchEmbedContents":
            requests = (payload or {}).get("requests")
            if not isinstance(requests, list) or not requests or any(r.get("model") != f"models/{rec.model}" for r in requests):
                return errors.bad_request("* BatchEmbedContentsRequest.requests: every request's model must be the model of the URL")
        return None

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(status=200, body=orjson.dumps(data), content_type="application/json")

    @staticmethod
    def _error(behaviour: Behaviour) -> web.Response:
        headers = {"content-type": "application/json; charset=UTF-8", **behaviour.headers}
        return web.Response(status=behaviour.status, body=wire.error_body(behaviour.error or {}), headers=headers)

    async def _stream(self, request: web.Request, events: list[bytes], behaviour: Behaviour) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"content-type": wire.SSE_CONTENT_TYPE, **behaviour.headers})
        await resp.prepare(request)
        for index, event in enumerate(events):
            if index == behaviour.stream_drop_after:
                await _abort(request)
                return resp
            if index == behaviour.error_after:
                error = behaviour.stream_error or errors.unavailable().error or {}
                await resp.write(wire.sse({"error": dict(error)}))
                await resp.write_eof()
                return resp
            await resp.write(event)
        await resp.write_eof()
        return resp


def _embed(request: Any) -> dict[str, Any]:
    parts = (request.get("content") or {}).get("parts") or [{}]
    return wire.embedding(str(parts[0].get("text", "")), request.get("outputDimensionality"))


async def _abort(request: web.Request) -> None:
    """Flush what was written so far, then kill the TCP connection mid-response."""
    transport = request.transport
    if transport is None:
        return
    deadline = time.monotonic() + 2.0
    while transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    transport.abort()
