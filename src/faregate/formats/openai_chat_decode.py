"""Reading an OpenAI Chat Completions request into the neutral model (``openai_chat.decode_request``).

Strict by design: a field that cannot be read into the neutral model is a 400 naming it
(``param``, OpenAI's error shape), never dropped; a top-level field with no neutral counterpart goes
to ``Request.extra`` by name. The decisions are listed in ``openai_chat``'s docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

from faregate.errors import InvalidRequest
from faregate.formats import neutral
from faregate.formats.openai_chat_stream import reasoning_text

_NEUTRAL_FIELDS = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "stop", "stream", "response_format", "reasoning_effort", "user", "metadata",
    }
)  # fmt: skip
_EFFORTS = ("minimal", "low", "medium", "high")
_OTHER_FORMAT = "cannot be translated for this model (it is served by a provider of another API format)"


# ---- validation helpers -----------------------------------------------------------------------
def _fail(param: str, message: str, code: str = "invalid_type") -> NoReturn:
    raise InvalidRequest(f"'{param}' {message}", param=param, code=code)


def _unsupported(param: str, what: str) -> NoReturn:
    _fail(param, f"{what} {_OTHER_FORMAT}", "unsupported_value")


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        _fail(param, "must be a string")
    return value


def _number(value: Any, param: str) -> float:
    if type(value) not in (int, float):
        _fail(param, "must be a number")
    return float(value)


def _count(value: Any, param: str) -> int:
    if type(value) is not int or value < 1:
        _fail(param, "must be a positive integer")
    return int(value)


def _dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(param, "must be an object")
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(param, "must be an array")
    return value


def _only(obj: dict[str, Any], allowed: frozenset[str], param: str) -> None:
    """Refuses a set field (not null) this codec does not know: it would be lost."""
    for key, value in obj.items():
        if key not in allowed and value is not None:
            _fail(f"{param}.{key}", _OTHER_FORMAT, "unsupported_parameter")


def _cache(part: dict[str, Any], param: str) -> neutral.CacheTTL | None:
    mark = part.get("cache_control")
    if mark is None:
        return None
    mark = _dict(mark, f"{param}.cache_control")
    if mark.get("type") != "ephemeral":
        _fail(f"{param}.cache_control.type", "must be 'ephemeral'", "invalid_value")
    ttl = mark.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        _fail(f"{param}.cache_control.ttl", "must be '5m' or '1h'", "invalid_value")
    return "1h" if ttl == "1h" else "5m"


# ---- decode_request ---------------------------------------------------------------------------
_TEXT_KEYS = frozenset({"type", "text", "cache_control"})
_IMAGE_KEYS = frozenset({"type", "image_url", "cache_control"})


def _image(part: dict[str, Any], param: str) -> neutral.Image:
    _only(part, _IMAGE_KEYS, param)
    spec = part.get("image_url")
    if isinstance(spec, str):
        spec = {"url": spec}
    spec = _dict(spec, f"{param}.image_url")
    _only(spec, frozenset({"url", "detail"}), f"{param}.image_url")
    url = _str(spec.get("url"), f"{param}.image_url.url")
    detail = spec.get("detail")
    if detail is not None:
        detail = _str(detail, f"{param}.image_url.detail")
    cache = _cache(part, param)
    if not url.startswith("data:"):
        return neutral.Image(url=url, detail=detail, cache=cache)
    head, comma, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if not comma or encoding != "base64" or not media_type:
        _fail(f"{param}.image_url.url", "must be an http(s) URL or a data:<media type>;base64,<data> URL", "invalid_value")
    return neutral.Image(media_type=media_type, data=data, detail=detail, cache=cache)


_TEXT = frozenset({"text"})
_USER = frozenset({"text", "image_url"})
_ASSISTANT = frozenset({"text", "refusal"})


def _parts(content: Any, param: str, kinds: frozenset[str]) -> list[neutral.Text | neutral.Image]:
    """A message's content (a string or an array of parts of these kinds) as Text and Image parts;
    an assistant's refusal part is text."""
    if isinstance(content, str):
        return [neutral.Text(content)]
    if not isinstance(content, list):
        _fail(f"{param}.content", "must be a string or an array of content parts", "missing_field" if content is None else "invalid_type")
    parts: list[neutral.Text | neutral.Image] = []
    for j, raw in enumerate(content):
        where = f"{param}.content[{j}]"
        part = _dict(raw, where)
        kind = part.get("type")
        if kind not in kinds:
            _unsupported(f"{where}.type", f"content of type {kind!r}")
        elif kind == "text":
            _only(part, _TEXT_KEYS, where)
            parts.append(neutral.Text(_str(part.get("text"), f"{where}.text"), _cache(part, where)))
        elif kind == "image_url":
            parts.append(_image(part, where))
        elif kind == "refusal":
            _only(part, frozenset({"type", "refusal"}), where)
            parts.append(neutral.Text(_str(part.get("refusal"), f"{where}.refusal")))
    return parts


