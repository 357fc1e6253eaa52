"""OpenAI wire format for the fake upstream: behaviours, error bodies and payloads.

Everything here is pure (no I/O); :mod:`tests.fakes.openai_upstream` serves it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_REPLY = "Hello from the fake upstream."
FINGERPRINT = "fp_fake0000"
API_KEY_PLACEHOLDER = "{api_key}"
"""Replaced, in error messages, by the received API key redacted OpenAI-style."""
RAW_KEY_PLACEHOLDER = "{raw_api_key}"
"""Replaced, in error messages, by the received API key as it is (a careless upstream echoing it)."""

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request.  The defaults give a normal, successful reply."""

    status: int = 200
    error: Mapping[str, Any] | None = None  # OpenAI error object, sent as {"error": error}
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers
    body: bytes | None = None  # raw error body instead of JSON (content-type from headers)
    stall: float = 0.0  # seconds to wait before sending the response headers
    drop_after_bytes: int | None = None  # non-stream: send this much body, then abort
    stream_drop_after: int | None = None  # stream: send this many events, then abort
    chunks: int = 5  # content chunks in a stream
    chunk_delay: float = 0.0  # seconds between stream events
    reply_text: str | None = None  # overrides FakeOpenAI.reply_text
    usage: Mapping[str, Any] | None = None  # overrides the estimated usage (any JSON values: negative, huge, ...)
    bad_json: bool = False  # 200 with a body that is not valid JSON
    early_hints: int = 0  # interim "103 Early Hints" replies written before the reply (any 1xx must be skipped)
    release: threading.Event | None = None  # the reply (after its early hints) waits until the test sets this (30 s at most)
    framing: str = "lf"  # stream: every SSE line ends in "lf", "crlf" (sse-starlette's default) or "cr"
    pause_in_event: int | None = None  # stream: write half of this event, then wait for ``resume``
    pause_before_event: int | None = None  # stream: wait for ``resume`` before writing this event
    resume: threading.Event | None = None  # set by the test to end a pause (30 s at most)
    malformed_event: bool = False  # stream: an event whose data is not JSON, just before [DONE]
    endless_event: int = 0  # stream: after the first event, this many bytes of an event that never ends, then the rest
    tool_calls: Sequence[Mapping[str, str]] = ()  # chat: answer with these calls ({"id", "name", "arguments"}), no text

    @property
    def is_error(self) -> bool:
        return self.status >= 400 or self.error is not None or self.body is not None


def error_behaviour(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None, headers: Mapping[str, str] | None = None
) -> Behaviour:
    """A Behaviour answering ``status`` with the OpenAI error object built from the rest."""
    body = {"message": message, "type": type_, "param": param, "code": code}
    return Behaviour(status=status, error=body, headers=dict(headers or {}))


