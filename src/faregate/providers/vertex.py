"""Vertex AI (type vertex): models in a Google Cloud project, reached with a service account.

Configured with ``project`` and ``location`` (a region such as ``us-east5``, or ``global``; the
base URL is ``https://{location}-aiplatform.googleapis.com``, ``https://aiplatform.googleapis.com``
for global) and credentials that are service-account key files (``key_file:``): each request
carries ``Authorization: Bearer <token>``, the OAuth access token minted from the key and
refreshed off the hot path (``credentials.minted``); the key itself is never sent.

One provider serves two kinds of model, told apart by the deployment's model name
(``providers.transport_for``): a name starting with ``claude`` is Anthropic's, served by
``providers.vertex_anthropic`` (``publishers/anthropic``, the Messages API); any other is
Google's (Gemini), served by this module: ``publishers/google/models/{model}:generateContent``,
or ``:streamGenerateContent?alt=sse`` for a stream, in the Gemini API's wire format (the
``gemini`` codec, replies, usage, stream events and errors as ``providers.gemini`` reads them:
Vertex speaks the same ``generateContent`` as AI Studio). Embeddings are not served on Vertex.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from faregate.generation import Credential, Deployment
from faregate.providers import gemini
from faregate.providers.base import UpstreamRequest
from faregate.types import Endpoint, Secret

USER_AGENT = "faregate"
_MODEL_SAFE = "@.-_"  # Vertex's versioned names: claude-sonnet-4@20250514

# The Transport protocol (providers/base.py): this module is the Gemini-on-Vertex transport.
format = gemini.format
endpoints: frozenset[Endpoint] = frozenset({"chat"})
request_id_header = gemini.request_id_header
framing = gemini.framing
classify_error = gemini.classify_error
error_in_reply = gemini.error_in_reply
usage_of = gemini.usage_of
stream_events = gemini.stream_events
with_stream_usage = gemini.with_stream_usage


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """The body as the gemini codec wrote it, its ``stream`` mark moved into the URL. No client header is passed on."""
    body = {key: value for key, value in payload.items() if key not in ("stream", "model")}
    method = "streamGenerateContent?alt=sse" if payload.get("stream") is True else "generateContent"
    return UpstreamRequest(
        "POST", url(deployment, "google", method), headers(deployment, credential), bytes(memoryview(orjson.dumps(body)))
    )


def url(deployment: Deployment, publisher: str, method: str) -> str:
    """``{base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}``."""
    provider = deployment.provider
    project, location = quote(provider.project or "", safe=""), quote(provider.location or "global", safe="")
    model = quote(deployment.model, safe=_MODEL_SAFE)
    return f"{provider.base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}"


def headers(deployment: Deployment, credential: Credential | None) -> dict[str, str]:
    """JSON, the provider's configured headers, and the credential's minted token as a Bearer. A
    credential without a minted token sends no authorization (never its key file: the upstream
    answers 401 and the credential is named)."""
    provider = deployment.provider
    sent = {"content-type": "application/json", "user-agent": USER_AGENT}
    sent.update(provider.headers)
    for secret_header in provider.secret_headers:
        sent[secret_header.name] = secret_header.value.reveal()
    token = credential.minted.value if credential is not None and credential.minted is not None else None
    if isinstance(token, Secret):
        sent["authorization"] = "Bearer " + token.reveal()
    return sent


def google_error(body: bytes) -> tuple[str | None, str | None] | None:
    """(message, status name) of Google's error shape (``{"error": {"code", "message", "status"}}``,
    alone or as a list of one, as streamGenerateContent sends it); None for any other body."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is list and len(data) == 1:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict) or "type" in err or not isinstance(err.get("code"), int):
        return None
    message, status = err.get("message"), err.get("status")
    return (message if isinstance(message, str) else None, status if isinstance(status, str) and status else None)


def is_anthropic(model: str) -> bool:
    """Whether a Vertex model name is one of Anthropic's (served by ``providers.vertex_anthropic``)."""
    return model.startswith("claude")


# The 1-token request of a probe (faregate.probe): Vertex lists no publisher models per project.
PROBE_ENDPOINT: Endpoint = "chat"
PROBE_PAYLOAD: dict[str, Any] = gemini.PROBE_PAYLOAD
