"""Anthropic Messages replies (whole and streamed) and errors, both directions: the reply half of
``formats.anthropic`` (which re-exports everything here).

The wire (``text/event-stream``; every event is ``event: <type>`` plus one JSON ``data`` line)::

    message_start        {"message": {id, type, role, model, content: [], stop_reason: null, usage}}
    content_block_start  {"index", "content_block": text | thinking | redacted_thinking | tool_use}
    content_block_delta  {"index", "delta": text_delta | input_json_delta | thinking_delta | signature_delta}
    content_block_stop   {"index"}
    message_delta        {"delta": {stop_reason, stop_sequence}, "usage": {output_tokens, ...}}
    message_stop         {}
    ping                 (the heartbeat)       error   {"error": {"type", "message"}}

``StreamDecoder`` reads an upstream's events into neutral events; ``StreamEncoder`` writes neutral
events (from any provider) as this sequence for an Anthropic client.

Usage in an encoded stream: Anthropic clients read ``input_tokens`` from ``message_start``, but a
provider that is not Anthropic (OpenAI) reports its usage only at the end. ``message_start`` is
therefore held back until the first content (or the end), so that usage arriving before the first
content is in it; whatever is known only at the end is written in ``message_delta``'s usage, which
carries the cumulative totals (input, cache reads and writes, output), as Anthropic's own
``message_delta`` does and as the anthropic SDK's stream accumulator reads it. A client that reads
input usage only from ``message_start`` sees 0 there when the provider could not tell it earlier.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import orjson

from faregate.errors import UpstreamProtocolError
from faregate.formats import neutral

# ---- shared with formats.anthropic (replies) -------------------------------------------------
STOP_REASONS: dict[str, neutral.FinishReason] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop_sequence",
    "pause_turn": "pause",
    "refusal": "refusal",
}
FINISH_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
    "pause": "pause_turn",
    "refusal": "refusal",
    "content_filter": "refusal",
    "error": "end_turn",
}
ERROR_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error",
    "api_error": "api_error",
}
ErrorKind = Literal["invalid_request", "authentication", "permission", "not_found", "rate_limit", "overloaded", "api_error"]
ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "api_error",
}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from(data: Any) -> neutral.Usage:
    """Anthropic's ``usage`` object as a neutral Usage (fields it does not carry stay None).
    ``cache_creation_input_tokens`` counts 5-minute writes unless ``cache_creation`` splits it."""
    if not isinstance(data, dict):
        return neutral.Usage()
    write_5m = write_1h = None
    total_write = _count(data.get("cache_creation_input_tokens"))
    split = data.get("cache_creation")
    if isinstance(split, dict) and (
        _count(split.get("ephemeral_5m_input_tokens")) is not None or _count(split.get("ephemeral_1h_input_tokens")) is not None
    ):
        write_5m = _count(split.get("ephemeral_5m_input_tokens")) or 0
        write_1h = _count(split.get("ephemeral_1h_input_tokens")) or 0
    elif total_write is not None:
        write_5m, write_1h = total_write, 0
    details = data.get("output_tokens_details")
    reasoning = _count(details.get("thinking_tokens")) if isinstance(details, dict) else None
    return neutral.Usage(
        input=_count(data.get("input_tokens")),
        cache_read=_count(data.get("cache_read_input_tokens")),
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output=_count(data.get("output_tokens")),
        reasoning=reasoning,
    )


def usage_to(usage: neutral.Usage) -> dict[str, Any]:
    """A neutral Usage as Anthropic's ``usage`` object (unknown counts as 0)."""
    write_5m, write_1h = usage.cache_write_5m or 0, usage.cache_write_1h or 0
    out: dict[str, Any] = {
        "input_tokens": usage.input or 0,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": usage.cache_read or 0,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": usage.output or 0,
    }
    if usage.reasoning is not None:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning}
    return out


def tool_input(arguments: str) -> dict[str, Any] | None:
    """Tool-call arguments (JSON text) as Anthropic's ``input`` object: None unless a JSON object
    (empty text is no arguments, ``{}``)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def error_type(kind: str) -> str:
    """Anthropic's error ``type`` for a neutral error kind (an Anthropic type passes as it is)."""
    return ERROR_TYPES.get(kind) or (kind if kind in ERROR_KINDS else "api_error")


def error_body(status: int, kind: str, message: str, code: str | None) -> bytes:
    """A whole Anthropic error body. Anthropic's shape has no code: the message says it all."""
    return orjson.dumps({"type": "error", "error": {"type": error_type(kind), "message": message}})


