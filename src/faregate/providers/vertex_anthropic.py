"""Anthropic's Claude on Vertex AI (type vertex, a model whose name starts with ``claude``).

The Messages API as Anthropic's own, with Vertex's differences (Anthropic's and Google's docs,
"Claude on Vertex AI"): the model is in the URL, not the body
(``.../publishers/anthropic/models/{model}:rawPredict``; ``:streamRawPredict`` for a stream, whose
SSE events are Anthropic's), the body carries ``anthropic_version: "vertex-2023-10-16"`` (the
``anthropic-version`` header is not read; a client's ``anthropic-beta`` is passed on), and the
credential is ``Authorization: Bearer <OAuth token>`` minted from the service-account key
(``credentials.minted``). Errors come in Anthropic's shape from the model and in Google's
(``{"error": {"code", "message", "status"}}``) from Vertex itself (auth, quota, unknown model):
both are read. Replies, usage and stream events are Anthropic's (``providers.anthropic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from faregate.errors import UpstreamError
from faregate.generation import Credential, Deployment
from faregate.providers import anthropic, gemini, sse, vertex
from faregate.providers.base import UpstreamRequest
from faregate.types import Endpoint

VERSION = "vertex-2023-10-16"  # the body's anthropic_version: the one value Vertex accepts

# The Transport protocol (providers/base.py): this module is the Anthropic-on-Vertex transport.
format = "anthropic"
endpoints: frozenset[Endpoint] = frozenset({"messages"})  # count_tokens: faregate's estimate (the pipeline's fallback)
request_id_header = "request-id"
framing = sse.Splitter
error_in_reply = anthropic.error_in_reply
usage_of = anthropic.usage_of
stream_events = anthropic.stream_events
with_stream_usage = anthropic.with_stream_usage  # Anthropic streams always report usage


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """The client's (or the translated) Messages body without ``model`` and with Vertex's
    ``anthropic_version``; every other field as sent."""
    body = {key: value for key, value in payload.items() if key != "model"}
    body["anthropic_version"] = VERSION
    method = "streamRawPredict" if payload.get("stream") is True else "rawPredict"
    headers = vertex.headers(deployment, credential)
    beta = client_headers.get("anthropic-beta") if client_headers else None
    if beta:
        configured = headers.get("anthropic-beta")
        headers["anthropic-beta"] = f"{configured},{beta}" if configured else beta
    return UpstreamRequest("POST", vertex.url(deployment, "anthropic", method), headers, bytes(memoryview(orjson.dumps(body))))


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    """Anthropic's error shape as Anthropic's transport reads it; Google's by its status name
    (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, NOT_FOUND, ...) and message."""
    if vertex.google_error(body) is None:
        return anthropic.classify_error(status, headers, body, content_type, now)
    return gemini.classify_error(status, headers, body, content_type, now)


# The 1-token request of a probe (faregate.probe): Vertex lists no publisher models per project.
PROBE_ENDPOINT: Endpoint = "messages"
PROBE_PAYLOAD: dict[str, Any] = anthropic.PROBE_PAYLOAD
