"""Bedrock Converse replies, whole and streamed (the reply half of ``bedrock_converse``). Pure.

A whole reply::

    {"output": {"message": {"role": "assistant", "content": [text | toolUse | reasoningContent]}},
     "stopReason", "usage": {inputTokens, outputTokens, totalTokens, cacheReadInputTokens?,
     cacheWriteInputTokens?, cacheDetails?: [{ttl, inputTokens}]}, "metrics": {latencyMs}}

A ConverseStream is binary event-stream frames; the transport's framing (``providers.bedrock``)
hands each on as one JSON object named by its event type, the shape boto3 returns them in::

    {"messageStart": {"role"}}
    {"contentBlockStart": {"contentBlockIndex", "start": {"toolUse": {toolUseId, name}}}}   (tool use only)
    {"contentBlockDelta": {"contentBlockIndex", "delta": {text | toolUse: {input} | reasoningContent}}}
    {"contentBlockStop": {"contentBlockIndex"}}
    {"messageStop": {"stopReason", "additionalModelResponseFields"?}}
    {"metadata": {"usage", "metrics"}}                                 (the last event: the stream's end)
    {":exception-type": "ThrottlingException", "message"}              (an exception frame)

Usage: ``inputTokens`` counts the prompt tokens neither read from nor written to the cache (as
Anthropic's input_tokens); cache writes are split by ``cacheDetails`` ttl (5m unless it says 1h).
Bedrock has no reply id: ``Start.id`` is empty (the client codec writes faregate's request id).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from faregate.formats import neutral

STOP_REASONS: dict[str, neutral.FinishReason] = {
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}
ErrorKind = Literal["invalid_request", "authentication", "permission", "not_found", "rate_limit", "overloaded", "api_error"]
# A Bedrock exception's name -> the neutral error kind (what is not listed is an api_error)
ERROR_KINDS: dict[str, ErrorKind] = {
    "ValidationException": "invalid_request",
    "AccessDeniedException": "permission",
    "UnrecognizedClientException": "authentication",
    "InvalidSignatureException": "authentication",
    "ExpiredTokenException": "authentication",
    "ResourceNotFoundException": "not_found",
    "ThrottlingException": "rate_limit",
    "ServiceUnavailableException": "overloaded",
    "ModelNotReadyException": "overloaded",
}


def _count(source: Any, name: str) -> int | None:
    value = source.get(name) if isinstance(source, dict) else None
    return value if type(value) is int and value >= 0 else None


def usage_from(data: Any) -> neutral.Usage:
    """Converse's ``usage`` as a neutral Usage (absent counts stay None)."""
    if not isinstance(data, dict):
        return neutral.Usage()
    write = _count(data, "cacheWriteInputTokens")
    write_5m = write_1h = None
    if write is not None:
        write_1h = sum(
            _count(d, "inputTokens") or 0 for d in data.get("cacheDetails") or () if isinstance(d, dict) and d.get("ttl") == "1h"
        )
        write_1h = min(write_1h, write)
        write_5m = write - write_1h
    return neutral.Usage(
        input=_count(data, "inputTokens"),
        cache_read=_count(data, "cacheReadInputTokens"),
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output=_count(data, "outputTokens"),
    )


def _finish(data: dict[str, Any]) -> neutral.Finish | None:
    stop = data.get("stopReason")
    if not isinstance(stop, str):
        return None
    fields = data.get("additionalModelResponseFields")
    sequence = fields.get("stop_sequence") if isinstance(fields, dict) else None  # Claude says which one
    return neutral.Finish(STOP_REASONS.get(stop, "stop"), sequence if isinstance(sequence, str) else None)


def _reasoning(block: dict[str, Any]) -> neutral.Block:
    if "redactedContent" in block:
        return neutral.Block("thinking", redacted=str(block["redactedContent"]))
    text = block.get("reasoningText") or {}
    return neutral.Block("thinking", text=str(text.get("text") or ""), signature=text.get("signature"))


def decode_reply(data: dict[str, Any]) -> neutral.Reply:
    """A whole Converse reply as a neutral Reply (blocks other than text, tool use and reasoning skipped)."""
    message = (data.get("output") or {}).get("message") or {}
    blocks: list[neutral.Block] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if "text" in block:
            blocks.append(neutral.Block("text", text=str(block["text"])))
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") if use.get("input") is not None else {}).decode()
            blocks.append(neutral.Block("tool_call", text=arguments, id=use.get("toolUseId"), name=use.get("name")))
        elif "reasoningContent" in block:
            blocks.append(_reasoning(block["reasoningContent"]))
    return neutral.Reply("", "", blocks, _finish(data), usage_from(data.get("usage")))


def stream_error(data: dict[str, Any]) -> neutral.Error:
    """An exception frame as a neutral error (kind by the exception's name)."""
    name = str(data.get(":exception-type") or "")
    message = data.get("message") or data.get("Message") or name or "no message"
    return neutral.Error(ERROR_KINDS.get(name, "api_error"), str(message), name or None)


class StreamDecoder:
    """A ConverseStream (each frame as the framing gives it) as neutral events. The stream ends at
    ``metadata`` (it follows ``messageStop`` and carries the usage). ``contentBlockIndex`` values are
    mapped to neutral indexes in order of appearance (a text block has no contentBlockStart)."""

    def __init__(self) -> None:
        self.done = False
        self._index: dict[int, int] = {}

    def _at(self, data: dict[str, Any]) -> tuple[int, bool]:
        upstream = data.get("contentBlockIndex", 0)
        known = upstream in self._index
        if not known:
            self._index[upstream] = len(self._index)
        return self._index[upstream], known

    def feed(self, data: dict[str, Any]) -> list[neutral.Event]:
        delta_event = data.get("contentBlockDelta")
        if delta_event is not None:
            index, _ = self._at(delta_event)
            delta = delta_event.get("delta") or {}
            if "text" in delta:
                return [neutral.TextDelta(index, str(delta["text"]))]
            if "toolUse" in delta:
                fragment = str((delta["toolUse"] or {}).get("input") or "")
                return [neutral.ToolArgsDelta(index, fragment)] if fragment else []
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict):
                if "redactedContent" in reasoning:
                    return [neutral.ThinkingDelta(index, redacted=str(reasoning["redactedContent"]))]
                signature = reasoning.get("signature")
                return [neutral.ThinkingDelta(index, str(reasoning.get("text") or ""), signature if isinstance(signature, str) else None)]
            return []  # citations and kinds added later: nothing neutral to say
        start = data.get("contentBlockStart")
        if start is not None:
            use = (start.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            index, _ = self._at(start)
            return [neutral.ToolCallStart(index, str(use.get("toolUseId", "")), str(use.get("name", "")))]
        stop = data.get("contentBlockStop")
        if stop is not None:
            index, known = self._at(stop)
            return [neutral.BlockStop(index)] if known else []
        if "messageStart" in data:
            return [neutral.Start("", "")]
        message_stop = data.get("messageStop")
        if message_stop is not None:
            finish = _finish(message_stop)
            return [finish] if finish is not None else []
        metadata = data.get("metadata")
        if metadata is not None:
            self.done = True
            return [usage_from(metadata.get("usage"))]
        if ":exception-type" in data:
            return [stream_error(data)]
        return []