def error_event(kind: str, message: str, code: str | None) -> bytes:
    """The ``event: error`` that ends a stream cut midway."""
    return _sse("error", {"type": "error", "error": {"type": error_type(kind), "message": message}})


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# ---- whole replies ---------------------------------------------------------------------------
def decode_reply(data: dict[str, Any]) -> neutral.Reply:
    """A whole Messages reply body as a neutral Reply (server tool blocks skipped)."""
    blocks: list[neutral.Block] = []
    for block in data.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            blocks.append(neutral.Block("text", text=block.get("text") or ""))
        elif kind == "thinking":
            blocks.append(neutral.Block("thinking", text=block.get("thinking") or "", signature=block.get("signature")))
        elif kind == "redacted_thinking":
            blocks.append(neutral.Block("thinking", redacted=block.get("data") or ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            blocks.append(neutral.Block("tool_call", text=arguments, id=block.get("id"), name=block.get("name")))
    stop = data.get("stop_reason")
    finish = None if stop is None else neutral.Finish(STOP_REASONS.get(stop, "stop"), data.get("stop_sequence"))
    return neutral.Reply(str(data.get("id", "")), str(data.get("model", "")), blocks, finish, usage_from(data.get("usage")))


def encode_reply(reply: neutral.Reply, model: str, id: str) -> dict[str, Any]:
    """A neutral Reply as a whole Messages reply body. Tool-call arguments the model wrote as
    something other than a JSON object cannot be shown as Anthropic's ``input``: UpstreamProtocolError."""
    content: list[dict[str, Any]] = []
    for block in reply.blocks:
        if block.kind == "text":
            content.append({"type": "text", "text": block.text})
        elif block.kind == "thinking":
            if block.redacted is not None:
                content.append({"type": "redacted_thinking", "data": block.redacted})
            else:
                content.append({"type": "thinking", "thinking": block.text, "signature": block.signature or ""})
        else:
            arguments = tool_input(block.text)
            if arguments is None:
                message = f"the arguments of tool call {block.id!r} ({block.name}) in the provider's reply are not a JSON object"
                raise UpstreamProtocolError(message)
            content.append({"type": "tool_use", "id": block.id or "", "name": block.name or "", "input": arguments})
    finish = reply.finish or neutral.Finish("stop")
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": FINISH_REASONS.get(finish.reason, "end_turn"),
        "stop_sequence": finish.stop_sequence,
        "usage": usage_to(reply.usage),
    }


# ---- provider side ---------------------------------------------------------------------------
class StreamDecoder:
    """An Anthropic upstream's stream (each event's parsed ``data``) as neutral events.

    Blocks this model cannot carry (server tool use and results) are skipped with their deltas;
    the neutral ``index`` counts the kept blocks only, in order of appearance."""

    def __init__(self) -> None:
        self.done = False
        self._index: dict[int, int] = {}  # upstream block index -> neutral index (kept blocks only)
        self._writes = 0  # cache writes message_start reported (its 5m/1h split is not repeated later)

    def feed(self, data: dict[str, Any]) -> list[neutral.Event]:
        kind = data.get("type")
        if kind == "content_block_delta":
            index = self._index.get(data.get("index", -1))
            delta = data.get("delta") or {}
            if index is None:
                return []
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [neutral.TextDelta(index, delta.get("text", ""))]
            if dtype == "input_json_delta":
                fragment = delta.get("partial_json", "")
                return [neutral.ToolArgsDelta(index, fragment)] if fragment else []
            if dtype == "thinking_delta":
                return [neutral.ThinkingDelta(index, delta.get("thinking", ""))]
            if dtype == "signature_delta":
                return [neutral.ThinkingDelta(index, "", delta.get("signature", ""))]
            return []  # citations_delta and kinds added later: nothing neutral to say
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            index = self._index.get(data.get("index", -1))
            return [] if index is None else [neutral.BlockStop(index)]
        if kind == "message_start":
            message = data.get("message") or {}
            usage = usage_from(message.get("usage"))
            self._writes = (usage.cache_write_5m or 0) + (usage.cache_write_1h or 0)
            return [neutral.Start(str(message.get("id", "")), str(message.get("model", ""))), usage]
        if kind == "message_delta":
            usage = usage_from(data.get("usage"))
            if usage.cache_write_5m == self._writes and "cache_creation" not in (data.get("usage") or {}):
                usage = replace(usage, cache_write_5m=None, cache_write_1h=None)  # the same total: keep the start's split
            events: list[neutral.Event] = [usage]
            delta = data.get("delta") or {}
            stop = delta.get("stop_reason")
            if stop is not None:
                events.append(neutral.Finish(STOP_REASONS.get(stop, "stop"), delta.get("stop_sequence")))
            return events
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            error = data.get("error") or {}
            kind_name = ERROR_KINDS.get(error.get("type", ""), "api_error")
            return [neutral.Error(kind_name, str(error.get("message", "")), error.get("type"))]
        return []  # ping, and event types added later

    def _block_start(self, data: dict[str, Any]) -> list[neutral.Event]:
        upstream: int = data.get("index", -1)
        block = data.get("content_block") or {}
        btype = block.get("type")
        if btype not in ("text", "thinking", "redacted_thinking", "tool_use"):
            return []  # a server tool block: not in _index, so its deltas and stop are skipped too
        index = self._index[upstream] = len(self._index)
        if btype == "text":
            return [neutral.TextDelta(index, block.get("text") or "")]
        if btype == "tool_use":
            return [neutral.ToolCallStart(index, str(block.get("id", "")), str(block.get("name", "")))]
        if btype == "redacted_thinking":
            return [neutral.ThinkingDelta(index, redacted=str(block.get("data", "")))]
        return [neutral.ThinkingDelta(index, block.get("thinking") or "", block.get("signature") or None)]


# ---- client side -----------------------------------------------------------------------------
class StreamEncoder:
    """Neutral events as Anthropic's exact SSE sequence (see the module docstring for usage)."""

    heartbeat = b'event: ping\ndata: {"type": "ping"}\n\n'

    def __init__(self, model: str, id: str, *, include_usage: bool = True) -> None:
        self.model, self.id = model, id
        self._usage = neutral.Usage()
        self._finish: neutral.Finish | None = None
        self._started = self._ended = False
        self._blocks: dict[int, int] = {}  # neutral index -> position in this message's content
        self._open: set[int] = set()  # positions started and not yet stopped

    def encode(self, event: neutral.Event) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, neutral.Usage):
            self._usage = neutral.merge_usage(self._usage, event)
            return b""
        if isinstance(event, neutral.Start):
            return b""  # message_start waits for the first content (it carries the input usage known by then)
        out = b"" if self._started else self._message_start()
        if isinstance(event, neutral.TextDelta):
            position, out = self._block(event.index, {"type": "text", "text": ""}, out)
            if event.text:
                out += self._delta(position, {"type": "text_delta", "text": event.text})
        elif isinstance(event, neutral.ToolArgsDelta):
            position, out = self._block(event.index, {"type": "tool_use", "id": "", "name": "", "input": {}}, out)
            if event.fragment:
                out += self._delta(position, {"type": "input_json_delta", "partial_json": event.fragment})
        elif isinstance(event, neutral.ThinkingDelta):
            out = self._thinking(event, out)
        elif isinstance(event, neutral.ToolCallStart):
            _, out = self._block(event.index, {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}, out)
        elif isinstance(event, neutral.BlockStop):
            stopped = self._blocks.get(event.index)
            if stopped is not None and stopped in self._open:
                self._open.discard(stopped)
                out += _sse("content_block_stop", {"type": "content_block_stop", "index": stopped})
        elif isinstance(event, neutral.Finish):
            self._finish = event
        elif isinstance(event, neutral.Error):
            self._ended = True
            out += error_event(event.kind, event.message, event.code)
        return out

    def close(self) -> bytes:
        """Ends the message: open blocks stopped, ``message_delta`` (stop reason and the usage
        totals) and ``message_stop``. Nothing after an error event."""
        if self._ended:
            return b""
        self._ended = True
        out = b"" if self._started else self._message_start()
        for position in sorted(self._open):
            out += _sse("content_block_stop", {"type": "content_block_stop", "index": position})
        self._open.clear()
        finish = self._finish or neutral.Finish("stop")
        usage = usage_to(self._usage)
        del usage["cache_creation"]  # message_delta's usage has the totals, not the split
        delta = {"stop_reason": FINISH_REASONS.get(finish.reason, "end_turn"), "stop_sequence": finish.stop_sequence}
        out += _sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + _sse("message_stop", {"type": "message_stop"})

    def _message_start(self) -> bytes:
        self._started = True
        usage = usage_to(self._usage)
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": []}
        message |= {"stop_reason": None, "stop_sequence": None, "usage": usage}
        return _sse("message_start", {"type": "message_start", "message": message})

    def _block(self, index: int, start: dict[str, Any], out: bytes) -> tuple[int, bytes]:
        position = self._blocks.get(index)
        if position is None:
            position = self._blocks[index] = len(self._blocks)
            self._open.add(position)
            out += _sse("content_block_start", {"type": "content_block_start", "index": position, "content_block": start})
        return position, out

    def _thinking(self, event: neutral.ThinkingDelta, out: bytes) -> bytes:
        if event.redacted is not None:
            _, out = self._block(event.index, {"type": "redacted_thinking", "data": event.redacted}, out)
            return out
        position, out = self._block(event.index, {"type": "thinking", "thinking": "", "signature": ""}, out)
        if event.text:
            out += self._delta(position, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._delta(position, {"type": "signature_delta", "signature": event.signature})
        return out

    @staticmethod
    def _delta(position: int, delta: dict[str, Any]) -> bytes:
        return _sse("content_block_delta", {"type": "content_block_delta", "index": position, "delta": delta})
