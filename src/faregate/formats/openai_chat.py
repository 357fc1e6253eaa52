"""The OpenAI Chat Completions codec, both directions (see neutral.py). Pure: no I/O, no clock.

Used only off the diagonal (an OpenAI client meets a provider of another format, or another
format's client meets an OpenAI-compatible provider); streams are in ``openai_chat_stream``.

Decisions (also in the README's translation table):
- ``system`` and ``developer`` messages, wherever they are, become ``Request.system`` in order (one
  Text per message, or per text part); encoding writes one ``system`` message per Text, first
  (``developer`` comes back as ``system``).
- Consecutive ``tool`` messages become the ToolResult parts of one user turn.
- An assistant's ``reasoning_content`` (or ``reasoning``) becomes a Thinking part (before its
  text); a ``refusal`` (string or part) becomes text.
- ``cache_control`` on a content part, a system/user message (its last part) or a tool (the
  convention OpenAI-SDK users send to reach Anthropic models) becomes a cache mark. Encoding leaves cache marks out WITHOUT listing them:
  they are hints that change no reply (OpenAI caches prompt prefixes by itself), and refusing them
  would refuse every Claude Code request.
- ``reasoning_effort`` minimal/low/medium/high maps; other values (none, xhigh, max) stay in
  ``extra``. A thinking budget with no effort is encoded as an effort: up to 1024 minimal, 2048
  low, 8192 medium, above high (the inverse of the Anthropic codec's ``EFFORT_BUDGETS``).
- Top-level fields with no neutral counterpart go to ``extra``, except null ones and ``n: 1``,
  zero penalties and ``logprobs: false`` (defaults that ask for nothing).
- ``stream_options`` is not part of the neutral request: it says how the client's own stream is
  written (the translator reads ``include_usage`` from the client's payload), so no other format
  has to carry it.
- ``max_tokens`` and ``max_completion_tokens`` are both read; ``max_completion_tokens`` is written
  (the only one OpenAI's reasoning models accept).
- ``tool_choice`` "auto" is not written (it is OpenAI's default when tools are given, and an error
  without them); ``parallel_tool_calls`` is written only with tools.
- Encoding carries from ``extra`` only OpenAI Chat parameters (``_OPENAI_EXTRA``); any other extra
  field (from another format) is left out and listed. Also listed: ``top_k``, ``thinking``
  (Thinking parts; a signature can reach only Anthropic).
- A tool result marked ``is_error`` (no OpenAI counterpart) is carried in its content: the tool
  message's text starts with ``ERROR_MARK`` ("Error: "), as OpenAI agent frameworks report a failed
  tool to the model; it is not listed as dropped (Claude Code's first failed tool call on an OpenAI
  model must not be a 400).
- Images in a tool result (OpenAI tool messages carry text only) go into a user message right
  after the run of tool messages.
- A reply stopped by a content filter whose provider said why (``Finish.detail``: Gemini's
  ``SAFETY: HARM_CATEGORY_...``) has that reason as the message's ``refusal`` (the delta's, streamed).
- A field this codec cannot read into the neutral model is a 400 naming it (``param``), never
  dropped: audio and file parts, non-function tools, ``name`` on messages, ``function`` messages.
"""

from __future__ import annotations

from typing import Any, NoReturn

import orjson

from faregate.errors import UpstreamProtocolError
from faregate.formats import neutral
from faregate.formats.openai_chat_decode import decode_request
from faregate.formats.openai_chat_stream import (
    FINISH_IN,
    FINISH_OUT,
    StreamDecoder,
    StreamEncoder,
    error_in,
    error_object,
    reasoning_text,
    usage_in,
    usage_out,
)
from faregate.formats.openai_chat_stream import error_event as error_event

__all__ = [
    "HEARTBEAT",
    "NAME",
    "StreamDecoder",
    "StreamEncoder",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "error_body",
    "error_event",
    "own_error",
    "upstream_error_body",
]

NAME = "openai_chat"
ERROR_MARK = "Error: "  # starts the content of a tool message whose result was an error (is_error)

# OpenAI Chat parameters with no neutral counterpart: carried from extra when encoding
_OPENAI_EXTRA = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "modalities", "moderation",
        "n", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "reasoning_effort", "safety_identifier", "seed", "service_tier", "store", "top_logprobs",
        "verbosity", "web_search_options",
    }
)  # fmt: skip


# A thinking budget as an effort: the inverse of the Anthropic codec's effort budgets
_BUDGET_EFFORTS = (("minimal", 1024), ("low", 2048), ("medium", 8192))


