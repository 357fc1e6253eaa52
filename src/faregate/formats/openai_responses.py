"""The OpenAI Responses codec, client side (see neutral.py). Pure: no I/O, no clock.

A client of ``POST /v1/responses`` meets a provider of another format (Chat Completions,
Anthropic, ...): its request is decoded into the neutral model and its reply, whole or streamed
(``openai_responses_stream``), encoded back. On the diagonal (an OpenAI provider with
``responses: true``) nothing here runs: the bytes go as sent. No provider is spoken to in this
format through translation, so this is a client codec only (``translate.ClientCodec``).

Decisions:
- ``input`` a string is one user message. Items: messages (roles user, assistant, system,
  developer; ``content`` a string or ``input_text`` / ``input_image`` / ``output_text`` /
  ``refusal`` parts), ``function_call`` (an assistant tool call: its ``call_id`` is the call's id)
  and ``function_call_output`` (the result of the call with that ``call_id``), ``reasoning`` (its
  summary or reasoning text as a Thinking part; an ``encrypted_content`` faregate wrote gives back
  the Anthropic signature or redacted data it carries, OpenAI's own is not read). Consecutive assistant items
  make one assistant turn, consecutive tool outputs one user turn.
- ``instructions`` and system/developer messages become ``Request.system`` in order.
- ``tools``: function tools only; any other type is a 400 naming it (``tools[i].type``).
  ``tool_choice`` auto/none/required or ``{"type": "function", "name"}``; ``parallel_tool_calls``.
- ``text.format`` text / json_object / json_schema (``name``, ``schema``, ``strict`` at the
  format's top level, as Responses has them); ``text.verbosity`` is carried as ``verbosity``.
- ``reasoning.effort`` minimal/low/medium/high maps; another effort (none, xhigh) is carried as
  ``reasoning_effort``; ``reasoning.summary`` by that name (no other format writes
  summaries: listed as dropped, so a 400 unless the deployment has ``drop_params``).
- ``max_output_tokens`` is ``max_tokens``. ``store`` is accepted and ignored: faregate keeps no
  responses (a translated reply is never stored; ``previous_response_id`` is refused by the
  front). Defaults that ask for nothing (``include: []``, ``truncation: "disabled"``, nulls) are
  not carried; every other top-level field goes to ``extra`` by name.
- A reply's blocks become output items one for one: text a ``message`` with one ``output_text``
  part, thinking a ``reasoning`` item (its text as ``reasoning_text`` content; an Anthropic
  signature or redacted block in ``encrypted_content``, marked as faregate's), a tool call a ``function_call`` whose ``call_id`` is the call's id.
  Finish ``length`` is status ``incomplete`` (max_output_tokens), a content filter or refusal
  ``incomplete`` (content_filter).
"""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import InvalidRequest
from faregate.formats import neutral
from faregate.formats.openai_chat import own_error, upstream_error_body
from faregate.formats.openai_chat_stream import error_object
from faregate.formats.openai_responses_stream import (
    HEARTBEAT,
    REDACTED_MARK,
    SIGNATURE_MARK,
    StreamEncoder,
    error_event,
    output_item,
    response_object,
)

__all__ = [
    "HEARTBEAT",
    "NAME",
    "StreamEncoder",
    "decode_request",
    "encode_reply",
    "error_body",
    "error_event",
    "own_error",
    "upstream_error_body",
]

NAME = "openai_responses"

_EFFORTS = frozenset({"minimal", "low", "medium", "high"})
_NEUTRAL_FIELDS = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
        "max_output_tokens", "temperature", "top_p", "stream", "user", "metadata", "store", "stream_options",
    }
)  # fmt: skip
_ASKS_NOTHING: dict[str, Any] = {"include": [], "truncation": "disabled", "background": False}


