"""OpenAI Chat Completions streams, both directions (the stream half of ``openai_chat``). Pure.

``StreamDecoder`` reads an upstream's ``chat.completion.chunk`` events into neutral events;
``StreamEncoder`` writes neutral events as the chunks OpenAI itself streams: a first chunk with
``delta.role``, ``content`` / ``reasoning_content`` fragments, tool calls as
``{index, id, type, function: {name, arguments: ""}}`` then argument fragments (``index`` counts
tool calls only), a chunk with ``finish_reason``, then, when the client asked for
``stream_options.include_usage``, a ``choices: []`` chunk with the usage (``usage: null`` on every
other chunk, as OpenAI does), and ``data: [DONE]``.

Also here, because both halves use them: the finish-reason maps and the usage shape.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from faregate.errors import UpstreamProtocolError
from faregate.formats import neutral

# OpenAI finish_reason -> neutral (function_call is the deprecated name of tool_calls)
FINISH_IN: dict[str, neutral.FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# neutral -> OpenAI. A stop sequence is "stop" in OpenAI; a refusal (Anthropic: a safety classifier
# stepped in) is "content_filter"; a paused turn or an error has no counterpart and ends as "stop".
FINISH_OUT: dict[neutral.FinishReason, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "pause": "stop",
    "error": "stop",
}
# OpenAI error type -> neutral Error.kind (what is not listed is an api_error)
ErrorKind = Literal["invalid_request", "authentication", "permission", "not_found", "rate_limit", "overloaded", "api_error"]
ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limit",
    "insufficient_quota": "rate_limit",
    "overloaded_error": "overloaded",
}


def _count(source: Any, name: str) -> int:
    value = source.get(name) if isinstance(source, dict) else None
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise UpstreamProtocolError(f"the upstream reported an invalid usage count {name}={value!r}", code="upstream_malformed_reply")
    return value


def usage_in(usage: dict[str, Any]) -> neutral.Usage:
    """OpenAI usage -> neutral: OpenAI counts cache reads (and writes, ``cache_write_tokens``) inside
    ``prompt_tokens``; neutral ``input`` is what is left. Writes have no TTL in OpenAI: 5 minutes."""
    prompt_details = usage.get("prompt_tokens_details")
    cached = _count(prompt_details, "cached_tokens")
    written = _count(prompt_details, "cache_write_tokens")
    return neutral.Usage(
        input=max(_count(usage, "prompt_tokens") - cached - written, 0),
        cache_read=cached,
        cache_write_5m=written,
        cache_write_1h=0,
        output=_count(usage, "completion_tokens"),
        reasoning=_count(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


def usage_out(usage: neutral.Usage) -> dict[str, Any]:
    """Neutral usage -> OpenAI's shape (``prompt_tokens`` counts every prompt token)."""
    cached, written = usage.cache_read or 0, (usage.cache_write_5m or 0) + (usage.cache_write_1h or 0)
    prompt = (usage.input or 0) + cached + written
    completion = usage.output or 0
    details: dict[str, int] = {"cached_tokens": cached}
    if written:
        details["cache_write_tokens"] = written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
    }


def error_in(error: Any) -> neutral.Error:
    """An OpenAI ``{"error": {...}}`` object (in a stream or a 200 body) as a neutral Error."""
    if not isinstance(error, dict):
        return neutral.Error("api_error", str(error))
    message = error.get("message")
    code = error.get("code")
    return neutral.Error(
        ERROR_KINDS.get(str(error.get("type")), "api_error"),
        message if isinstance(message, str) and message else "the upstream reported an error",
        str(code) if code is not None else None,
    )


def reasoning_text(source: dict[str, Any]) -> str:
    """The reasoning text of a message or a delta: ``reasoning_content`` (DeepSeek, vLLM, most
    OpenAI-compatible servers) or ``reasoning`` (newer vLLM, OpenRouter)."""
    for name in ("reasoning_content", "reasoning"):
        value = source.get(name)
        if isinstance(value, str):
            return value
    return ""


