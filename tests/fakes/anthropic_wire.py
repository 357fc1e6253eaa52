"""Anthropic Messages wire format for the fake upstream: behaviours, reply bodies, the SSE event
sequence and error bodies.  Everything here is pure (no I/O); :mod:`tests.fakes.anthropic_upstream`
serves it.  It is the one place the tests know Anthropic's wire format.

Token counts are deterministic, so a test can predict every number the fake reports:

- input: ``count_input_tokens(payload)`` = bytes of the compact JSON of
  ``[system, messages, tools]`` // 4 + 1.  ``/v1/messages/count_tokens`` answers it, and a reply's
  ``usage.input_tokens`` is the same number for the same body (unless the behaviour overrides it).
- output: ``count_output_tokens(content)`` = words of every text and thinking block, plus
  (bytes of the JSON input) // 4 + 1 for each tool_use block.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_REPLY = "Hello from the fake Anthropic upstream."
DEFAULT_THINKING = "The user greets me; a short friendly answer will do."
RAW_KEY_PLACEHOLDER = "{raw_api_key}"
"""Replaced, in error messages, by the key received (x-api-key, else Bearer) as it is (a careless upstream echoing it)."""
START_OUTPUT_TOKENS = 1
"""``message_start`` reports this many output tokens, as the real API does; ``message_delta`` has the total."""

MODELS = (  # none deprecated for the installed SDK (it warns about those)
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
)

Position = int | str | None
"""A place in a stream: the number of events before it, or the name of the first event it precedes."""


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request.  The defaults give a normal, successful reply."""

    status: int = 200
    error: Mapping[str, Any] | None = None  # Anthropic error object {"type", "message"}, sent in the error envelope
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers
    body: bytes | None = None  # raw error body instead of JSON (content-type from headers)
    stall: float = 0.0  # seconds to wait before sending the response headers
    release: threading.Event | None = None  # the reply waits until the test sets this (30 s at most)
    drop_after_bytes: int | None = None  # non-stream: send this much body, then abort the connection
    bad_json: bool = False  # 200 with a body that is not valid JSON
    # the reply
    content: Sequence[Mapping[str, Any]] | None = None  # reply blocks (see text()/tool_use()/thinking()); None: the text
    reply_text: str | None = None  # overrides FakeAnthropic.reply_text when content is None
    stop_reason: str | None = None  # None: "tool_use" when content has a tool_use block, else "end_turn"
    stop_sequence: str | None = None
    usage: Mapping[str, Any] | None = None  # merged over the default usage (any JSON values: negative, huge, ...)
    legacy_delta_usage: bool = False  # message_delta carries output_tokens only (the API before cumulative usage)
    # the stream
    chunks: int = 3  # deltas per text, thinking or tool-input block
    chunk_delay: float = 0.0  # seconds between stream events
    pause_before_event: Position = None  # wait for ``resume`` before writing this event
    resume: threading.Event | None = None  # set by the test to end a pause (30 s at most)
    stream_drop_after: Position = None  # abort the connection here (after k events, or before the named one)
    error_after: Position = None  # write ``event: error`` here, then end the response
    stream_error: Mapping[str, Any] | None = None  # the error object of that event (default: overloaded_error)
    inject: Mapping[int, bytes] = field(default_factory=dict)  # raw bytes written before event i (unknown, malformed...)

    @property
    def is_error(self) -> bool:
        return self.status >= 400 or self.error is not None or self.body is not None


def error_behaviour(status: int, type_: str, message: str, headers: Mapping[str, str] | None = None) -> Behaviour:
    return Behaviour(status=status, error={"type": type_, "message": message}, headers=dict(headers or {}))


