"""The mock provider: answers locally in the client's wire format (OpenAI, or Anthropic Messages
for ``/v1/messages``: ``mock_anthropic``), so the demo and tests need no keys.

Deterministic replies; streams of ``stream_chunks`` events (the pipeline paces them by
``chunk_delay``); usage always. Errors are injected by the upstream model name containing
one of ``ERRORS``' keys, e.g. ``model: mock-error-429``; a model name containing ``CUT``
(``mock-stream-cut``) streams half its content events and stops, without its end. Moderations
are answered (nothing flagged); images and audio are not (no demo media: providers.SUPPORTED).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson

from faregate.errors import anthropic_error_body, anthropic_type
from faregate.generation import Deployment
from faregate.providers import mock_anthropic
from faregate.providers.base import LocalReply
from faregate.types import Endpoint, Usage

ERRORS: dict[str, tuple[int, str, str, str]] = {
    "error-400": (400, "invalid_request_error", "invalid_value", "mock: the request was rejected as invalid"),
    "error-401": (401, "invalid_request_error", "invalid_api_key", "mock: incorrect API key provided"),
    "error-403": (403, "permission_error", "permission_denied", "mock: permission denied"),
    "error-404": (404, "invalid_request_error", "model_not_found", "mock: the model does not exist"),
    "error-quota": (429, "insufficient_quota", "insufficient_quota", "mock: you exceeded your current quota"),
    "error-429": (429, "requests", "rate_limit_exceeded", "mock: rate limit reached"),
    "error-500": (500, "server_error", "server_error", "mock: the server had an error"),
    "error-503": (503, "server_error", "overloaded", "mock: the engine is overloaded"),
}
EMBEDDING_DIMENSIONS = 8
CREATED = 1_700_000_000
CUT = mock_anthropic.CUT
FORMATS = frozenset({"openai_chat", "anthropic"})  # the client formats answered as they are; any other is
FORMAT = "openai_chat"  # translated for the mock as for a provider of this format (pipeline._local_translated)


def answer(endpoint: Endpoint, deployment: Deployment, payload: dict[str, Any]) -> LocalReply:
    for marker, (status, type_, code, message) in ERRORS.items():
        if marker in deployment.model:
            if endpoint == "messages" or endpoint == "count_tokens":
                if code == "insufficient_quota":  # what Anthropic sends for an account at its spend limit
                    limit = {"type": "rate_limit_error", "message": message, "details": {"error_code": "enforced_spend_limit_reached"}}
                    return LocalReply(status=status, body=orjson.dumps({"type": "error", "error": limit}))
                return LocalReply(status=status, body=anthropic_error_body(message, anthropic_type(status)))
            error = {"message": message, "type": type_, "param": None, "code": code}
            return LocalReply(status=status, body=orjson.dumps({"error": error}))
    if endpoint == "messages" or endpoint == "count_tokens":
        return mock_anthropic.answer(endpoint, deployment, payload)
    if endpoint == "embeddings":
        return LocalReply(200, body=orjson.dumps(_embeddings(deployment.model, payload)))
    if endpoint == "moderations":
        return LocalReply(200, body=orjson.dumps(_moderation(deployment.model, payload)))
    text = _reply_text(endpoint, payload)
    prompt_tokens = max(1, len(orjson.dumps(payload.get("messages") or payload.get("prompt") or "")) // 4)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()), "total_tokens": prompt_tokens + len(text.split())}
    rid = "chatcmpl-mock" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if payload.get("stream") is True:
        include_usage = isinstance(payload.get("stream_options"), dict) and payload["stream_options"].get("include_usage") is True
        events = _stream_events(endpoint, rid, deployment, text, usage if include_usage else None)
        spent = Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"])
        return LocalReply(200, events=events, content_type=b"text/event-stream; charset=utf-8", usage=spent)
    if endpoint == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        obj = "text_completion"
    body = {"id": rid, "object": obj, "created": CREATED, "model": deployment.model, "choices": [choice], "usage": usage}
    return LocalReply(200, body=orjson.dumps(body))


def _reply_text(endpoint: Endpoint, payload: dict[str, Any]) -> str:
    prompt = ""
    if endpoint == "chat":
        for message in reversed(payload.get("messages") or []):
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                prompt = message["content"]
                break
    elif isinstance(payload.get("prompt"), str):
        prompt = payload["prompt"]
    words = prompt.split()[:12]
    echo = " ".join(words) + (" ..." if len(prompt.split()) > 12 else "")
    return f"This is the faregate mock provider answering: {echo}".strip()


def _stream_events(endpoint: Endpoint, rid: str, deployment: Deployment, text: str, usage: dict[str, int] | None) -> tuple[bytes, ...]:
    n = deployment.provider.stream_chunks
    words = text.split(" ")
    size = max(1, -(-len(words) // n))
    pieces = [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]
    pieces += [""] * (n - len(pieces))  # always exactly n content events
    chat = endpoint == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        data = {"id": rid, "object": obj, "created": CREATED, "model": deployment.model, "choices": choices, **(extra or {})}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def choice(content: str, finish: str | None) -> dict[str, Any]:
        if chat:
            return {"index": 0, "delta": {"content": content} if finish is None else {}, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}

    events: list[bytes] = []
    if chat:
        events.append(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]))
    events += [event([choice(piece, None)]) for piece in pieces]
    events.append(event([choice("", "stop")]))
    if usage is not None:
        events.append(event([], {"usage": usage}))
    events.append(b"data: [DONE]\n\n")
    if CUT in deployment.model:
        return tuple(events[: 1 + n // 2])
    return tuple(events)


# OpenAI's moderation categories (omni-moderation); the mock flags nothing
MODERATION_CATEGORIES = (
    *("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm"),
    *("self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic"),
)


def _moderation(model: str, payload: dict[str, Any]) -> dict[str, Any]:
    raw = payload.get("input")
    result = {
        "flagged": False,
        "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 0.0),
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }
    rid = "modr-mock" + hashlib.sha256(orjson.dumps(raw)).hexdigest()[:16]
    return {"id": rid, "model": model, "results": [result] * (len(raw) if isinstance(raw, list) and raw else 1)}


def _embeddings(model: str, payload: dict[str, Any]) -> dict[str, Any]:
    raw = payload.get("input")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    data = []
    tokens = 0
    for i, item in enumerate(inputs):
        seed = hashlib.sha256(orjson.dumps(item)).digest()
        vector = [round(b / 255 - 0.5, 6) for b in seed[:EMBEDDING_DIMENSIONS]]
        tokens += max(1, len(orjson.dumps(item)) // 4)
        if payload.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
