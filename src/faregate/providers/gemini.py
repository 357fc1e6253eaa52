"""The Gemini API wire protocol (Google AI Studio, ``generativelanguage.googleapis.com``).

``base_url`` is the host, as the google-genai SDK takes it (default
``https://generativelanguage.googleapis.com``); this transport adds ``/v1beta/models/{model}:...``.
The deployment's ``model`` is the Gemini model name (``gemini-2.5-flash``; ``models/...`` and
``tunedModels/...`` are taken as they are). The credential goes in ``x-goog-api-key``.

- Conversations (``chat`` here; an Anthropic client's ``messages`` too) are translated by the
  ``gemini`` codec; a streamed one goes to ``:streamGenerateContent?alt=sse`` (the codec marks the
  body ``"stream": true``, taken out here). Gemini's SSE has no ``[DONE]``: the stream's own end is
  the chunk with a ``finishReason`` (or a ``promptFeedback.blockReason``).
- Embeddings: an OpenAI embeddings body (``input`` a string or a list of strings, ``dimensions``,
  ``encoding_format``) is sent as ``:embedContent`` (one input) or ``:batchEmbedContents`` (a list),
  and Gemini's reply comes back in OpenAI's shape (``UpstreamRequest.reshape``). Token ids as input
  are a 400 (Gemini embeds text). Gemini reports no token counts for embeddings: the usage is 0s.
- Errors are Google's ``{"error": {"code", "message", "status", "details"}}``: a key Google does
  not accept (400 with reason ``API_KEY_INVALID``, 401, 403 PERMISSION_DENIED) is the credential's;
  429 RESOURCE_EXHAUSTED a limit (``RetryInfo.retryDelay`` as retry-after); 500 INTERNAL,
  503 UNAVAILABLE, 504 the server; 404 NOT_FOUND ``models/x is not found`` a misnamed deployment;
  other 4xx are passed to the client with Google's message (in OpenAI's error shape).
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from faregate.errors import CredentialRejected, InvalidRequest, UpstreamError, UpstreamProtocolError, UpstreamRateLimited, UpstreamRejected
from faregate.generation import Credential, Deployment
from faregate.providers import sse
from faregate.providers.base import MAX_TOKENS, UpstreamRequest, by_status
from faregate.types import Endpoint, Usage

USER_AGENT = "faregate"
API = "/v1beta"

# The Transport protocol (providers/base.py): this module is the gemini transport.
format = "gemini"
endpoints: frozenset[Endpoint] = frozenset({"chat", "embeddings"})
request_id_header = "x-goog-request-id"  # not sent by AI Studio today; kept for when it is
framing = sse.Splitter
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED", "API_KEY_IP_ADDRESS_BLOCKED"})


def model_path(deployment: Deployment) -> str:
    """``models/{model}`` (or the deployment's own ``models/`` / ``tunedModels/`` name), URL-quoted."""
    model = deployment.model
    if not model.startswith(("models/", "tunedModels/")):
        model = "models/" + model
    return quote(model, safe="/")


def headers_for(deployment: Deployment, credential: Credential | None) -> dict[str, str]:
    provider = deployment.provider
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    headers.update(provider.headers)
    for secret_header in provider.secret_headers:
        headers[secret_header.name] = secret_header.value.reveal()
    if credential is not None and credential.secret is not None:
        headers["x-goog-api-key"] = credential.secret.reveal()
    return headers


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """A conversation's body as the codec wrote it (``stream`` moved into the URL), or an OpenAI
    embeddings body as Gemini's. No client header is passed on."""
    base = deployment.provider.base_url + API + "/" + model_path(deployment)
    headers = headers_for(deployment, credential)
    if endpoint == "embeddings":
        return _embeddings(base, deployment, headers, payload)
    body = {key: value for key, value in payload.items() if key not in ("stream", "model")}
    if payload.get("stream") is True:
        return UpstreamRequest("POST", base + ":streamGenerateContent?alt=sse", headers, bytes(memoryview(orjson.dumps(body))))
    return UpstreamRequest("POST", base + ":generateContent", headers, bytes(memoryview(orjson.dumps(body))))  # base.UpstreamRequest


# ---- embeddings ---------------------------------------------------------------------------------
def _texts(payload: dict[str, Any]) -> list[str] | str:
    value = payload.get("input")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise InvalidRequest("'input' must be a string or a list of strings for a Gemini model (it embeds text, not token ids)", param="input")


def _embeddings(base: str, deployment: Deployment, headers: dict[str, str], payload: dict[str, Any]) -> UpstreamRequest:
    texts = _texts(payload)
    fmt = payload.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
    extra = {} if dimensions is None else {"outputDimensionality": dimensions}
    model = deployment.model
    if isinstance(texts, str):
        body: dict[str, Any] = {"content": {"parts": [{"text": texts}]}, **extra}
        url = base + ":embedContent"
    else:
        name = model_path(deployment)
        body = {"requests": [{"model": name, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}
        url = base + ":batchEmbedContents"

    def reshape(raw: bytes) -> bytes:
        return openai_embeddings(raw, model, fmt == "base64")

    return UpstreamRequest("POST", url, headers, bytes(memoryview(orjson.dumps(body))), reshape)  # right-sized: base.UpstreamRequest


def openai_embeddings(raw: bytes, model: str, as_base64: bool) -> bytes:
    """Gemini's ``{"embedding": {"values"}}`` / ``{"embeddings": [...]}`` as OpenAI's embeddings list."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError("reply is not valid JSON") from exc
    found = (
        [data.get("embedding")]
        if isinstance(data, dict) and "embedding" in data
        else data.get("embeddings")
        if isinstance(data, dict)
        else None
    )
    if not isinstance(found, list) or not all(isinstance(e, dict) and isinstance(e.get("values"), list) for e in found):
        raise UpstreamProtocolError("embeddings reply has no embedding values")
    items = []
    for index, item in enumerate(found):
        values = item["values"]
        vector: Any = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode() if as_base64 else values
        items.append({"object": "embedding", "index": index, "embedding": vector})
    return orjson.dumps({"object": "list", "data": items, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}})


# ---- errors -------------------------------------------------------------------------------------
def _error_fields(body: bytes) -> tuple[dict[str, Any], str | None, str | None, str | None]:
    """(the error object, its message, its status, the ErrorInfo reason) of a Google error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # some Google front ends wrap it in a list
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return {}, None, None, None
    reason = None
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            reason = detail["reason"]
    message, status = err.get("message"), err.get("status")
    return err, message if isinstance(message, str) else None, status if isinstance(status, str) else None, reason


_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def _retry_delay(err: dict[str, Any]) -> float | None:
    for detail in err.get("details") or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        found = _DELAY.match(delay) if isinstance(delay, str) else None
        if found:
            return float(found.group(1))
    return None


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    err, message, google_status, reason = _error_fields(body)
    kind = reason or google_status
    if reason in _KEY_REASONS or google_status == "UNAUTHENTICATED":
        return CredentialRejected(f"credential rejected ({status} {kind})", status=status, code=kind)
    if status == 429:
        wait = _retry_delay(err)
        limited = by_status(429, kind or "RESOURCE_EXHAUSTED", message, headers, body, content_type, now)
        if wait is not None and isinstance(limited, UpstreamRateLimited) and limited.retry_after is None:
            limited.retry_after = wait
        return limited
    found = by_status(status, kind, message, headers, body, content_type, now)
    if isinstance(found, UpstreamRejected) and err:  # the client reads Google's message in OpenAI's error shape
        shaped = {"message": message or google_status or "rejected", "type": "invalid_request_error", "param": None, "code": kind}
        return UpstreamRejected(found.reason, status=status, body=orjson.dumps({"error": shaped}), content_type=b"application/json")
    return found


_STATUS_CODES = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}
_STATUS_CODES |= {"NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


def error_in_reply(data: Any, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError | None:
    """A 200 whose body is a Google error object (and no candidates): the error it names."""
    if type(data) is not dict or not isinstance(data.get("error"), dict) or "candidates" in data:
        return None
    err = data["error"]
    code = err.get("code")
    status = code if type(code) is int and 400 <= code <= 599 else _STATUS_CODES.get(str(err.get("status")), 502)
    found = classify_error(status, headers, body, content_type, now)
    found.reason = found.message = f"200 with an error object: {err.get('status') or err.get('message') or 'no message'}"
    return found


# ---- usage and streams --------------------------------------------------------------------------
def _usage(meta: Any) -> Usage | None:
    if type(meta) is not dict:
        return None
    counts: dict[str, int] = {}
    problems: list[str] = []
    for name in ("promptTokenCount", "candidatesTokenCount", "cachedContentTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount"):
        value = meta.get(name)
        if value is None:
            continue
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int or value < 0 or value > MAX_TOKENS:
            problems.append(f"{name} is not a token count ({value!r:.40})")
        else:
            counts[name] = value
    if problems:
        return Usage(anomaly="; ".join(problems))
    thoughts = counts.get("thoughtsTokenCount", 0)
    return Usage(
        prompt_tokens=counts.get("promptTokenCount", 0) + counts.get("toolUsePromptTokenCount", 0),
        completion_tokens=counts.get("candidatesTokenCount", 0) + thoughts,
        cached_tokens=counts.get("cachedContentTokenCount", 0),
        reasoning_tokens=thoughts,
    )


def usage_of(data: Any) -> Usage | None:
    """Usage from a parsed reply's ``usageMetadata``; None when it has none."""
    return _usage(data.get("usageMetadata")) if type(data) is dict else None


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Gemini's chunks always carry ``usageMetadata``: nothing to ask for."""
    return payload, False


class StreamEvents:
    """Watches a Gemini stream relayed as it is (no client speaks Gemini today; the translated path
    uses ``end``): usage from each chunk's ``usageMetadata`` (running totals), the end at the chunk
    with a ``finishReason``, an error object raised as the error it names."""

    __slots__ = ("done", "seen", "usage")
    end = "the chunk with a finishReason"

    def __init__(self, *, strip: bool = False) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.seen = 0

    def feed(self, events: list[bytes]) -> bytes:
        for i, event in enumerate(events):
            self.seen += 1
            value = sse.data_of(event)
            if value is None:
                continue
            try:
                data = sse.json_object(value, self.seen)
            except UpstreamProtocolError as bad:
                bad.before = b"".join(events[:i])  # the good events before it are the client's
                raise
            failed = error_in_reply(data, {}, value, b"application/json", 0.0) if "error" in data else None
            if failed is not None:
                failed.before = b"".join(events[:i])
                raise failed
            self.usage = usage_of(data) or self.usage
            candidates = data.get("candidates")
            first = candidates[0] if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict) else {}
            feedback = data.get("promptFeedback")
            if first.get("finishReason") or (isinstance(feedback, dict) and feedback.get("blockReason")):
                self.done = True
        return b"".join(events)


stream_events = StreamEvents


# ---- probes and listings (faregate.probe) -------------------------------------------------------
PROBE_ENDPOINT: Endpoint = "chat"
PROBE_PAYLOAD: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "ping"}]}], "generationConfig": {"maxOutputTokens": 1}}
LISTING_PAGE = 1000  # the most models one page of models.list returns


def models_request(deployment: Deployment, credential: Credential | None, after: str | None = None) -> UpstreamRequest:
    """``GET /v1beta/models`` (one page; ``after``: the ``nextPageToken`` of the page before)."""
    headers = headers_for(deployment, credential)
    headers.pop("content-type", None)
    query = f"?pageSize={LISTING_PAGE}" + (f"&pageToken={quote(after, safe='')}" if after else "")
    return UpstreamRequest("GET", deployment.provider.base_url + API + "/models" + query, headers, b"")


def listed_models(body: bytes) -> tuple[list[str], str | None] | None:
    """The model names of one page (``{"models": [{"name": "models/x"}], "nextPageToken"}``), without
    ``models/``, and the next page's token (None on the last); None when it is no listing."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        return None
    names = [m["name"].removeprefix("models/") for m in data.get("models", []) if isinstance(m, dict) and isinstance(m.get("name"), str)]
    token = data.get("nextPageToken")
    return names, token if isinstance(token, str) and token else None