class _ErrorFactory:
    """Behaviours for each class of upstream failure, with Anthropic's statuses, types and messages."""

    @staticmethod
    def bad_request(message: str) -> Behaviour:
        return error_behaviour(400, "invalid_request_error", message)

    @staticmethod
    def missing_version() -> Behaviour:
        return error_behaviour(400, "invalid_request_error", "anthropic-version: header is required")

    @staticmethod
    def missing_key() -> Behaviour:
        return error_behaviour(401, "authentication_error", "x-api-key header is required")

    @staticmethod
    def invalid_api_key() -> Behaviour:
        return error_behaviour(401, "authentication_error", "invalid x-api-key")

    @staticmethod
    def permission_denied() -> Behaviour:
        return error_behaviour(403, "permission_error", "Your API key does not have permission to use the specified resource.")

    @staticmethod
    def model_not_found(model: str) -> Behaviour:
        return error_behaviour(404, "not_found_error", f"model: {model}")

    @staticmethod
    def not_found() -> Behaviour:
        return error_behaviour(404, "not_found_error", "Not Found")

    @staticmethod
    def too_large() -> Behaviour:
        return error_behaviour(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")

    @staticmethod
    def rate_limited(retry_after: float | None = None) -> Behaviour:
        message = (
            "This request would exceed the rate limit for your organization of 50 requests per minute. "
            "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
            "headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later."
        )
        headers = {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0"}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        return error_behaviour(429, "rate_limit_error", message, headers)

    @staticmethod
    def api_error() -> Behaviour:
        return error_behaviour(500, "api_error", "Internal server error")

    @staticmethod
    def overloaded() -> Behaviour:
        return error_behaviour(529, "overloaded_error", "Overloaded")

    @staticmethod
    def bad_gateway() -> Behaviour:
        html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
        return Behaviour(status=502, body=html.encode(), headers={"content-type": "text/html"})

    @staticmethod
    def echo_key(status: int = 401, type_: str = "authentication_error") -> Behaviour:
        """A careless upstream: an error whose message repeats the received key as it is."""
        return error_behaviour(status, type_, f"invalid x-api-key {RAW_KEY_PLACEHOLDER} for this workspace")

    @staticmethod
    def stall(seconds: float) -> Behaviour:
        return Behaviour(stall=seconds)

    @staticmethod
    def drop_mid_body(n: int) -> Behaviour:
        return Behaviour(drop_after_bytes=n)

    @staticmethod
    def drop_mid_stream(at: Position) -> Behaviour:
        return Behaviour(stream_drop_after=at)

    @staticmethod
    def error_mid_stream(at: Position, type_: str = "overloaded_error", message: str = "Overloaded") -> Behaviour:
        return Behaviour(error_after=at, stream_error={"type": type_, "message": message})


errors = _ErrorFactory()


# ---- reply blocks ----------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    """An id in Anthropic's style: prefix + 24 letters and digits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or new_id("toolu_01"), "name": name, "input": dict(input)}


def signature_for(thinking_text: str) -> str:
    """A deterministic stand-in for Anthropic's opaque thinking signature (base64, like the real one)."""
    return base64.b64encode(b"sig:" + hashlib.sha256(thinking_text.encode()).digest()).decode()


def thinking(value: str = DEFAULT_THINKING, signature: str | None = None) -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": signature if signature is not None else signature_for(value)}


def redacted_thinking(data: str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP") -> dict[str, Any]:
    return {"type": "redacted_thinking", "data": data}


def thinking_requested(payload: Mapping[str, Any]) -> bool:
    config = payload.get("thinking")
    return isinstance(config, dict) and config.get("type") in ("enabled", "adaptive")


def reply_content(payload: Mapping[str, Any], behaviour: Behaviour, default_text: str) -> list[dict[str, Any]]:
    """The reply's blocks: the behaviour's, or the text (after a thinking block when the request enables thinking)."""
    if behaviour.content is not None:
        return [dict(block) for block in behaviour.content]
    blocks = [thinking()] if thinking_requested(payload) else []
    return [*blocks, text(behaviour.reply_text if behaviour.reply_text is not None else default_text)]


def stop_reason_of(content: Sequence[Mapping[str, Any]], behaviour: Behaviour) -> str:
    if behaviour.stop_reason is not None:
        return behaviour.stop_reason
    return "tool_use" if any(block.get("type") == "tool_use" for block in content) else "end_turn"


# ---- usage -----------------------------------------------------------------------------------
def count_input_tokens(payload: Mapping[str, Any]) -> int:
    return len(orjson.dumps([payload.get("system"), payload.get("messages"), payload.get("tools")])) // 4 + 1


def count_output_tokens(content: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for block in content:
        kind = block.get("type")
        if kind == "text":
            total += len(str(block.get("text", "")).split())
        elif kind == "thinking":
            total += len(str(block.get("thinking", "")).split())
        elif kind == "tool_use":
            total += len(orjson.dumps(block.get("input", {}))) // 4 + 1
    return total


def usage(
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read: int = 0,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
    service_tier: str = "standard",
) -> dict[str, Any]:
    """A whole usage object as the API reports it (``input_tokens`` excludes cache reads and writes)."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write_5m, "ephemeral_1h_input_tokens": cache_write_1h},
        "output_tokens": output_tokens,
        "service_tier": service_tier,
    }


def reply_usage(payload: Mapping[str, Any], content: Sequence[Mapping[str, Any]], behaviour: Behaviour) -> dict[str, Any]:
    return {**usage(count_input_tokens(payload), count_output_tokens(content)), **(behaviour.usage or {})}


# ---- bodies ----------------------------------------------------------------------------------
def message(payload: Mapping[str, Any], content: list[dict[str, Any]], behaviour: Behaviour, used: Mapping[str, Any]) -> dict[str, Any]:
    """A whole (non-streamed) Messages reply."""
    return {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": payload.get("model"),
        "content": content,
        "stop_reason": stop_reason_of(content, behaviour),
        "stop_sequence": behaviour.stop_sequence,
        "usage": dict(used),
    }


def count_tokens_reply(payload: Mapping[str, Any], behaviour: Behaviour) -> dict[str, Any]:
    override = (behaviour.usage or {}).get("input_tokens")
    return {"input_tokens": override if override is not None else count_input_tokens(payload)}


def models_list(after_id: str | None = None, limit: int = 20) -> dict[str, Any]:
    """One page of the Models API: at most ``limit`` models after ``after_id`` (the API's default
    page is 20, its largest 1000), ``has_more`` when others follow."""
    names = [m for m, _, _ in MODELS]
    start = names.index(after_id) + 1 if after_id in names else 0
    data = [info for m in names[start : start + max(limit, 1)] if (info := model_info(m)) is not None]
    more = start + len(data) < len(names)
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def model_info(model_id: str) -> dict[str, Any] | None:
    """The API's description of a model the fake lists (None for any other id)."""
    found = next((m for m in MODELS if m[0] == model_id), None)
    if found is None:
        return None
    _, name, created = found
    return {
        "type": "model",
        "id": model_id,
        "display_name": name,
        "created_at": created,
        "lifecycle": "active",
        "max_input_tokens": 200000,
        "max_tokens": 64000,
    }


def error_body(behaviour: Behaviour, api_key: str | None, request_id: str) -> tuple[bytes, str]:
    """Body and content-type for an error behaviour; the raw key replaces its placeholder."""
    if behaviour.body is not None:
        return behaviour.body, behaviour.headers.get("content-type", "text/html")
    error = dict(behaviour.error or generic_error(behaviour.status))
    if isinstance(error.get("message"), str):
        error["message"] = error["message"].replace(RAW_KEY_PLACEHOLDER, api_key or "")
    return orjson.dumps({"type": "error", "error": error, "request_id": request_id}), "application/json"


def generic_error(status: int) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error"}
    kinds |= {413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
    return {"type": kinds.get(status, "api_error" if status >= 500 else "invalid_request_error"), "message": f"HTTP {status}"}


def response_headers(behaviour: Behaviour, content_type: str, request_id: str) -> dict[str, str]:
    headers = {
        "content-type": content_type,
        "request-id": request_id,
        "anthropic-organization-id": "00000000-0000-4000-8000-00000000fa4e",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
    }
    if content_type.startswith("text/event-stream"):
        headers["cache-control"] = "no-cache"
    headers.update({k.lower(): v for k, v in behaviour.headers.items()})
    headers["content-type"] = content_type
    return headers


# ---- the stream ------------------------------------------------------------------------------
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def sse(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event as Anthropic frames it: the event name, then its JSON (whose ``type`` is the name)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(error: Mapping[str, Any], request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": dict(error)}
    if request_id is not None:
        body["request_id"] = request_id
    return sse("error", body)


def split(value: str, parts: int) -> list[str]:
    """``value`` in ``parts`` pieces (none empty; an empty value gives no pieces)."""
    n, parts = len(value), max(1, parts)
    pieces = [value[i * n // parts : (i + 1) * n // parts] for i in range(parts)]
    return [p for p in pieces if p]


def _block_events(index: int, block: Mapping[str, Any], chunks: int) -> list[tuple[str, dict[str, Any]]]:
    kind = block.get("type")

    def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

    deltas: list[tuple[str, dict[str, Any]]] = []
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [delta({"type": "text_delta", "text": p}) for p in split(str(block.get("text", "")), chunks)]
    elif kind == "tool_use":
        start = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
        arguments = orjson.dumps(block.get("input", {})).decode()
        deltas = [delta({"type": "input_json_delta", "partial_json": p}) for p in ["", *split(arguments, chunks)]]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [delta({"type": "thinking_delta", "thinking": p}) for p in split(str(block.get("thinking", "")), chunks)]
        deltas.append(delta({"type": "signature_delta", "signature": block.get("signature", "")}))
    else:  # redacted_thinking and anything else arrive whole in their start event
        start = dict(block)
    opened = ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
    return [opened, *deltas, ("content_block_stop", {"type": "content_block_stop", "index": index})]


def stream_events(reply: Mapping[str, Any], chunks: int, legacy_delta_usage: bool = False) -> list[tuple[str, bytes]]:
    """Every SSE event of a streamed reply, as (event name, framed bytes), for the whole reply ``reply``.

    message_start (the message with empty content, the input and cache usage, START_OUTPUT_TOKENS),
    then per block content_block_start / *_delta / content_block_stop (a ping after the first start),
    message_delta (stop reason and cumulative usage) and message_stop.  No ``[DONE]``.
    """
    used = dict(reply["usage"])
    started = {**reply, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**used, "output_tokens": START_OUTPUT_TOKENS}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": started})]
    for index, block in enumerate(reply["content"]):
        events += _block_events(index, block, chunks)
        if index == 0:
            events.insert(2, ("ping", {"type": "ping"}))
    if not reply["content"]:
        events.append(("ping", {"type": "ping"}))
    keys = (
        ("output_tokens",)
        if legacy_delta_usage
        else ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    )
    final = {"stop_reason": reply["stop_reason"], "stop_sequence": reply["stop_sequence"]}
    events.append(("message_delta", {"type": "message_delta", "delta": final, "usage": {k: used[k] for k in keys if k in used}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return [(name, sse(name, data)) for name, data in events]


def position(names: Sequence[str], at: Position) -> int | None:
    """Where ``at`` falls in a stream of events named ``names`` (None: nowhere)."""
    if at is None or isinstance(at, int):
        return at
    if at not in names:
        raise ValueError(f"this stream has no {at!r} event: {list(names)}")
    return list(names).index(at)


def parse_stream(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """A whole SSE body back into (event name, parsed data) pairs; for tests reading raw streams."""
    parsed = []
    for chunk in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not chunk.strip():
            continue
        fields = dict(line.split(b": ", 1) for line in chunk.split(b"\n") if b": " in line)
        parsed.append((fields.get(b"event", b"").decode(), orjson.loads(fields.get(b"data", b"null"))))
    return parsed
