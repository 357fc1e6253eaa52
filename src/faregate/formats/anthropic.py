"""Anthropic Messages (``POST /v1/messages``), a complete codec in both directions.

Requests are read strictly: a body this codec cannot read in full is a 400 naming the field, the
way Anthropic names it (``max_tokens: Field required``, ``messages.0.content.1.type: ...``).
Top-level fields with no neutral counterpart go to ``Request.extra``; ``encode_request`` carries
the Anthropic ones (``ANTHROPIC_EXTRA``) and lists every other as not carried.

Decisions (the translation table in the README repeats them):
- ``max_tokens`` is required by Anthropic; a neutral request without it gets ``DEFAULT_MAX_TOKENS``.
- Reasoning: ``thinking {type: enabled, budget_tokens}`` <-> ``Reasoning.budget_tokens``; an
  effort becomes a budget (``EFFORT_BUDGETS``). Thinking counts toward ``max_tokens`` and the
  budget must be below it, so when the budget is not below ``max_tokens``, ``max_tokens`` becomes
  budget + max_tokens (the client's limit is kept for the visible answer). ``thinking {type:
  disabled}`` is the neutral "no reasoning"; other thinking types (adaptive) stay in ``extra``.
- ``response_format`` json_schema <-> ``output_config.format {type: json_schema, schema}``
  (structured outputs); json_object has no Anthropic counterpart and is listed as not carried.
  The rest of ``output_config`` (``effort``) stays in ``extra``.
- Server tools (a tool with a ``type`` other than ``custom``, e.g. ``web_search_20250305``) have no
  neutral counterpart: they are kept, in order, in ``extra["tools"]``; another format lists
  ``tools`` as not carried, this one appends them after the client tools.
- Tool fields ``eager_input_streaming`` and ``defer_loading`` are hints about how the tool is
  streamed or loaded; they are not carried (the tool is offered up front, as without tool search).
- Tool-call arguments are JSON text in the neutral model and an object here: arguments that are
  not a JSON object are a 400 naming the message (never an empty ``{}``); empty text is ``{}``.
- Thinking without a signature cannot be sent to Anthropic: listed as ``thinking``.
- Consecutive turns of one role are merged, and a user turn's tool results come first. Empty
  text parts are not written (Anthropic refuses empty text blocks), nor turns left empty.
- A reply's blocks other than text, thinking and tool use (server tool blocks) are skipped.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import orjson

from faregate.errors import InvalidRequest, anthropic_error_body, anthropic_type
from faregate.formats import neutral
from faregate.formats.anthropic_reply import (
    StreamDecoder,
    StreamEncoder,
    decode_reply,
    encode_reply,
    error_body,
    error_event,
    tool_input,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EFFORT_BUDGETS",
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

NAME = "anthropic"
DEFAULT_MAX_TOKENS = 4096  # every Claude model accepts it (the oldest ones' ceiling)
EFFORT_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
# Anthropic top-level fields with no neutral counterpart, carried from Request.extra as they are
ANTHROPIC_EXTRA = frozenset(
    {"cache_control", "container", "context_management", "diagnostics", "inference_geo", "mcp_servers", "output_config"}
    | {"service_tier", "speed", "thinking", "tools", "user_profile_id", "workspace_id"}
)
_SERVICE_TIERS = ("auto", "standard_only")
_KNOWN = frozenset(
    {"model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "temperature", "top_p"}
    | {"top_k", "stream", "thinking", "metadata", "output_config"}
)
_TOOL_HINTS = ("eager_input_streaming", "defer_loading")


# ---- reading a request -----------------------------------------------------------------------
def _fail(path: str, message: str, code: str = "invalid_request") -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path, code=code)


def _get(obj: dict[str, Any], key: str, path: str, kind: type | tuple[type, ...], *, required: bool = False) -> Any:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        if required:
            raise _fail(where, "Field required", "missing_field")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        names = {str: "a valid string", int: "a valid integer", list: "a valid list", dict: "a valid dictionary", bool: "a valid boolean"}
        expected = names.get(kind, "a valid number") if isinstance(kind, type) else "a valid number"
        raise _fail(where, f"Input should be {expected}", "invalid_type")
    return value


def _cache(block: dict[str, Any], path: str) -> neutral.CacheTTL | None:
    mark = _get(block, "cache_control", path, dict)
    if mark is None:
        return None
    if mark.get("type") != "ephemeral":
        raise _fail(f"{path}.cache_control.type", "Input should be 'ephemeral'")
    ttl = mark.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise _fail(f"{path}.cache_control.ttl", "Input should be '5m' or '1h'")
    return cast(neutral.CacheTTL, ttl)


def _text(block: dict[str, Any], path: str) -> neutral.Text:
    if block.get("citations"):
        raise _fail(f"{path}.citations", "text citations cannot be translated to another format")
    return neutral.Text(_get(block, "text", path, str, required=True), _cache(block, path))


def _image(block: dict[str, Any], path: str) -> neutral.Image:
    source = _get(block, "source", path, dict, required=True)
    stype, where = source.get("type"), f"{path}.source"
    if stype == "base64":
        media_type = _get(source, "media_type", where, str, required=True)
        return neutral.Image(media_type=media_type, data=_get(source, "data", where, str, required=True), cache=_cache(block, path))
    if stype == "url":
        return neutral.Image(url=_get(source, "url", where, str, required=True), cache=_cache(block, path))
    raise _fail(f"{where}.type", f"image source type {stype!r} cannot be translated (base64 and url can)")


def _result_content(block: dict[str, Any], path: str) -> tuple[neutral.Text | neutral.Image, ...]:
    content = block.get("content")
    if content is None:
        return ()
    if isinstance(content, str):
        return (neutral.Text(content),)
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "Input should be a valid string or list", "invalid_type")
    parts: list[neutral.Text | neutral.Image] = []
    for i, item in enumerate(content):
        where = f"{path}.content.{i}"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(_text(item, where))
        elif kind == "image":
            parts.append(_image(item, where))
        else:
            raise _fail(f"{where}.type", f"tool result block type {kind!r} cannot be translated (text and image can)")
    return tuple(parts)


def _part(block: Any, path: str) -> neutral.Part:
    if not isinstance(block, dict):
        raise _fail(path, "Input should be a valid dictionary", "invalid_type")
    kind = block.get("type")
    if kind == "text":
        return _text(block, path)
    if kind == "image":
        return _image(block, path)
    if kind == "tool_use":
        tool_input = _get(block, "input", path, dict, required=True)
        call_id, name = _get(block, "id", path, str, required=True), _get(block, "name", path, str, required=True)
        return neutral.ToolCall(call_id, name, orjson.dumps(tool_input).decode(), _cache(block, path))
    if kind == "tool_result":
        call_id = _get(block, "tool_use_id", path, str, required=True)
        is_error = bool(_get(block, "is_error", path, bool))
        return neutral.ToolResult(call_id, _result_content(block, path), is_error, _cache(block, path))
    if kind == "thinking":
        text = _get(block, "thinking", path, str, required=True)
        return neutral.Thinking(text, _get(block, "signature", path, str))
    if kind == "redacted_thinking":
        return neutral.Thinking(redacted=_get(block, "data", path, str, required=True))
    raise _fail(f"{path}.type", f"content block type {kind!r} cannot be translated to another format")


def _message(item: Any, path: str) -> neutral.Message:
    if not isinstance(item, dict):
        raise _fail(path, "Input should be a valid dictionary", "invalid_type")
    role = _get(item, "role", path, str, required=True)
    if role not in ("user", "assistant"):
        raise _fail(f"{path}.role", "Input should be 'user' or 'assistant'")
    content = item.get("content")
    if isinstance(content, str):
        return neutral.Message(role, (neutral.Text(content),))
    blocks = _get(item, "content", path, list, required=True)
    return neutral.Message(role, tuple(_part(block, f"{path}.content.{i}") for i, block in enumerate(blocks)))


def _system(payload: dict[str, Any]) -> tuple[neutral.Text, ...]:
    system = payload.get("system")
    if system is None:
        return ()
    if isinstance(system, str):
        return (neutral.Text(system),) if system else ()
    blocks = _get(payload, "system", "", list)
    parts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _fail(f"system.{i}.type", "Input should be 'text'")
        parts.append(_text(block, f"system.{i}"))
    return tuple(parts)


def _tools(payload: dict[str, Any], extra: dict[str, Any]) -> tuple[neutral.Tool, ...]:
    tools, server = [], []
    for i, tool in enumerate(_get(payload, "tools", "", list) or ()):
        path = f"tools.{i}"
        if not isinstance(tool, dict):
            raise _fail(path, "Input should be a valid dictionary", "invalid_type")
        if tool.get("type") not in (None, "custom"):
            server.append(tool)
            continue
        unknown = set(tool) - {"type", "name", "description", "input_schema", "cache_control", "strict", *_TOOL_HINTS}
        if unknown:
            raise _fail(f"{path}.{sorted(unknown)[0]}", "this tool field cannot be translated to another format")
        name = _get(tool, "name", path, str, required=True)
        schema = _get(tool, "input_schema", path, dict, required=True)
        strict = _get(tool, "strict", path, bool)
        tools.append(neutral.Tool(name, _get(tool, "description", path, str), schema, strict, _cache(tool, path)))
    if server:
        extra["tools"] = server
    return tuple(tools)


def _tool_choice(payload: dict[str, Any]) -> neutral.ToolChoice | None:
    choice = _get(payload, "tool_choice", "", dict)
    if choice is None:
        return None
    modes = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
    mode = modes.get(choice.get("type", ""))
    if mode is None:
        raise _fail("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    name = _get(choice, "name", "tool_choice", str, required=mode == "tool")
    disable = _get(choice, "disable_parallel_tool_use", "tool_choice", bool)
    mode_ = cast(Literal["auto", "none", "required", "tool"], mode)
    return neutral.ToolChoice(mode_, name, None if disable is None else not disable)


def _reasoning(payload: dict[str, Any], extra: dict[str, Any]) -> neutral.Reasoning | None:
    thinking = _get(payload, "thinking", "", dict)
    if thinking is None or thinking.get("type") == "disabled":
        return None
    if thinking.get("type") == "enabled" and set(thinking) <= {"type", "budget_tokens"}:
        return neutral.Reasoning(budget_tokens=_get(thinking, "budget_tokens", "thinking", int, required=True))
    extra["thinking"] = thinking  # adaptive, or with options (display): Anthropic's own
    return None


def _response_format(payload: dict[str, Any], extra: dict[str, Any]) -> neutral.ResponseFormat | None:
    config = _get(payload, "output_config", "", dict)
    if config is None:
        return None
    rest = {key: value for key, value in config.items() if key != "format"}
    if rest:
        extra["output_config"] = rest
    fmt = _get(config, "format", "output_config", dict)
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema":
        raise _fail("output_config.format.type", "Input should be 'json_schema'")
    return neutral.ResponseFormat("json_schema", _get(fmt, "schema", "output_config.format", dict, required=True))


def decode_request(payload: dict[str, Any]) -> neutral.Request:
    """A Messages request body as a neutral Request, or InvalidRequest naming the field."""
    model = _get(payload, "model", "", str, required=True)
    max_tokens = _get(payload, "max_tokens", "", int, required=True)
    if max_tokens < 0:
        raise _fail("max_tokens", "Input should be greater than or equal to 0")
    messages = _get(payload, "messages", "", list, required=True)
    extra = {key: value for key, value in payload.items() if key not in _KNOWN}
    metadata = dict(_get(payload, "metadata", "", dict) or {})
    user = metadata.pop("user_id", None)
    stop = _get(payload, "stop_sequences", "", list) or []
    if not all(isinstance(item, str) for item in stop):
        raise _fail("stop_sequences", "Input should be a list of strings", "invalid_type")
    return neutral.Request(
        model=model,
        messages=tuple(_message(item, f"messages.{i}") for i, item in enumerate(messages)),
        system=_system(payload),
        tools=_tools(payload, extra),
        tool_choice=_tool_choice(payload),
        max_tokens=max_tokens,
        temperature=_get(payload, "temperature", "", (int, float)),
        top_p=_get(payload, "top_p", "", (int, float)),
        top_k=_get(payload, "top_k", "", int),
        stop=tuple(stop),
        stream=bool(_get(payload, "stream", "", bool)),
        response_format=_response_format(payload, extra),
        reasoning=_reasoning(payload, extra),
        user=user if isinstance(user, str) else None,
        metadata=metadata,
        extra=extra,
    )


# ---- writing a request -----------------------------------------------------------------------
def _mark(block: dict[str, Any], cache: neutral.CacheTTL | None) -> dict[str, Any]:
    if cache is not None:
        block["cache_control"] = {"type": "ephemeral"} if cache == "5m" else {"type": "ephemeral", "ttl": cache}
    return block


def _image_out(image: neutral.Image, dropped: set[str]) -> dict[str, Any]:
    if image.detail not in (None, "auto"):
        dropped.add("image.detail")
    if image.data is not None:
        source = {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}
    elif image.url and image.url.startswith("data:") and ";base64," in image.url:
        head, data = image.url[5:].split(";base64,", 1)
        source = {"type": "base64", "media_type": head or "image/png", "data": data}
    else:
        source = {"type": "url", "url": image.url or ""}
    return _mark({"type": "image", "source": source}, image.cache)


def _content(parts: tuple[neutral.Text | neutral.Image, ...], dropped: set[str]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], neutral.Text) and parts[0].cache is None:
        return parts[0].text
    return [_mark({"type": "text", "text": p.text}, p.cache) if isinstance(p, neutral.Text) else _image_out(p, dropped) for p in parts]


def _arguments(call: neutral.ToolCall, where: str) -> dict[str, Any]:
    value = tool_input(call.arguments)
    if value is None:
        raise _fail(where, f"the arguments of tool call {call.id!r} ({call.name}) are not a JSON object, as Anthropic requires")
    return value


def _block_out(part: neutral.Part, where: str, dropped: set[str]) -> dict[str, Any] | None:
    if isinstance(part, neutral.Text):  # Anthropic refuses empty text blocks; an empty text says nothing
        return _mark({"type": "text", "text": part.text}, part.cache) if part.text else None
    if isinstance(part, neutral.Image):
        return _image_out(part, dropped)
    if isinstance(part, neutral.ToolCall):
        return _mark({"type": "tool_use", "id": part.id, "name": part.name, "input": _arguments(part, where)}, part.cache)
    if isinstance(part, neutral.ToolResult):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id}
        content = tuple(p for p in part.content if not isinstance(p, neutral.Text) or p.text)
        if content:
            block["content"] = _content(content, dropped)
        if part.is_error:
            block["is_error"] = True
        return _mark(block, part.cache)
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature is None:
        dropped.add("thinking")  # Anthropic refuses thinking it did not sign
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _messages_out(messages: tuple[neutral.Message, ...], dropped: set[str]) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[Any], list[dict[str, Any]]]] = []  # role, parts, blocks
    for i, message in enumerate(messages):
        blocks = [b for b in (_block_out(part, f"messages.{i}", dropped) for part in message.parts) if b is not None]
        if not blocks:
            continue
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(message.parts)
            turns[-1][2].extend(blocks)
        else:
            turns.append((message.role, list(message.parts), blocks))
    out: list[dict[str, Any]] = []
    for role, parts, blocks in turns:
        if role == "user":  # tool results first, in their order; then the rest in theirs
            blocks = [b for b in blocks if b["type"] == "tool_result"] + [b for b in blocks if b["type"] != "tool_result"]
        if len(parts) == 1 and isinstance(parts[0], neutral.Text) and parts[0].cache is None:
            out.append({"role": role, "content": parts[0].text})
        else:
            out.append({"role": role, "content": blocks})
    return out


def _tool_out(tool: neutral.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = dict(tool.parameters)
    if tool.strict is not None:
        out["strict"] = tool.strict
    return _mark(out, tool.cache)


def _tool_choice_out(choice: neutral.ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}[choice.mode]}
    if choice.mode == "tool":
        out["name"] = choice.name or ""
    if choice.parallel is not None:
        out["disable_parallel_tool_use"] = not choice.parallel
    return out


def _thinking_out(request: neutral.Request, payload: dict[str, Any]) -> None:
    reasoning = request.reasoning
    budget = reasoning and (reasoning.budget_tokens or (reasoning.effort and EFFORT_BUDGETS[reasoning.effort]))
    if not budget:
        return
    payload["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if payload["max_tokens"] <= budget:
        payload["max_tokens"] += budget


def encode_request(request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A neutral Request as a Messages body for ``model``, and the names of what it cannot carry."""
    dropped: set[str] = set()
    payload: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS}
    if request.system:
        system = request.system
        payload["system"] = (
            system[0].text
            if len(system) == 1 and system[0].cache is None
            else [_mark({"type": "text", "text": s.text}, s.cache) for s in system]
        )
    payload["messages"] = _messages_out(request.messages, dropped)
    server_tools = request.extra.get("tools")
    if request.tools or server_tools:
        payload["tools"] = [_tool_out(tool) for tool in request.tools] + list(server_tools or ())
    if request.tool_choice is not None:
        payload["tool_choice"] = _tool_choice_out(request.tool_choice)
    if request.stop:
        payload["stop_sequences"] = list(request.stop)
    for name in ("temperature", "top_p", "top_k"):
        if getattr(request, name) is not None:
            payload[name] = getattr(request, name)
    if request.stream:
        payload["stream"] = True
    _thinking_out(request, payload)
    if request.user is not None:
        payload["metadata"] = {"user_id": request.user}
    if request.metadata:
        dropped.add("metadata")
    config = dict(request.extra.get("output_config") or {})
    fmt = request.response_format
    if fmt is not None and fmt.kind == "json_schema" and fmt.schema is not None:
        config["format"] = {"type": "json_schema", "schema": dict(fmt.schema)}
    elif fmt is not None and fmt.kind != "text":
        dropped.add("response_format")
    if config:
        payload["output_config"] = config
    for name, value in request.extra.items():
        if name in ("tools", "output_config") or (name == "thinking" and "thinking" in payload):
            continue
        if name in ANTHROPIC_EXTRA and (name != "service_tier" or value in _SERVICE_TIERS):
            payload[name] = value
        else:
            dropped.add(name)
    return payload, tuple(sorted(dropped))


HEARTBEAT = b'event: ping\ndata: {"type": "ping"}\n\n'  # what Anthropic's own streams send between events


def own_error(data: Any) -> bool:
    """Whether a parsed upstream error body is in Anthropic's shape (``{"type": "error", "error":
    {type, message}}``): then it is passed on as sent, its message extended."""
    return isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict)


def upstream_error_body(status: int, upstream_type: str | None, message: str) -> bytes:
    """An upstream's 4xx error in another shape (or no JSON) rewritten into Anthropic's: the type
    by the status (``errors.anthropic_type``), as Anthropic clients act on it."""
    del upstream_type
    return anthropic_error_body(message, anthropic_type(status))
