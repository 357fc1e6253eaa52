"""OpenAI Responses streams, client side (the stream half of ``openai_responses``). Pure.

``StreamEncoder`` writes neutral events as the event sequence OpenAI documents, each
``event: <type>`` with its JSON data carrying ``type`` and a ``sequence_number`` counted from 0:
``response.created``, ``response.in_progress``; per output item ``response.output_item.added``,
then for a message ``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done``, ``response.content_part.done`` (a reasoning item the same with
``reasoning_text``), for a function call ``response.function_call_arguments.delta``... and
``.done``; ``response.output_item.done``; and at the end ``response.completed`` (or
``response.incomplete`` for a reply cut by max_output_tokens or a content filter) with the whole
response object and its usage. A stream the upstream fails or cuts ends with an ``error`` event
(faregate's code and message) and ``response.failed`` (the response as far as it got).

Also here, because the whole reply (``encode_reply``) shares them: the output item, the response
object and the usage shape.
"""

from __future__ import annotations

from typing import Any

import orjson

from faregate.formats import neutral

HEARTBEAT = b": keep-alive\n\n"  # an SSE comment: the openai SDK skips it
# A thinking block's Anthropic signature (or redacted data) rides in the reasoning item's opaque
# encrypted_content, marked as faregate's, so an agent replaying its output gets it back to Anthropic
# as it was signed; OpenAI's own encrypted_content (unmarked) is never mistaken for one.
SIGNATURE_MARK = "faregate.signature:"
REDACTED_MARK = "faregate.redacted:"
# ResponseError.code is a closed list in OpenAI's schema: faregate's own code goes in the error event
_FAILED_CODES = {"rate_limit": "rate_limit_exceeded"}
_INCOMPLETE: dict[neutral.FinishReason, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}


def usage_out(usage: neutral.Usage) -> dict[str, Any]:
    """Neutral usage in Responses' shape: ``input_tokens`` counts every prompt token."""
    cached, written = usage.cache_read or 0, (usage.cache_write_5m or 0) + (usage.cache_write_1h or 0)
    prompt = (usage.input or 0) + cached + written
    output = usage.output or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
        "total_tokens": prompt + output,
    }


def item_id(id: str, position: int, kind: str) -> str:
    prefix = {"text": "msg", "thinking": "rs", "tool_call": "fc"}[kind]
    return f"{prefix}_{id}_{position}"


