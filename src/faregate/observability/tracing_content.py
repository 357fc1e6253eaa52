"""What a trace reads of a request and its reply, in the client's wire format: the sampling
parameters (``gen_ai.request.*``), the reply's model, id and finish reasons, and, only when
``observability.otlp.record_content`` is on, the messages in the GenAI conventions' JSON shape
(``gen_ai.input.messages``, ``gen_ai.system_instructions``, ``gen_ai.output.messages``: a list of
``{role, parts: [{type, content}...]}``), bounded in size.

Nothing here runs unless tracing is on (``faregate.observability.tracing``); no opentelemetry import.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_TEXT = 4096  # characters of one text part kept; the rest is cut with a note of how much was cut
MAX_JSON = 32 * 1024  # characters of one content attribute: the oldest messages go first beyond this
Attributes = dict[str, str | bool | int | float | list[str]]

# the payload's sampling fields, by the attribute each one is (the first present of a tuple wins)
_PARAMS: tuple[tuple[str, tuple[str, ...], type], ...] = (
    ("gen_ai.request.max_tokens", ("max_tokens", "max_completion_tokens", "max_output_tokens"), int),
    ("gen_ai.request.temperature", ("temperature",), float),
    ("gen_ai.request.top_p", ("top_p",), float),
    ("gen_ai.request.top_k", ("top_k",), float),
    ("gen_ai.request.frequency_penalty", ("frequency_penalty",), float),
    ("gen_ai.request.presence_penalty", ("presence_penalty",), float),
    ("gen_ai.request.seed", ("seed",), int),
    ("gen_ai.request.choice.count", ("n",), int),
)


def request_params(payload: dict[str, Any]) -> Attributes:
    """The conventions' request attributes a payload sets (any client format: the names they share)."""
    found: Attributes = {}
    for attribute, names, kind in _PARAMS:
        for name in names:
            value = payload.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[attribute] = kind(value)
                break
    stop = payload.get("stop", payload.get("stop_sequences"))
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        found["gen_ai.request.stop_sequences"] = stop[:16]
    dimensions = payload.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        found["gen_ai.embeddings.dimension.count"] = dimensions
    return found


def _text(value: str) -> str:
    if len(value) <= MAX_TEXT:
        return value
    return value[:MAX_TEXT] + f"...[{len(value) - MAX_TEXT} characters not recorded]"


def _part(block: Any) -> dict[str, Any] | None:
    """One content block of any of the three formats as a conventions part."""
    if isinstance(block, str):
        return {"type": "text", "content": _text(block)}
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    text = block.get("text")
    if isinstance(text, str) and kind in ("text", "input_text", "output_text", None):
        return {"type": "text", "content": _text(text)}
    if kind in ("tool_use", "function_call"):  # Anthropic's tool_use, a Responses function_call item
        arguments = block.get("input", block.get("arguments"))
        if isinstance(arguments, str):
            arguments = _text(arguments)
        return {"type": "tool_call", "id": block.get("id", block.get("call_id")), "name": block.get("name"), "arguments": arguments}
    if kind in ("tool_result", "function_call_output"):
        result = block.get("content", block.get("output"))
        return {"type": "tool_call_response", "id": block.get("tool_use_id", block.get("call_id")), "response": _plain(result)}
    return {"type": str(kind) if kind else "unknown"}  # images, audio, documents: named, never their bytes