# ---- encode_request ---------------------------------------------------------------------------
def _content_part(part: neutral.Text | neutral.Image) -> dict[str, Any]:
    if isinstance(part, neutral.Text):
        return {"type": "text", "text": part.text}
    url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
    image: dict[str, Any] = {"url": url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _content(parts: list[neutral.Text | neutral.Image]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], neutral.Text):
        return parts[0].text
    return [_content_part(p) for p in parts]


def _encode_user(message: neutral.Message, out: list[dict[str, Any]], dropped: set[str]) -> None:
    """Tool results first (OpenAI wants them right after the assistant's calls), then the rest."""
    rest: list[neutral.Text | neutral.Image] = []
    images: list[neutral.Text | neutral.Image] = []
    for part in message.parts:
        if isinstance(part, neutral.ToolResult):
            texts = [p for p in part.content if isinstance(p, neutral.Text)]
            images += [p for p in part.content if isinstance(p, neutral.Image)]
            if part.is_error:  # no OpenAI field for it: said in the content, as OpenAI agents report a failed tool
                texts = [neutral.Text(ERROR_MARK + (texts[0].text if texts else "the tool call failed")), *texts[1:]]
            out.append({"role": "tool", "tool_call_id": part.call_id, "content": _content(list(texts)) if texts else ""})
        elif isinstance(part, neutral.Text | neutral.Image):
            rest.append(part)
        elif isinstance(part, neutral.Thinking):
            dropped.add("thinking")
        else:
            dropped.add("user.tool_call")
    if images or rest:
        out.append({"role": "user", "content": _content(images + rest)})


def _encode_assistant(message: neutral.Message, out: list[dict[str, Any]], dropped: set[str]) -> None:
    texts: list[neutral.Text | neutral.Image] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, neutral.Text):
            texts.append(part)
        elif isinstance(part, neutral.ToolCall):
            calls.append({"id": part.id, "type": "function", "function": {"name": part.name, "arguments": part.arguments}})
        elif isinstance(part, neutral.Thinking):
            if part.text or part.signature or part.redacted:
                dropped.add("thinking")
        elif isinstance(part, neutral.Image):
            dropped.add("assistant.image")
        else:
            dropped.add("assistant.tool_result")
    entry: dict[str, Any] = {"role": "assistant", "content": _content(texts) if texts else None}
    if calls:
        entry["tool_calls"] = calls
    elif not texts:
        entry["content"] = ""
    out.append(entry)


def _effort(reasoning: neutral.Reasoning) -> str | None:
    if reasoning.effort is not None:
        return reasoning.effort
    if reasoning.budget_tokens is None:
        return None
    for effort, ceiling in _BUDGET_EFFORTS:
        if reasoning.budget_tokens <= ceiling:
            return effort
    return "high"