def _tool_calls(raw: Any, param: str) -> list[neutral.ToolCall]:
    calls: list[neutral.ToolCall] = []
    for k, item in enumerate(_list(raw, param)):
        where = f"{param}[{k}]"
        call = _dict(item, where)
        if call.get("type", "function") != "function":
            _unsupported(f"{where}.type", f"a tool call of type {call.get('type')!r}")
        _only(call, frozenset({"id", "type", "function"}), where)
        function = _dict(call.get("function"), f"{where}.function")
        calls.append(
            neutral.ToolCall(
                _str(call.get("id"), f"{where}.id"),
                _str(function.get("name"), f"{where}.function.name"),
                _str(function.get("arguments", "{}"), f"{where}.function.arguments"),
            )
        )
    return calls


def _assistant(message: dict[str, Any], param: str) -> neutral.Message:
    _only(message, frozenset({"role", "content", "tool_calls", "reasoning_content", "reasoning", "refusal"}), param)
    parts: list[neutral.Part] = []
    thinking = reasoning_text(message)
    if thinking:
        parts.append(neutral.Thinking(thinking))
    content = message.get("content")
    if content is not None:
        parts += [p for p in _parts(content, param, _ASSISTANT) if isinstance(p, neutral.Text) and p.text]
    refusal = message.get("refusal")
    if refusal is not None:
        parts.append(neutral.Text(_str(refusal, f"{param}.refusal")))
    if message.get("tool_calls") is not None:
        parts += _tool_calls(message["tool_calls"], f"{param}.tool_calls")
    return neutral.Message("assistant", tuple(parts) or (neutral.Text(""),))


def _tool_result(message: dict[str, Any], param: str) -> neutral.ToolResult:
    _only(message, frozenset({"role", "content", "tool_call_id"}), param)
    if "tool_call_id" not in message:
        _fail(f"{param}.tool_call_id", "is required", "missing_field")
    call_id = _str(message["tool_call_id"], f"{param}.tool_call_id")
    content = message.get("content")
    return neutral.ToolResult(call_id, tuple(_parts(content if content is not None else "", param, _USER)))


_PLAIN_KEYS = frozenset({"role", "content", "cache_control"})


def _marked(parts: list[neutral.Text | neutral.Image], message: dict[str, Any], param: str) -> list[neutral.Text | neutral.Image]:
    """A message-level ``cache_control`` marks the message's last part (as LiteLLM reads it)."""
    cache = _cache(message, param)
    if cache is not None and parts:
        parts[-1] = dataclasses.replace(parts[-1], cache=cache)
    return parts


def _user_parts(message: dict[str, Any], param: str) -> list[neutral.Text | neutral.Image]:
    parts = _parts(message.get("content"), param, _USER)
    if not parts:
        _fail(f"{param}.content", "must not be empty", "invalid_value")
    return parts


def _messages(raw: Any) -> tuple[tuple[neutral.Text, ...], tuple[neutral.Message, ...]]:
    if raw is None:
        _fail("messages", "is required", "missing_field")
    if not _list(raw, "messages"):
        _fail("messages", "must not be empty", "invalid_value")
    system: list[neutral.Text] = []
    messages: list[neutral.Message] = []
    results: list[neutral.Part] = []  # the open run of tool messages
    for i, item in enumerate(raw):
        param = f"messages[{i}]"
        message = _dict(item, param)
        role = message.get("role")
        if role != "tool" and results:
            messages.append(neutral.Message("user", tuple(results)))
            results = []
        if role in ("system", "developer"):
            _only(message, _PLAIN_KEYS, param)
            system += [p for p in _marked(_parts(message.get("content"), param, _TEXT), message, param) if isinstance(p, neutral.Text)]
        elif role == "user":
            _only(message, _PLAIN_KEYS, param)
            messages.append(neutral.Message("user", tuple(_marked(_user_parts(message, param), message, param))))
        elif role == "assistant":
            messages.append(_assistant(message, param))
        elif role == "tool":
            results.append(_tool_result(message, param))
        elif isinstance(role, str):
            _unsupported(f"{param}.role", f"a message with role {role!r}")
        else:
            _fail(
                f"{param}.role",
                "must be one of system, developer, user, assistant, tool",
                "missing_field" if role is None else "invalid_type",
            )
    if results:
        messages.append(neutral.Message("user", tuple(results)))
    return tuple(system), tuple(messages)


def _tools(raw: Any) -> tuple[neutral.Tool, ...]:
    tools: list[neutral.Tool] = []
    for i, item in enumerate(_list(raw, "tools")):
        param = f"tools[{i}]"
        tool = _dict(item, param)
        if tool.get("type") != "function":
            _unsupported(f"{param}.type", f"a tool of type {tool.get('type')!r}")
        _only(tool, frozenset({"type", "function", "cache_control"}), param)
        function = _dict(tool.get("function"), f"{param}.function")
        _only(function, frozenset({"name", "description", "parameters", "strict"}), f"{param}.function")
        description = function.get("description")
        strict = function.get("strict")
        if strict is not None and type(strict) is not bool:
            _fail(f"{param}.function.strict", "must be a boolean")
        parameters = function.get("parameters")
        tools.append(
            neutral.Tool(
                _str(function.get("name"), f"{param}.function.name"),
                _str(description, f"{param}.function.description") if description is not None else None,
                _dict(parameters, f"{param}.function.parameters") if parameters is not None else {"type": "object", "properties": {}},
                strict,
                _cache(tool, param),
            )
        )
    return tuple(tools)