def _plain(value: Any) -> Any:
    """A tool result's content, its text parts cut to size (a string, or a list of blocks)."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [p for p in (_part(b) for b in value) if p is not None]
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, list):
        return [p for p in (_part(b) for b in content) if p is not None]
    part = _part(content)
    return [part] if part is not None else []


def _chat_message(message: Any) -> dict[str, Any] | None:
    """An OpenAI Chat or Anthropic message (role + content, tool calls, tool results)."""
    if not isinstance(message, dict):
        return None
    role = message.get("role") if isinstance(message.get("role"), str) else "user"
    parts = _parts(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": _text(arguments) if isinstance(arguments, str) else arguments,
                }
            )
    if role == "tool":  # OpenAI's tool result: the whole message is the response
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": _plain(message.get("content"))}]
    return {"role": role, "parts": parts}


def _responses_items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "parts": [{"type": "text", "content": _text(value)}]}]
    messages: list[dict[str, Any]] = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type", "message") == "message":
            role = item.get("role") if isinstance(item.get("role"), str) else "user"
            messages.append({"role": role, "parts": _parts(item.get("content"))})
        else:
            part = _part(item)
            role = "tool" if item.get("type") == "function_call_output" else "assistant"
            messages.append({"role": role, "parts": [part] if part is not None else []})
    return messages


def _bounded(messages: list[Any]) -> str | None:
    """The JSON of ``messages``, keeping the most recent ones that fit ``MAX_JSON``."""
    if not messages:
        return None
    kept = list(messages)
    text = orjson.dumps(kept).decode()
    while len(text) > MAX_JSON and len(kept) > 1:
        kept.pop(0)
        text = orjson.dumps(kept).decode()
    if len(text) > MAX_JSON:  # one message alone is too long (many parts): its parts are named, not recorded
        return orjson.dumps([{"role": "user", "parts": [{"type": "text", "content": "[too long to record]"}]}]).decode()
    return text


def input_messages(fmt: str, payload: dict[str, Any]) -> Attributes:
    """``gen_ai.input.messages`` and ``gen_ai.system_instructions`` of a conversation request."""
    system: Any = None
    if fmt == "anthropic":
        messages = [m for m in map(_chat_message, payload.get("messages") or ()) if m is not None]
        system = payload.get("system")
    elif fmt == "openai_responses":
        messages = _responses_items(payload.get("input"))
        system = payload.get("instructions")
    else:
        raw = payload.get("messages")
        if raw is None and isinstance(payload.get("prompt"), str):  # legacy completions
            raw = [{"role": "user", "content": payload["prompt"]}]
        messages = [m for m in map(_chat_message, raw or ()) if m is not None]
    found: Attributes = {}
    text = _bounded(messages)
    if text is not None:
        found["gen_ai.input.messages"] = text
    if system:
        instructions = _bounded(_parts(system))
        if instructions is not None:
            found["gen_ai.system_instructions"] = instructions
    return found


class Reply:
    """What a reply said about itself (the client's format): model, id, finish reasons and, when
    recording content, its messages. A whole reply is read once; a stream event by event."""

    def __init__(self, fmt: str, record: bool) -> None:
        self.format, self.record = fmt, record
        self.model: str | None = None
        self.id: str | None = None
        self.finish: dict[int, str] = {}  # by choice index
        self.texts: dict[int, list[str]] = {}  # by choice index, only when recording (stream: the deltas)
        self.size = 0  # characters of text kept (stream), at most MAX_TEXT per reply
        self.outputs: list[dict[str, Any]] | None = None  # a whole reply's messages, only when recording

    def attributes(self) -> Attributes:
        found: Attributes = {}
        if self.model:
            found["gen_ai.response.model"] = self.model
        if self.id:
            found["gen_ai.response.id"] = self.id
        if self.finish:
            found["gen_ai.response.finish_reasons"] = [self.finish[i] for i in sorted(self.finish)]
        return found

    def content(self) -> Attributes:
        outputs = self.outputs
        if outputs is None and self.texts:  # a stream: its text deltas joined per choice
            outputs = []
            for index in sorted(self.texts):
                message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": _text("".join(self.texts[index]))}]}
                if index in self.finish:
                    message["finish_reason"] = self.finish[index]
                outputs.append(message)
        text = _bounded(outputs or [])
        return {"gen_ai.output.messages": text} if text is not None else {}

    def _head(self, data: dict[str, Any]) -> None:
        model, rid = data.get("model"), data.get("id")
        if isinstance(model, str) and self.model is None:
            self.model = model[:200]
        if isinstance(rid, str) and self.id is None:
            self.id = rid[:200]

    # a whole reply -----------------------------------------------------------------------------
    def read(self, body: bytes) -> None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        self._head(data)
        outputs: list[dict[str, Any]] = []
        if self.format == "anthropic":
            if isinstance(data.get("stop_reason"), str):
                self.finish[0] = data["stop_reason"]
            outputs.append({"role": "assistant", "parts": _parts(data.get("content")), "finish_reason": self.finish.get(0)})
        elif self.format == "openai_responses":
            self._responses_done(data)
            outputs = _responses_items(data.get("output"))
        else:
            for i, choice in enumerate(data.get("choices") or ()):
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", i) if isinstance(choice.get("index", i), int) else i
                if isinstance(choice.get("finish_reason"), str):
                    self.finish[index] = choice["finish_reason"]
                message = _chat_message(choice.get("message")) if "message" in choice else None
                if message is None and isinstance(choice.get("text"), str):  # completions
                    message = {"role": "assistant", "parts": [{"type": "text", "content": _text(choice["text"])}]}
                if message is not None:
                    message["finish_reason"] = self.finish.get(index)
                    outputs.append(message)
        if self.record:
            self.outputs = outputs

    def _responses_done(self, response: dict[str, Any]) -> None:
        status = response.get("status")
        details = response.get("incomplete_details")
        if isinstance(details, dict) and isinstance(details.get("reason"), str):
            self.finish[0] = details["reason"]
        elif isinstance(status, str):
            self.finish[0] = status

    # a stream, in the client's format ----------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """The complete SSE events of one relayed chunk (the relay writes whole events)."""
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._event(event)

    def _keep(self, index: int, text: Any) -> None:
        if self.record and isinstance(text, str) and self.size < MAX_TEXT + 1:
            self.texts.setdefault(index, []).append(text)
            self.size += len(text)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if self.format == "anthropic":
            if kind == "message_start" and isinstance(event.get("message"), dict):
                self._head(event["message"])
            elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
                self._keep(0, event["delta"].get("text"))
            elif kind == "message_delta" and isinstance(event.get("delta"), dict):
                reason = event["delta"].get("stop_reason")
                if isinstance(reason, str):
                    self.finish[0] = reason
        elif self.format == "openai_responses":
            response = event.get("response")
            if isinstance(response, dict):
                self._head(response)
                if kind in ("response.completed", "response.incomplete", "response.failed"):
                    self._responses_done(response)
            elif kind == "response.output_text.delta":
                self._keep(0, event.get("delta"))
        else:
            self._head(event)
            for i, choice in enumerate(event.get("choices") or ()):
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", i) if isinstance(choice.get("index", i), int) else i
                delta = choice.get("delta")
                self._keep(index, delta.get("content") if isinstance(delta, dict) else choice.get("text"))
                if isinstance(choice.get("finish_reason"), str):
                    self.finish[index] = choice["finish_reason"]