class StreamDecoder:
    """Upstream ``chat.completion.chunk`` events -> neutral events. One block is open at a time:
    a new block (text after reasoning, a new tool call) stops the one before. A fragment for a tool
    call that was already stopped (a server interleaving calls) is still passed on, to its index."""

    def __init__(self) -> None:
        self.done = False
        self._started = False
        self._next = 0  # the next neutral block index
        self._open: tuple[str, int] | None = None  # (kind, block index) of the open block
        self._tools: dict[int, int] = {}  # OpenAI tool-call index -> neutral block index
        self._ids: dict[int, str] = {}  # OpenAI tool-call index -> its call id
        self._refusal = False
        self._finished = False

    def feed(self, data: dict[str, Any]) -> list[neutral.Event]:
        if "error" in data and data["error"] is not None:
            return [error_in(data["error"])]
        if data.get("object") == "":
            return []  # Azure's content-filter annotations (the openai SDK skips them too)
        events: list[neutral.Event] = []
        if not self._started:
            self._started = True
            events.append(neutral.Start(str(data.get("id") or ""), str(data.get("model") or "")))
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise UpstreamProtocolError("the upstream sent a stream chunk without a choices list", code="upstream_malformed_event")
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        usage = data.get("usage")
        if isinstance(usage, dict):
            events.append(usage_in(usage))
        return events

    def end(self) -> list[neutral.Event]:
        """The stream's own end ([DONE]) was seen: stops a block left open."""
        self.done = True
        return self._stop() if not self._finished else []

    def _choice(self, choice: dict[str, Any], events: list[neutral.Event]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thinking = reasoning_text(delta)
            if thinking:
                events.append(neutral.ThinkingDelta(self._block("thinking", events), thinking))
            for name in ("content", "refusal"):
                text = delta.get(name)
                if isinstance(text, str) and text:
                    self._refusal |= name == "refusal"
                    events.append(neutral.TextDelta(self._block("text", events), text))
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._tool_call(call, events)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and not self._finished:
            self._finished = True
            events.extend(self._stop())
            finish = FINISH_IN.get(reason, "stop")
            events.append(neutral.Finish("refusal" if self._refusal and finish == "stop" else finish))

    def _tool_call(self, call: dict[str, Any], events: list[neutral.Event]) -> None:
        position = call.get("index")
        if type(position) is not int:
            position = max(self._tools, default=-1) + 1 if call.get("id") else max(self._tools, default=0)
        raw = call.get("function")
        function: dict[str, Any] = raw if isinstance(raw, dict) else {}
        call_id = call.get("id")
        if position in self._tools and isinstance(call_id, str) and call_id and self._ids.get(position, call_id) != call_id:
            del self._tools[position]  # a new call at a reused index (some servers send every call at 0)
        if position not in self._tools:
            events.extend(self._stop())
            index = self._tools[position] = self._next
            self._next += 1
            self._open = ("tool_call", index)
            self._ids[position] = call_id if isinstance(call_id, str) and call_id else f"call_{index}"
            name = function.get("name")
            events.append(neutral.ToolCallStart(index, self._ids[position], name if isinstance(name, str) else ""))
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            events.append(neutral.ToolArgsDelta(self._tools[position], fragment))

    def _block(self, kind: str, events: list[neutral.Event]) -> int:
        """The index of the open block of this kind, opening one (and stopping another) if needed."""
        if self._open is not None and self._open[0] == kind:
            return self._open[1]
        events.extend(self._stop())
        self._open = (kind, self._next)
        self._next += 1
        return self._open[1]

    def _stop(self) -> list[neutral.Event]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [neutral.BlockStop(index)]


class StreamEncoder:
    """Neutral events -> the SSE bytes OpenAI streams. ``created`` is the chunks' Unix time (the
    codec has no clock: the caller passes it; 0 when it does not)."""

    heartbeat = b": keep-alive\n\n"

    def __init__(self, model: str, id: str, *, include_usage: bool, created: int = 0) -> None:
        self._head: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._include_usage = include_usage
        self._started = False
        self._tools: dict[int, int] = {}  # neutral block index -> OpenAI tool-call index
        self._usage = neutral.Usage()
        self._usage_seen = False
        self._failed = False

    def encode(self, event: neutral.Event) -> bytes:
        if isinstance(event, neutral.Usage):
            self._usage, self._usage_seen = neutral.merge_usage(self._usage, event), True
            return b""
        if isinstance(event, neutral.Error):
            self._failed = True
            return error_event(event.kind, event.message, event.code)
        out = b""
        if not self._started:
            self._started = True
            out = self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, neutral.TextDelta) and event.text:
            out += self._chunk({"content": event.text})
        elif isinstance(event, neutral.ThinkingDelta) and event.text:
            out += self._chunk({"reasoning_content": event.text})  # a signature has no OpenAI counterpart
        elif isinstance(event, neutral.ToolCallStart):
            position = self._tools[event.index] = len(self._tools)
            call = {"index": position, "id": event.id, "type": "function", "function": {"name": event.name, "arguments": ""}}
            out += self._chunk({"tool_calls": [call]})
        elif isinstance(event, neutral.ToolArgsDelta) and event.fragment:
            if event.index not in self._tools:
                self._tools[event.index] = len(self._tools)
            out += self._chunk({"tool_calls": [{"index": self._tools[event.index], "function": {"arguments": event.fragment}}]})
        elif isinstance(event, neutral.Finish):  # why a filter stopped it (Gemini's category), as the refusal
            filtered = {"refusal": event.detail} if event.detail and event.reason == "content_filter" else {}
            out += self._chunk(filtered, FINISH_OUT.get(event.reason, "stop"))
        return out

    def close(self) -> bytes:
        """What ends a finished stream: the usage chunk (with include_usage) and ``[DONE]``. Nothing
        after an Error event: a failed stream must not end like a clean one."""
        if self._failed:
            return b""
        out = b"" if self._started else self._chunk({"role": "assistant", "content": ""})
        if self._include_usage and self._usage_seen:
            out += b"data: " + orjson.dumps({**self._head, "choices": [], "usage": usage_out(self._usage)}) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {**self._head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self._include_usage:
            data["usage"] = None
        return b"data: " + orjson.dumps(data) + b"\n\n"


# OpenAI error types by neutral kind; a kind that is not neutral (one of faregate's own types, such
# as budget_exceeded) is used as the type itself.
ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "server_error",
    "api_error": "server_error",
}


def error_object(kind: str, message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(kind, kind), "param": None, "code": code}}


def error_event(kind: str, message: str, code: str | None) -> bytes:
    """The SSE event OpenAI sends when a stream fails midway (the openai SDK raises APIError on it)."""
    return b"data: " + orjson.dumps(error_object(kind, message, code)) + b"\n\n"