def _tool_choice(raw: Any, parallel: Any) -> neutral.ToolChoice | None:
    if parallel is not None and type(parallel) is not bool:
        _fail("parallel_tool_calls", "must be a boolean")
    if raw is None:
        return neutral.ToolChoice("auto", parallel=parallel) if parallel is not None else None
    if raw in ("auto", "none", "required"):
        return neutral.ToolChoice(raw, parallel=parallel)
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = _str(_dict(raw.get("function"), "tool_choice.function").get("name"), "tool_choice.function.name")
        return neutral.ToolChoice("tool", name, parallel)
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        _unsupported("tool_choice.type", f"a tool_choice of type {raw['type']!r}")
    _fail("tool_choice", 'must be \'auto\', \'none\', \'required\' or {"type": "function", "function": {"name": ...}}', "invalid_value")


def _response_format(raw: Any) -> neutral.ResponseFormat:
    spec = _dict(raw, "response_format")
    kind = spec.get("type")
    if kind in ("text", "json_object"):
        _only(spec, frozenset({"type"}), "response_format")
        return neutral.ResponseFormat(kind)
    if kind != "json_schema":
        _fail("response_format.type", "must be one of text, json_object, json_schema", "invalid_value")
    _only(spec, frozenset({"type", "json_schema"}), "response_format")
    schema = _dict(spec.get("json_schema"), "response_format.json_schema")
    _only(schema, frozenset({"name", "schema", "strict"}), "response_format.json_schema")
    strict = schema.get("strict")
    if strict is not None and type(strict) is not bool:
        _fail("response_format.json_schema.strict", "must be a boolean")
    name = schema.get("name")
    body = schema.get("schema")
    return neutral.ResponseFormat(
        "json_schema",
        _dict(body, "response_format.json_schema.schema") if body is not None else None,
        _str(name, "response_format.json_schema.name") if name is not None else None,
        strict,
    )


def decode_request(payload: dict[str, Any]) -> neutral.Request:
    """An OpenAI Chat Completions request body as a neutral Request (400 naming a field it cannot read)."""
    get = payload.get
    system, messages = _messages(get("messages"))
    max_tokens = get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = get("max_tokens")
    elif get("max_tokens") is not None and get("max_tokens") != max_tokens:
        _fail("max_tokens", "and 'max_completion_tokens' disagree; send one of them", "invalid_value")
    param = "max_completion_tokens" if get("max_completion_tokens") is not None else "max_tokens"
    stop = get("stop")
    if isinstance(stop, str):
        stop = [stop]
    effort = get("reasoning_effort")
    if effort is not None:
        _str(effort, "reasoning_effort")
    metadata = get("metadata")
    if get("stream_options") is not None:
        _dict(get("stream_options"), "stream_options")  # read by the translator, not carried
    extra = {
        key: value
        for key, value in payload.items()
        if key not in _NEUTRAL_FIELDS and key != "stream_options" and not _is_default(key, value)
    }
    if effort is not None and effort not in _EFFORTS:
        extra["reasoning_effort"] = effort  # none, xhigh, max: no neutral counterpart
    return neutral.Request(
        model=_str(get("model"), "model"),
        messages=messages,
        system=system,
        tools=_tools(get("tools")) if get("tools") is not None else (),
        tool_choice=_tool_choice(get("tool_choice"), get("parallel_tool_calls")),
        max_tokens=_count(max_tokens, param) if max_tokens is not None else None,
        temperature=_number(get("temperature"), "temperature") if get("temperature") is not None else None,
        top_p=_number(get("top_p"), "top_p") if get("top_p") is not None else None,
        top_k=_count(get("top_k"), "top_k") if get("top_k") is not None else None,
        stop=tuple(_str(s, f"stop[{i}]") for i, s in enumerate(_list(stop, "stop"))) if stop is not None else (),
        stream=_bool(get("stream"), "stream"),
        response_format=_response_format(get("response_format")) if get("response_format") is not None else None,
        reasoning=neutral.Reasoning(effort=effort) if effort in _EFFORTS else None,
        user=_str(get("user"), "user") if get("user") is not None else None,
        metadata=_dict(metadata, "metadata") if metadata is not None else {},
        extra=extra,
    )


# OpenAI parameters some clients send at their default value: that asks for nothing, so it is not
# kept (another format would otherwise have to refuse it)
_DEFAULTS: dict[str, tuple[Any, ...]] = {"n": (1,), "frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logprobs": (False,)}


def _is_default(key: str, value: Any) -> bool:
    return value is None or any(value == d and type(value) is type(d) for d in _DEFAULTS.get(key, ()))


def _bool(value: Any, param: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        _fail(param, "must be a boolean")
    return bool(value)
