"""The neutral model: where every wire format meets every other. Pure data, no I/O.

A codec (``faregate.formats.<format>``) decodes its format's request into a ``Request`` and
encodes a ``Request`` into its format; it decodes its format's replies (whole or streamed) into
``Event`` values and encodes events back. A whole reply is the same events a stream would give,
collected (``collect``). Translation happens only off the diagonal: when the client's format is
the provider's, nothing here is used.

Conventions shared by every codec:
- Block ``index`` values are the client-visible content positions of one reply, counted from 0 in
  order of appearance across text, thinking and tool-call blocks (Anthropic's ``index``). OpenAI's
  tool-call ``index`` (the position among tool calls only) is derived by the OpenAI codec.
- ``ToolCall.arguments`` and ``ToolArgsDelta.fragment`` are JSON text, as the model wrote it.
- Finish reasons are the neutral ones below; each codec maps its own both ways.
- ``Request.extra`` keeps the fields of the source format that have no neutral counterpart, by
  name; the target codec decides (``unmapped``) whether it can carry them, and the model's
  ``drop_params`` policy decides whether an uncarried field is a 400 or dropped and disclosed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "stop_sequence", "refusal", "pause", "error"]
CacheTTL = Literal["5m", "1h"]


# ---- request parts ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Text:
    text: str
    cache: CacheTTL | None = None  # a cache mark after this part (Anthropic cache_control)


@dataclass(frozen=True, slots=True)
class Image:
    """An image by URL, or inline as base64 data with its media type."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None  # base64, without the data: prefix
    detail: str | None = None  # OpenAI's low/high/auto
    cache: CacheTTL | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    cache: CacheTTL | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: tuple[Text | Image, ...]
    is_error: bool = False
    cache: CacheTTL | None = None


@dataclass(frozen=True, slots=True)
class Thinking:
    """Model reasoning handed back in a later turn. ``signature`` is opaque and provider-bound
    (Anthropic); ``redacted`` holds Anthropic's encrypted redacted_thinking data instead of text."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


Part = Text | Image | ToolCall | ToolResult | Thinking


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None
    parameters: Mapping[str, Any]  # JSON schema of the arguments
    strict: bool | None = None
    cache: CacheTTL | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None  # with mode "tool"
    parallel: bool | None = None  # None: the provider's default


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    budget_tokens: int | None = None  # Anthropic's thinking budget


@dataclass(frozen=True, slots=True)
class Request:
    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    user: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # source fields with no neutral counterpart


# ---- reply events ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    id: str
    model: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolArgsDelta:
    index: int
    fragment: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None  # the block's signature, when it arrives (Anthropic: last)
    redacted: str | None = None


@dataclass(frozen=True, slots=True)
class BlockStop:
    index: int


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None
    detail: str | None = None  # why a filter or an error ended it, as the provider named it (Gemini's category)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, normalised: ``input`` counts every prompt token that was neither read from nor
    written to a cache (Anthropic's input_tokens; OpenAI's prompt_tokens minus cached_tokens);
    ``reasoning`` is part of ``output``. A codec may emit several Usage events (Anthropic sends
    input at the start and output at the end): each replaces the fields it sets (None: unchanged)."""

    input: int | None = None
    cache_read: int | None = None
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    output: int | None = None
    reasoning: int | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """The reply failed midway (or an upstream error arrived as an event)."""

    kind: Literal["invalid_request", "authentication", "permission", "not_found", "rate_limit", "overloaded", "api_error"]
    message: str
    code: str | None = None


Event = Start | TextDelta | ToolCallStart | ToolArgsDelta | ThinkingDelta | BlockStop | Finish | Usage | Error


# ---- a whole reply ---------------------------------------------------------------------------
@dataclass(slots=True)
class Block:
    kind: Literal["text", "thinking", "tool_call"]
    text: str = ""  # text, thinking text, or tool-call arguments
    id: str | None = None
    name: str | None = None
    signature: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class Reply:
    """A whole reply: the stream's events collected."""

    id: str = ""
    model: str = ""
    blocks: list[Block] = field(default_factory=list)
    finish: Finish | None = None
    usage: Usage = field(default_factory=Usage)
    error: Error | None = None


def merge_usage(old: Usage, new: Usage) -> Usage:
    """``old`` with every field ``new`` sets replaced."""
    return Usage(
        input=new.input if new.input is not None else old.input,
        cache_read=new.cache_read if new.cache_read is not None else old.cache_read,
        cache_write_5m=new.cache_write_5m if new.cache_write_5m is not None else old.cache_write_5m,
        cache_write_1h=new.cache_write_1h if new.cache_write_1h is not None else old.cache_write_1h,
        output=new.output if new.output is not None else old.output,
        reasoning=new.reasoning if new.reasoning is not None else old.reasoning,
    )


def collect(events: Iterable[Event]) -> Reply:
    """A whole reply from its events (in order)."""
    reply = Reply()
    blocks: dict[int, Block] = {}
    for event in events:
        if isinstance(event, Start):
            reply.id, reply.model = event.id, event.model
        elif isinstance(event, TextDelta):
            blocks.setdefault(event.index, Block("text")).text += event.text
        elif isinstance(event, ToolCallStart):
            blocks[event.index] = Block("tool_call", id=event.id, name=event.name)
        elif isinstance(event, ToolArgsDelta):
            blocks.setdefault(event.index, Block("tool_call")).text += event.fragment
        elif isinstance(event, ThinkingDelta):
            block = blocks.setdefault(event.index, Block("thinking"))
            block.text += event.text
            if event.signature is not None:
                block.signature = event.signature
            if event.redacted is not None:
                block.redacted = event.redacted
        elif isinstance(event, Finish):
            reply.finish = event
        elif isinstance(event, Usage):
            reply.usage = merge_usage(reply.usage, event)
        elif isinstance(event, Error):
            reply.error = event
    reply.blocks = [blocks[i] for i in sorted(blocks)]
    return reply


def replay(reply: Reply) -> list[Event]:
    """The events of a whole reply, in the order a stream would give them (inverse of ``collect``)."""
    events: list[Event] = [Start(reply.id, reply.model)]
    for index, block in enumerate(reply.blocks):
        if block.kind == "text":
            events.append(TextDelta(index, block.text))
        elif block.kind == "thinking":
            events.append(ThinkingDelta(index, block.text, block.signature, block.redacted))
        else:
            events.append(ToolCallStart(index, block.id or "", block.name or ""))
            if block.text:
                events.append(ToolArgsDelta(index, block.text))
        events.append(BlockStop(index))
    if reply.error is not None:
        events.append(reply.error)
        return events
    events.append(reply.usage)
    if reply.finish is not None:
        events.append(reply.finish)
    return events