class _ErrorFactory:
    """Behaviours for each class of upstream failure, with realistic OpenAI bodies."""

    @staticmethod
    def rate_limited(retry_after: float | None = None) -> Behaviour:
        wait = f"{retry_after:g}s" if retry_after is not None else "20s"
        message = (
            "Rate limit reached for gpt-4o-mini in organization org-fake on requests per "
            f"min (RPM): Limit 3, Used 3, Requested 1. Please try again in {wait}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0"}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        return error_behaviour(429, message, "requests", "rate_limit_exceeded", headers=headers)

    @staticmethod
    def insufficient_quota() -> Behaviour:
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        return error_behaviour(429, message, "insufficient_quota", "insufficient_quota")

    @staticmethod
    def invalid_api_key() -> Behaviour:
        message = (
            f"Incorrect API key provided: {API_KEY_PLACEHOLDER}. You can find your API key at https://platform.openai.com/account/api-keys."
        )
        return error_behaviour(401, message, "invalid_request_error", "invalid_api_key")

    @staticmethod
    def permission_denied() -> Behaviour:
        message = "Country, region, or territory not supported"
        code = "unsupported_country_region_territory"
        return error_behaviour(403, message, "request_forbidden", code)

    @staticmethod
    def bad_request(message: str, param: str | None = None) -> Behaviour:
        return error_behaviour(400, message, "invalid_request_error", param=param)

    @staticmethod
    def model_not_found(model: str) -> Behaviour:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return error_behaviour(404, message, "invalid_request_error", "model_not_found")

    @staticmethod
    def server_error() -> Behaviour:
        message = "The server had an error while processing your request. Sorry about that!"
        return error_behaviour(500, message, "server_error")

    @staticmethod
    def bad_gateway() -> Behaviour:
        html = (
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return Behaviour(status=502, body=html.encode(), headers={"content-type": "text/html"})

    @staticmethod
    def overloaded() -> Behaviour:
        message = (
            "That model is currently overloaded with other requests. You can retry your "
            "request, or contact us through our help center at help.openai.com if the "
            "error persists."
        )
        return error_behaviour(503, message, "server_error")

    @staticmethod
    def echo_key(status: int = 500, prefix: str = "") -> Behaviour:
        """A careless upstream: an error whose message repeats the received key as it is, with no
        type and no code (so the message is all there is to tell the failure by)."""
        error = {
            "message": f"{prefix}invalid credential {RAW_KEY_PLACEHOLDER} for this deployment",
            "type": None,
            "param": None,
            "code": None,
        }
        return Behaviour(status=status, error=error)

    @staticmethod
    def error_in_200(type_: str | None = "server_error", code: str | None = None, message: str = "The server had an error") -> Behaviour:
        """HTTP 200 whose body is an error object (no choices), as some proxies answer."""
        return Behaviour(status=200, error={"message": message, "type": type_, "param": None, "code": code})

    @staticmethod
    def stall(seconds: float) -> Behaviour:
        return Behaviour(stall=seconds)

    @staticmethod
    def drop_mid_body(n: int) -> Behaviour:
        return Behaviour(drop_after_bytes=n)

    @staticmethod
    def drop_mid_stream(k: int) -> Behaviour:
        return Behaviour(stream_drop_after=k)


errors = _ErrorFactory()


def redact_key(key: str | None) -> str:
    """OpenAI-style redaction: keep a known ``sk-`` prefix and the last 4 characters."""
    if not key:
        return ""
    prefix = "sk-" if key.startswith("sk-") else ""
    if len(key) < 8:
        return prefix + "*" * (len(key) - len(prefix))
    return prefix + "*" * (len(key) - len(prefix) - 4) + key[-4:]


def _text_of(content: Any) -> str:
    """Text of a chat message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _prompt_tokens(payload: Mapping[str, Any]) -> int:
    """A deterministic token estimate: characters // 4 + 1 (token lists count as-is)."""
    if "messages" in payload:
        messages = payload["messages"] if isinstance(payload["messages"], list) else []
        text = "".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        return len(text) // 4 + 1
    return _items_tokens(_input_items(payload.get("prompt", "")))


def _items_tokens(items: list[Any]) -> int:
    return sum(len(i) if isinstance(i, list) else len(str(i)) // 4 + 1 for i in items)


def _input_items(value: Any) -> list[Any]:
    """Normalise str | list[str] | list[int] | list[list[int]] into a list of items."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value) if isinstance(value, list) else [value]


def _vector(item: Any) -> list[float]:
    """Eight deterministic floats, each exactly representable as float32."""
    digest = hashlib.sha256(orjson.dumps(item)).digest()
    return [(b - 128) / 128 for b in digest[:8]]


def _split(text: str, parts: int) -> list[str]:
    n = len(text)
    return [text[i * n // parts : (i + 1) * n // parts] for i in range(parts)]


def sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


POST_ROUTES = {("POST", f"/v1/{p}") for p in ("chat/completions", "completions", "embeddings")}

_REQUIRED = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input"}


def validate(path: str, parsed: bool, payload: Any) -> Behaviour | None:
    """The 400 OpenAI would send for this request body, or None if it is acceptable."""
    if not parsed or not isinstance(payload, dict):
        return errors.bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON. If you have trouble figuring out how to fix "
            "this, please contact us through our help center at help.openai.com.)"
        )
    if not isinstance(payload.get("model"), str):
        return errors.bad_request("you must provide a model parameter")
    required = _REQUIRED[path]
    if required not in payload:
        message = f"Missing required parameter: '{required}'."
        return error_behaviour(400, message, "invalid_request_error", "missing_required_parameter", param=required)
    return None


def generic_error(status: int) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    message = f"Upstream returned HTTP {status}."
    return {"message": message, "type": kind, "param": None, "code": None}


def response_headers(behaviour: Behaviour, content_type: str) -> dict[str, str]:
    headers = {
        "content-type": content_type,
        "x-request-id": new_id("req_"),
        "openai-version": "2020-10-01",
        "openai-processing-ms": "12",
        "openai-organization": "org-fake",
    }
    if content_type == "text/event-stream":
        headers["cache-control"] = "no-cache"
    headers.update({k.lower(): v for k, v in behaviour.headers.items()})
    headers["content-type"] = content_type
    return headers


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def default_usage(payload: Mapping[str, Any], text: str) -> dict[str, int]:
    prompt, completion = _prompt_tokens(payload), len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _tool_call(call: Mapping[str, str]) -> dict[str, Any]:
    return {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def completion(
    payload: Mapping[str, Any], chat: bool, text: str, usage: dict[str, Any], tool_calls: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    choice: dict[str, Any]
    if chat and tool_calls:
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [_tool_call(c) for c in tool_calls]}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
    elif chat:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    else:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    return {
        "id": new_id("chatcmpl-" if chat else "cmpl-"),
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": payload.get("model"),
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }


def embeddings(payload: Mapping[str, Any]) -> dict[str, Any]:
    items = _input_items(payload.get("input"))
    as_base64 = payload.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        vector = _vector(item)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = _items_tokens(items)
    return {"object": "list", "data": data, "model": payload.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def models_list(models: Sequence[str] = MODELS) -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in models]
    return {"object": "list", "data": data}


def error_body(behaviour: Behaviour, api_key: str | None) -> tuple[bytes, str]:
    """Body and content-type for an error behaviour; redacts the key into the message."""
    if behaviour.body is not None:
        return behaviour.body, behaviour.headers.get("content-type", "text/html")
    error = dict(behaviour.error or generic_error(behaviour.status))
    if isinstance(error.get("message"), str):
        error["message"] = error["message"].replace(API_KEY_PLACEHOLDER, redact_key(api_key)).replace(RAW_KEY_PLACEHOLDER, api_key or "")
    return orjson.dumps({"error": error}), "application/json"


LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def stream_faults(events: list[bytes], behaviour: Behaviour) -> list[bytes]:
    """The events as a misbehaving upstream frames them: another line ending, a malformed event
    before [DONE], an event without its empty line (JSON never holds a raw LF, so only framing changes)."""
    events = list(events)
    if behaviour.malformed_event:
        events.insert(len(events) - 1, b'data: {"id": "chatcmpl-fake", "choices": [<html>\n\n')
    if behaviour.endless_event:
        events.insert(1, b'data: {"padding": "' + b"x" * behaviour.endless_event)
    ending = LINE_ENDS[behaviour.framing]
    return events if ending == b"\n" else [e.replace(b"\n", ending) for e in events]


def stream_events(
    payload: Mapping[str, Any], chunks: int, chat: bool, text: str, usage: Mapping[str, Any], tool_calls: Sequence[Mapping[str, str]] = ()
) -> list[bytes]:
    """Every SSE event of a streamed (chat) completion, ``data: [DONE]`` included. Tool calls
    stream as OpenAI's do: the first delta of each has its index, id and name, then its arguments
    follow in fragments under the same index."""
    options = payload.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    base: dict[str, Any] = {
        "id": new_id("chatcmpl-" if chat else "cmpl-"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": payload.get("model"),
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None  # as OpenAI does: null on every chunk but the last

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        if chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": delta.get("content", ""), "index": 0, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    if chat and tool_calls:
        events = [chunk({"role": "assistant", "content": None, "refusal": None}, None)]
        for index, call in enumerate(tool_calls):
            start = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}
            events.append(chunk({"tool_calls": [start]}, None))
            events += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}, None) for part in _split(call["arguments"], 2)
            ]
        events.append(chunk({}, "tool_calls"))
    else:
        events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)] if chat else []
        events += [chunk({"content": part}, None) for part in _split(text, chunks)]
        events.append(chunk({}, "stop"))
    if include_usage:
        events.append(sse({**base, "choices": [], "usage": dict(usage)}))
    events.append(b"data: [DONE]\n\n")
    return events