def output_item(id: str, position: int, block: neutral.Block, status: str) -> dict[str, Any]:
    """One output item of a reply (``position``: its output_index), as far as ``block`` holds it."""
    own = item_id(id, position, block.kind)
    if block.kind == "text":
        content = [] if status == "in_progress" else [_text_part(block.text)]
        return {"type": "message", "id": own, "status": status, "role": "assistant", "content": content}
    if block.kind == "thinking":
        final = status != "in_progress"
        content = [{"type": "reasoning_text", "text": block.text}] if final and block.redacted is None else []
        item: dict[str, Any] = {"type": "reasoning", "id": own, "summary": [], "content": content, "status": status}
        if final and block.redacted is not None:
            item["encrypted_content"] = REDACTED_MARK + block.redacted
        elif final and block.signature is not None:
            item["encrypted_content"] = SIGNATURE_MARK + block.signature
        return item
    return {
        "type": "function_call",
        "id": own,
        "call_id": block.id or own,
        "name": block.name or "",
        "arguments": block.text if status != "in_progress" else "",
        "status": status,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_object(
    id: str,
    model: str,
    created: int,
    output: list[dict[str, Any]],
    finish: neutral.Finish | None,
    usage: neutral.Usage | None,
    *,
    status: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object: of a whole reply, or of a stream's start and end."""
    reason = _INCOMPLETE.get(finish.reason) if finish is not None else None
    if status is None:
        status = "incomplete" if reason is not None else "completed"
    return {
        "id": "resp_" + id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage_out(usage) if usage is not None else None,
    }


def _sse(data: dict[str, Any]) -> bytes:
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(kind: str, message: str, code: str | None) -> bytes:
    """The ``error`` event that ends a stream faregate cannot finish, when nothing knows the
    stream's state (sequence_number 0); a StreamEncoder writes its own (``StreamEncoder.error_event``)."""
    del kind
    return _sse({"type": "error", "sequence_number": 0, "code": code, "message": message, "param": None})


class _Item:
    __slots__ = ("block", "open", "position")

    def __init__(self, block: neutral.Block, position: int) -> None:
        self.block = block
        self.position = position
        self.open = True


class StreamEncoder:
    """Neutral events -> the Responses event sequence. ``created`` is the response's Unix time
    (the codec has no clock: the caller passes it; 0 when it does not). ``include_usage`` is
    not used: a Responses stream always ends with its usage."""

    heartbeat = HEARTBEAT

    def __init__(self, model: str, id: str, *, include_usage: bool = True, created: int = 0) -> None:
        del include_usage
        self._id, self._model, self._created = id, model, created
        self._seq = 0
        self._started = False
        self._failed = False
        self._items: dict[int, _Item] = {}  # neutral block index -> its output item
        self._order: list[_Item] = []  # by output_index
        self._usage: neutral.Usage | None = None
        self._finish: neutral.Finish | None = None

    def _event(self, data: dict[str, Any]) -> bytes:
        data = {"type": data.pop("type"), "sequence_number": self._seq, **data}
        self._seq += 1
        return _sse(data)

    def _response(self, status: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        final = status != "in_progress"
        output = [output_item(self._id, i.position, i.block, "completed" if final and not i.open else "in_progress") for i in self._order]
        return response_object(
            self._id, self._model, self._created, output, self._finish, self._usage if final else None, status=status, error=error
        )

    def _start(self) -> bytes:
        self._started = True
        created = self._event({"type": "response.created", "response": self._response("in_progress")})
        return created + self._event({"type": "response.in_progress", "response": self._response("in_progress")})

    def encode(self, event: neutral.Event) -> bytes:
        if self._failed:
            return b""
        out = b"" if self._started else self._start()
        if isinstance(event, neutral.TextDelta):
            item, out = self._open(event.index, "text", out)
            if event.text:
                item.block.text += event.text
                out += self._event(
                    {"type": "response.output_text.delta", **self._where(item), "content_index": 0, "delta": event.text, "logprobs": []}
                )
        elif isinstance(event, neutral.ThinkingDelta):
            item, out = self._open(event.index, "thinking", out)
            if event.signature is not None:
                item.block.signature = event.signature
            if event.redacted is not None:
                item.block.redacted = event.redacted
            if event.text:
                item.block.text += event.text
                out += self._event({"type": "response.reasoning_text.delta", **self._where(item), "content_index": 0, "delta": event.text})
        elif isinstance(event, neutral.ToolCallStart):
            _, out = self._open(event.index, "tool_call", out, neutral.Block("tool_call", id=event.id, name=event.name))
        elif isinstance(event, neutral.ToolArgsDelta):
            item, out = self._open(event.index, "tool_call", out)
            if event.fragment:
                item.block.text += event.fragment
                out += self._event({"type": "response.function_call_arguments.delta", **self._where(item), "delta": event.fragment})
        elif isinstance(event, neutral.BlockStop):
            stopping = self._items.get(event.index)
            if stopping is not None and stopping.open:
                out += self._close(stopping)
        elif isinstance(event, neutral.Finish):
            self._finish = event
        elif isinstance(event, neutral.Usage):
            self._usage = event if self._usage is None else neutral.merge_usage(self._usage, event)
        elif isinstance(event, neutral.Error):
            out += self.error_event(event.kind, event.message, event.code)
        return out

    def _where(self, item: _Item) -> dict[str, Any]:
        return {"item_id": item_id(self._id, item.position, item.block.kind), "output_index": item.position}

    def _open(self, index: int, kind: str, out: bytes, block: neutral.Block | None = None) -> tuple[_Item, bytes]:
        item = self._items.get(index)
        if item is not None:
            return item, out
        item = self._items[index] = _Item(block or neutral.Block(kind), len(self._order))  # type: ignore[arg-type]
        self._order.append(item)
        added = output_item(self._id, item.position, item.block, "in_progress")
        out += self._event({"type": "response.output_item.added", "output_index": item.position, "item": added})
        if kind == "text":
            out += self._event({"type": "response.content_part.added", **self._where(item), "content_index": 0, "part": _text_part("")})
        elif kind == "thinking":
            part = {"type": "reasoning_text", "text": ""}
            out += self._event({"type": "response.content_part.added", **self._where(item), "content_index": 0, "part": part})
        return item, out

    def _close(self, item: _Item) -> bytes:
        item.open = False
        block, where = item.block, self._where(item)
        out = b""
        if block.kind == "text":
            out += self._event({"type": "response.output_text.done", **where, "content_index": 0, "text": block.text, "logprobs": []})
            out += self._event({"type": "response.content_part.done", **where, "content_index": 0, "part": _text_part(block.text)})
        elif block.kind == "thinking":
            out += self._event({"type": "response.reasoning_text.done", **where, "content_index": 0, "text": block.text})
            part = {"type": "reasoning_text", "text": block.text}
            out += self._event({"type": "response.content_part.done", **where, "content_index": 0, "part": part})
        else:
            out += self._event(
                {"type": "response.function_call_arguments.done", **where, "name": block.name or "", "arguments": block.text}
            )
        done = output_item(self._id, item.position, block, "completed")
        return out + self._event({"type": "response.output_item.done", "output_index": item.position, "item": done})

    def close(self) -> bytes:
        """What ends a finished stream: the items still open closed, then ``response.completed``
        (or ``response.incomplete``). Nothing after a failure."""
        if self._failed:
            return b""
        out = b"" if self._started else self._start()
        for item in self._order:
            if item.open:
                out += self._close(item)
        response = self._response()
        return out + self._event({"type": "response." + response["status"], "response": response})

    def error_event(self, kind: str, message: str, code: str | None) -> bytes:
        """What ends a stream that failed midway: ``error`` (faregate's code and message), then
        ``response.failed`` with what the response held so far."""
        if self._failed:
            return b""
        out = b"" if self._started else self._start()
        self._failed = True
        out += self._event({"type": "error", "code": code, "message": message, "param": None})
        error = {"code": _FAILED_CODES.get(kind, "server_error"), "message": message}
        return out + self._event({"type": "response.failed", "response": self._response("failed", error)})
