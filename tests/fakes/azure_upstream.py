"""A fake Azure OpenAI resource: a real HTTP server on loopback speaking Azure's wire format
(:mod:`tests.fakes.azure_wire`): deployment URLs with ``api-version``, the ``/openai/v1`` API, the
``api-key`` header, Azure's headers, content-filter annotations and error bodies. It records every
request and misbehaves on demand like FakeOpenAI, whose lifecycle and controls it shares::

    with FakeAzure(deployments={"chat4o": "gpt-4o-2024-08-06"}) as fake:
        client = openai.AzureOpenAI(azure_endpoint=fake.url, api_key=KEY, api_version="2024-10-21")
        fake.enqueue(errors.content_filter("violence"))

``url`` is the resource's endpoint (``https://RESOURCE.openai.azure.com``), without ``/openai``.
Rules and ``count`` go by deployment name (``Recorded.model`` is the deployment the URL or, for
``/openai/v1``, the body names).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import azure_wire
from tests.fakes import openai_wire as oa
from tests.fakes.azure_wire import AzureBehaviour, errors
from tests.fakes.openai_upstream import FakeOpenAI, Recorded, _abort, _interim, _paused, _peer
from tests.fakes.openai_wire import Behaviour

__all__ = ["AzureBehaviour", "FakeAzure", "Recorded", "errors"]


class FakeAzure(FakeOpenAI):
    """One Azure OpenAI resource. ``deployments``: deployment name -> the model it runs (None: any
    name is a deployment of a model of that name; otherwise others get DeploymentNotFound).
    ``keys``: the keys it accepts in ``api-key`` (None: any non-empty key)."""

    def __init__(self, deployments: Mapping[str, str] | None = None, keys: frozenset[str] | None = None) -> None:
        super().__init__()
        self.deployments = dict(deployments) if deployments is not None else None
        self.keys = keys

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload: Any = orjson.loads(body) if body else None
            parsed = True
        except orjson.JSONDecodeError:
            payload, parsed = None, False
        found = azure_wire.route(request.path) if request.method == "POST" else None
        deployment = found[0] if found is not None else None
        if found is not None and deployment is None and isinstance(payload, dict) and isinstance(payload.get("model"), str):
            deployment = payload["model"]  # /openai/v1: the body names the deployment
        rec = Recorded(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=payload,
            time=time.time(),
            model=deployment,
            peer=_peer(request),
        )
        queued = self._take(rec, deployment)
        key = rec.headers.get("api-key", "")
        if not key or (self.keys is not None and key not in self.keys):
            return await self._reply_error(request, errors.invalid_key(), deployment)
        version = request.query.get("api-version")
        if found is None or (found[0] is not None and not version):
            return await self._reply_error(request, errors.resource_not_found(), deployment)
        if self.deployments is not None and deployment not in self.deployments:
            return await self._reply_error(request, errors.deployment_not_found(), deployment)
        behaviour = queued or Behaviour()
        if behaviour.stall > 0:
            await asyncio.sleep(behaviour.stall)
        if behaviour.early_hints or behaviour.release is not None:
            await _interim(request, behaviour)
        if behaviour.is_error:
            return await self._reply_error(request, behaviour, deployment)
        endpoint = found[1]
        problem = oa.validate(f"/v1/{_path(endpoint)}", parsed, {"model": deployment, **payload} if isinstance(payload, dict) else payload)
        if problem is not None:
            return await self._reply_error(request, problem, deployment)
        assert isinstance(payload, dict) and deployment is not None
        if "stream_options" in payload and version and version < azure_wire.STREAM_OPTIONS_SINCE:
            return await self._reply_error(request, errors.stream_options_unsupported(), deployment)
        model = self.deployments.get(deployment, deployment) if self.deployments is not None else deployment
        if endpoint == "embeddings":
            return await self._reply(
                request, 200, orjson.dumps({**oa.embeddings(payload), "model": model}), "application/json", behaviour, deployment
            )
        chat = endpoint == "chat"
        flagged = behaviour.output_filtered if isinstance(behaviour, AzureBehaviour) else None
        text = behaviour.reply_text if behaviour.reply_text is not None else self.reply_text
        usage = dict(behaviour.usage or oa.default_usage(payload, text))
        if payload.get("stream") is True:
            events = oa.stream_events(payload, behaviour.chunks, chat, "" if flagged else text, usage, behaviour.tool_calls)
            return await self._stream_azure(request, azure_wire.annotate_stream(events, model, flagged), behaviour, deployment)
        reply = azure_wire.annotate(oa.completion(payload, chat, text, usage, behaviour.tool_calls), model, flagged)
        return await self._reply(request, 200, orjson.dumps(reply), "application/json", behaviour, deployment)

    async def _reply_error(self, request: web.Request, behaviour: Behaviour, deployment: str | None) -> web.StreamResponse:
        if behaviour.body is not None:
            return await self._reply(
                request, behaviour.status, behaviour.body, behaviour.headers.get("content-type", "text/html"), behaviour, deployment
            )
        body = orjson.dumps({"error": dict(behaviour.error or oa.generic_error(behaviour.status))})
        return await self._reply(request, behaviour.status, body, "application/json", behaviour, deployment)

    @staticmethod
    def _headers(behaviour: Behaviour, content_type: str, deployment: str | None) -> dict[str, str]:
        sent = {"content-type": content_type, **azure_wire.headers(deployment)}
        if content_type == "text/event-stream":
            sent["cache-control"] = "no-cache"
        sent.update({k.lower(): v for k, v in behaviour.headers.items()})
        sent["content-type"] = content_type
        return sent

    async def _reply(
        self, request: web.Request, status: int, body: bytes, content_type: str, behaviour: Behaviour, deployment: str | None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=self._headers(behaviour, content_type, deployment))
        resp.content_length = len(body)
        await resp.prepare(request)
        if behaviour.drop_after_bytes is None:
            await resp.write(body)
            await resp.write_eof()
        else:
            await resp.write(body[: behaviour.drop_after_bytes])
            await _abort(request)
        return resp

    async def _stream_azure(self, request: web.Request, events: list[bytes], behaviour: Behaviour, deployment: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=self._headers(behaviour, "text/event-stream", deployment))
        await resp.prepare(request)
        for index, event in enumerate(oa.stream_faults(events, behaviour)):
            if behaviour.stream_drop_after is not None and index >= behaviour.stream_drop_after:
                await _abort(request)
                return resp
            if index == behaviour.pause_before_event:
                await _paused(behaviour)
            await resp.write(event)
        await resp.write_eof()
        return resp


def _path(endpoint: str) -> str:
    return next(path for path, name in azure_wire.ENDPOINTS.items() if name == endpoint)


def filtered(category: str) -> AzureBehaviour:
    """A reply the output filter cut: 200 with ``finish_reason: content_filter``."""
    return replace(AzureBehaviour(), output_filtered=category)