def encode_request(request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A neutral Request as an OpenAI Chat Completions body, and the fields left out (sorted)."""
    dropped: set[str] = set()
    messages: list[dict[str, Any]] = [{"role": "system", "content": text.text} for text in request.system]
    for message in request.messages:
        (_encode_assistant if message.role == "assistant" else _encode_user)(message, messages, dropped)
    payload: dict[str, Any] = {"model": model, "messages": messages}
    if request.tools:
        payload["tools"] = [_encode_tool(tool) for tool in request.tools]
    choice = request.tool_choice
    if choice is not None:
        if choice.mode == "tool":
            payload["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice.mode != "auto":
            payload["tool_choice"] = choice.mode
        if choice.parallel is not None and request.tools:
            payload["parallel_tool_calls"] = choice.parallel
    if request.max_tokens is not None:
        payload["max_completion_tokens"] = request.max_tokens
    for name in ("temperature", "top_p"):
        if getattr(request, name) is not None:
            payload[name] = getattr(request, name)
    if request.top_k is not None:
        dropped.add("top_k")
    if request.stop:
        payload["stop"] = list(request.stop)
    if request.stream:
        payload["stream"] = True
    if request.response_format is not None:
        payload["response_format"] = _encode_response_format(request.response_format)
    effort = _effort(request.reasoning) if request.reasoning is not None else None
    if effort is not None:
        payload["reasoning_effort"] = effort
    if request.user is not None:
        payload["user"] = request.user
    if request.metadata:
        payload["metadata"] = dict(request.metadata)
    for key, value in request.extra.items():
        if key not in _OPENAI_EXTRA:
            dropped.add(key)  # another format's field (Anthropic's server tools, container...)
        elif key not in payload:
            payload[key] = value
    return payload, tuple(sorted(dropped))


def _encode_tool(tool: neutral.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _encode_response_format(spec: neutral.ResponseFormat) -> dict[str, Any]:
    if spec.kind != "json_schema":
        return {"type": spec.kind}
    schema: dict[str, Any] = {"name": spec.name or "response"}
    if spec.schema is not None:
        schema["schema"] = dict(spec.schema)
    if spec.strict is not None:
        schema["strict"] = spec.strict
    return {"type": "json_schema", "json_schema": schema}


# ---- replies ----------------------------------------------------------------------------------
def _malformed(what: str) -> NoReturn:
    raise UpstreamProtocolError(f"the upstream's reply is not a chat completion: {what}", code="upstream_malformed_reply")


def decode_reply(data: dict[str, Any]) -> neutral.Reply:
    """A whole ``chat.completion`` body as a neutral Reply (only choices[0]; n > 1 is not translated)."""
    if data.get("error") is not None:
        return neutral.Reply(id=str(data.get("id") or ""), model=str(data.get("model") or ""), error=error_in(data["error"]))
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        _malformed("no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        _malformed("choices[0] has no message")
    blocks: list[neutral.Block] = []
    thinking = reasoning_text(message)
    if thinking:
        blocks.append(neutral.Block("thinking", thinking))
    content, refusal = message.get("content"), message.get("refusal")
    if isinstance(content, str) and content:
        blocks.append(neutral.Block("text", content))
    if isinstance(refusal, str) and refusal:
        blocks.append(neutral.Block("text", refusal))
    for k, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            _malformed(f"tool_calls[{k}] has no function name")
        arguments = function.get("arguments")
        blocks.append(
            neutral.Block(
                "tool_call", arguments if isinstance(arguments, str) else "", id=str(call.get("id") or f"call_{k}"), name=function["name"]
            )
        )
    reason = choices[0].get("finish_reason")
    finish: neutral.FinishReason = FINISH_IN.get(reason, "stop") if isinstance(reason, str) else "stop"
    if finish == "stop" and isinstance(refusal, str) and refusal:
        finish = "refusal"
    usage = data.get("usage")
    return neutral.Reply(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        blocks=blocks,
        finish=neutral.Finish(finish),
        usage=usage_in(usage) if isinstance(usage, dict) else neutral.Usage(),
    )


def encode_reply(reply: neutral.Reply, model: str, id: str, *, created: int = 0) -> dict[str, Any]:
    """A neutral Reply as a ``chat.completion`` body. ``created`` is the Unix time the caller
    passes (the codec has no clock). Text blocks are joined as a stream's deltas would be. A reply
    that failed (``reply.error``) gives OpenAI's error object instead."""
    if reply.error is not None:
        return error_object(reply.error.kind, reply.error.message, reply.error.code)
    text = "".join(b.text for b in reply.blocks if b.kind == "text")
    thinking = "".join(b.text for b in reply.blocks if b.kind == "thinking")
    tool_blocks = [b for b in reply.blocks if b.kind == "tool_call"]
    calls = [
        {"id": b.id or f"call_{k}", "type": "function", "function": {"name": b.name or "", "arguments": b.text}}
        for k, b in enumerate(tool_blocks)
    ]
    filtered = reply.finish.detail if reply.finish is not None and reply.finish.reason == "content_filter" else None
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": filtered}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = thinking
    finish = FINISH_OUT.get(reply.finish.reason, "stop") if reply.finish is not None else "stop"
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {"id": id, "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": usage_out(reply.usage)}


def error_body(status: int, kind: str, message: str, code: str | None) -> bytes:
    """OpenAI's error body. ``kind`` is a neutral Error kind, or one of faregate's own error types
    (budget_exceeded, rate_limit_exceeded...), which is then the ``type`` as is. ``status`` is
    the HTTP status the caller sends (OpenAI's body does not repeat it)."""
    del status
    return orjson.dumps(error_object(kind, message, code))


HEARTBEAT = b": keep-alive\n\n"  # between a stream's events: an SSE comment, as OpenAI sends


def own_error(data: Any) -> bool:
    """Whether a parsed upstream error body is in this client's shape (``{"error": {...}}``, not
    Anthropic's ``{"type": "error", ...}``): then it is passed on as sent, its message extended."""
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and data.get("type") != "error"


def upstream_error_body(status: int, upstream_type: str | None, message: str) -> bytes:
    """An upstream's 4xx error that is not in this shape (another format's, or no JSON), rewritten:
    the upstream's type when it named one, code ``upstream_<status>``."""
    return orjson.dumps(error_object(upstream_type or "upstream_error", message, f"upstream_{status}"))