def _fail(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(f"'{param}' {message}", param=param, code=code)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _string(obj: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", f"must be a string, not {_kind(value)}", "invalid_type")
    return value


# ---- decode_request ---------------------------------------------------------------------------
def _image(part: dict[str, Any], path: str) -> neutral.Image:
    if part.get("file_id") is not None:
        raise _fail(f"{path}.file_id", "is not supported: faregate cannot fetch uploaded files; send image_url instead")
    url = _string(part, "image_url", path)
    assert url is not None
    detail = part.get("detail")
    detail = detail if isinstance(detail, str) and detail != "auto" else None
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return neutral.Image(media_type=media_type, data=data, detail=detail)
    return neutral.Image(url=url, detail=detail)


def _parts(content: Any, path: str) -> list[neutral.Text | neutral.Image]:
    """A message's content (a string or parts) as neutral parts."""
    if isinstance(content, str):
        return [neutral.Text(content)]
    if not isinstance(content, list):
        raise _fail(path, f"must be a string or an array of content parts, not {_kind(content)}", "invalid_type")
    parts: list[neutral.Text | neutral.Image] = []
    for k, part in enumerate(content):
        where = f"{path}[{k}]"
        if not isinstance(part, dict):
            raise _fail(where, f"must be an object, not {_kind(part)}", "invalid_type")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(neutral.Text(_string(part, "text", where) or ""))
        elif kind == "refusal":
            parts.append(neutral.Text(_string(part, "refusal", where) or ""))
        elif kind == "input_image":
            parts.append(_image(part, where))
        else:
            raise _fail(f"{where}.type", f"{kind!r} is not supported (supported: input_text, input_image, output_text, refusal)")
    return parts


class _Turns:
    """Neutral messages built from input items: consecutive items of one role make one turn."""

    def __init__(self) -> None:
        self.system: list[neutral.Text] = []
        self.messages: list[neutral.Message] = []

    def add(self, role: neutral.Role, parts: list[neutral.Part]) -> None:
        if self.messages and self.messages[-1].role == role and not _mixes_results(self.messages[-1], parts):
            last = self.messages.pop()
            parts = [*last.parts, *parts]
        self.messages.append(neutral.Message(role, tuple(parts)))

    def item(self, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            raise _fail(path, f"must be an object, not {_kind(item)}", "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            parts = _parts(item.get("content"), f"{path}.content")
            if role in ("system", "developer"):
                if any(isinstance(p, neutral.Image) for p in parts):
                    raise _fail(f"{path}.content", f"of a {role} message may hold text only")
                self.system += [p for p in parts if isinstance(p, neutral.Text)]
            elif role in ("user", "assistant"):
                self.add(role, list(parts))
            else:
                raise _fail(f"{path}.role", f"must be user, assistant, system or developer, not {role!r}")
        elif kind == "function_call":
            call_id = _string(item, "call_id", path)
            name = _string(item, "name", path)
            arguments = _string(item, "arguments", path, required=False) or ""
            assert call_id is not None and name is not None
            self.add("assistant", [neutral.ToolCall(call_id, name, arguments)])
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", path)
            assert call_id is not None
            output = item.get("output")
            content = tuple(_parts(output, f"{path}.output")) if output is not None else ()
            self.add("user", [neutral.ToolResult(call_id, content)])
        elif kind == "reasoning":
            texts = [s.get("text") for s in (item.get("content") or item.get("summary") or []) if isinstance(s, dict)]
            text = "".join(t for t in texts if isinstance(t, str))
            sealed = item.get("encrypted_content")
            sealed = sealed if isinstance(sealed, str) else ""
            if sealed.startswith(REDACTED_MARK):
                self.add("assistant", [neutral.Thinking(redacted=sealed.removeprefix(REDACTED_MARK))])
            else:
                signature = sealed.removeprefix(SIGNATURE_MARK) if sealed.startswith(SIGNATURE_MARK) else None
                self.add("assistant", [neutral.Thinking(text, signature)])
        else:
            raise _fail(
                f"{path}.type",
                f"{kind!r} is not supported (supported: message, function_call, function_call_output, reasoning); "
                "items stored by OpenAI (item_reference) cannot be used through faregate",
            )


def _mixes_results(last: neutral.Message, parts: list[neutral.Part]) -> bool:
    """A user's text after tool results starts a turn of its own (and the other way round)."""
    was = any(isinstance(p, neutral.ToolResult) for p in last.parts)
    return was != any(isinstance(p, neutral.ToolResult) for p in parts)


def _tools(payload: dict[str, Any]) -> tuple[neutral.Tool, ...]:
    tools = payload.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _fail("tools", f"must be an array, not {_kind(tools)}", "invalid_type")
    out = []
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _fail(path, f"must be an object, not {_kind(tool)}", "invalid_type")
        if tool.get("type") != "function":
            raise _fail(
                f"{path}.type",
                f"{tool.get('type')!r} is not supported: faregate serves function tools only "
                "(OpenAI's built-in tools run only on OpenAI: use a deployment with responses: true)",
                "unsupported_parameter",
            )
        name = _string(tool, "name", path)
        assert name is not None
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _fail(f"{path}.parameters", f"must be an object, not {_kind(parameters)}", "invalid_type")
        strict = tool.get("strict")
        out.append(
            neutral.Tool(
                name,
                _string(tool, "description", path, required=False),
                parameters if parameters is not None else {"type": "object", "properties": {}},
                strict if isinstance(strict, bool) else None,
            )
        )
    return tuple(out)


def _tool_choice(payload: dict[str, Any]) -> neutral.ToolChoice | None:
    choice = payload.get("tool_choice")
    parallel = payload.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _fail("parallel_tool_calls", f"must be a boolean, not {_kind(parallel)}", "invalid_type")
    if choice is None:
        return neutral.ToolChoice("auto", parallel=parallel) if parallel is not None else None
    if choice in ("auto", "none", "required"):
        return neutral.ToolChoice(choice, parallel=parallel)
    if isinstance(choice, dict) and choice.get("type") == "function":
        return neutral.ToolChoice("tool", _string(choice, "name", "tool_choice"), parallel)
    raise _fail("tool_choice", "must be auto, none, required or {'type': 'function', 'name': ...}", "unsupported_parameter")


def _text(payload: dict[str, Any], extra: dict[str, Any]) -> neutral.ResponseFormat | None:
    text = payload.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _fail("text", f"must be an object, not {_kind(text)}", "invalid_type")
    if text.get("verbosity") is not None:
        extra["verbosity"] = text["verbosity"]
    spec = text.get("format")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _fail("text.format", f"must be an object, not {_kind(spec)}", "invalid_type")
    kind = spec.get("type")
    if kind in ("text", "json_object"):
        return neutral.ResponseFormat(kind)
    if kind != "json_schema":
        raise _fail("text.format.type", f"must be text, json_object or json_schema, not {kind!r}")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _fail("text.format.schema", f"must be an object, not {_kind(schema)}", "invalid_type")
    strict = spec.get("strict")
    return neutral.ResponseFormat(
        "json_schema", schema, _string(spec, "name", "text.format", required=False), strict if isinstance(strict, bool) else None
    )


def _reasoning(payload: dict[str, Any], extra: dict[str, Any]) -> neutral.Reasoning | None:
    reasoning = payload.get("reasoning")
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise _fail("reasoning", f"must be an object, not {_kind(reasoning)}", "invalid_type")
    if reasoning.get("summary") is not None:
        extra["reasoning.summary"] = reasoning["summary"]  # by the client's name, should it be dropped
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if effort in _EFFORTS:
        return neutral.Reasoning(effort=effort)
    extra["reasoning_effort"] = effort
    return None


def _number(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is not None and (type(value) not in (int, float)):
        raise _fail(key, f"must be a number, not {_kind(value)}", "invalid_type")
    return value


def decode_request(payload: dict[str, Any]) -> neutral.Request:
    """A Responses request body as a neutral Request; a 400 (InvalidRequest naming the field) for
    what it cannot read."""
    turns = _Turns()
    instructions = payload.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _fail("instructions", f"must be a string, not {_kind(instructions)}", "invalid_type")
        turns.system.append(neutral.Text(instructions))
    items = payload.get("input")
    if isinstance(items, str):
        turns.add("user", [neutral.Text(items)])
    elif isinstance(items, list):
        for i, item in enumerate(items):
            turns.item(item, f"input[{i}]")
    else:
        raise _fail("input", f"must be a string or an array of items, not {_kind(items)}", "invalid_type")
    extra: dict[str, Any] = {}
    response_format = _text(payload, extra)
    reasoning = _reasoning(payload, extra)
    max_tokens = payload.get("max_output_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise _fail("max_output_tokens", f"must be a whole number of at least 1, not {max_tokens!r}")
    metadata = payload.get("metadata")
    user = payload.get("user")
    for key, value in payload.items():
        if key not in _NEUTRAL_FIELDS and value is not None and _ASKS_NOTHING.get(key, ...) != value:
            extra[key] = value
    return neutral.Request(
        model=str(payload.get("model") or ""),
        messages=tuple(turns.messages),
        system=tuple(turns.system),
        tools=_tools(payload),
        tool_choice=_tool_choice(payload),
        max_tokens=max_tokens,
        temperature=_number(payload, "temperature"),
        top_p=_number(payload, "top_p"),
        stream=payload.get("stream") is True,
        response_format=response_format,
        reasoning=reasoning,
        user=user if isinstance(user, str) else None,
        metadata=metadata if isinstance(metadata, dict) else {},
        extra=extra,
    )


# ---- replies ----------------------------------------------------------------------------------
def encode_reply(reply: neutral.Reply, model: str, id: str, *, created: int = 0) -> dict[str, Any]:
    """A neutral Reply as a Responses ``response`` object (``created`` is the caller's clock).
    A reply that failed gives OpenAI's error object."""
    if reply.error is not None:
        return error_object(reply.error.kind, reply.error.message, reply.error.code)
    items = [output_item(id, k, block, "completed") for k, block in enumerate(reply.blocks)]
    return response_object(id, model, created, items, reply.finish, reply.usage)


def error_body(status: int, kind: str, message: str, code: str | None) -> bytes:
    """OpenAI's error body (the Responses API uses the same shape as every OpenAI route)."""
    del status
    return orjson.dumps(error_object(kind, message, code))
