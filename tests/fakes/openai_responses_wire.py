"""OpenAI's Responses API (``POST /v1/responses``) for the fake upstream: request checks, the JSON
reply, the SSE event sequence and the failure events, as OpenAI sends them.

Pure (no I/O, no clock: the caller passes ``created``); :mod:`tests.fakes.openai_upstream` serves it.
A reply is deterministic for one request body and ``created``, so a test can rebuild the exact
bytes the fake sent (``reply`` + ``stream_events``) and compare them with what its client read.

What a reply holds:
- a ``reasoning`` item first when the request asks for ``reasoning.effort`` (other than ``none``),
  with an empty summary, as reasoning models answer without ``reasoning.summary``;
- then ``function_call`` items for ``Behaviour.tool_calls`` (``id`` becomes the ``call_id``), or
  one assistant ``message`` with one ``output_text`` part;
- ``status: incomplete`` with ``incomplete_details.reason: max_output_tokens`` when the text has
  more words than ``max_output_tokens`` (it is cut there);
- ``usage`` in the Responses shape (``input_tokens_details.cached_tokens``,
  ``output_tokens_details.reasoning_tokens``): ``Behaviour.usage`` as given, else an estimate.

A stream is ``event: <type>`` + ``data: <json>`` per event, ``sequence_number`` counting from 0,
and no ``[DONE]``: response.created, response.in_progress, then per output item
response.output_item.added, (message) response.content_part.added, response.output_text.delta…,
response.output_text.done, response.content_part.done, (function call)
response.function_call_arguments.delta…, response.function_call_arguments.done, then
response.output_item.done; last response.completed (or response.incomplete). A
``ResponsesBehaviour`` can end it early with ``response.failed`` or an ``error`` event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.openai_wire import Behaviour, error_behaviour, errors

PATH = "/v1/responses"
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
TOOL_TYPES = (
    "function",
    "file_search",
    "web_search",
    "web_search_preview",
    "computer_use_preview",
    "mcp",
    "code_interpreter",
    "image_generation",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
)
REASONING_TOKENS = 64  # reported for a reply with a reasoning item, unless Behaviour.usage says otherwise
MIN_OUTPUT_TOKENS = 16  # OpenAI refuses a smaller max_output_tokens
FAILED_MESSAGE = (
    "An error occurred while processing your request. You can retry your request, or contact us through "
    "our help center at help.openai.com if the error persists."
)


@dataclass(frozen=True)
class ResponsesBehaviour(Behaviour):
    """A Behaviour with the Responses API's own mid-stream failures (the chat ones apply too).

    ``failed_after``: after this many events, ``response.failed`` (status ``failed``, ``error``
    below) ends the stream. ``error_event_after``: after this many events, an ``error`` event ends it.
    """

    failed_after: int | None = None
    error_event_after: int | None = None
    failure: Mapping[str, Any] | None = None  # the error: {"code", "message"} (default: server_error)


# -- request checks ----------------------------------------------------------------------------


def _missing(name: str) -> Behaviour:
    return error_behaviour(400, f"Missing required parameter: '{name}'.", "invalid_request_error", "missing_required_parameter", name)


def _invalid(param: str, message: str, code: str = "invalid_value") -> Behaviour:
    return error_behaviour(400, message, "invalid_request_error", code, param)


def validate(parsed: bool, payload: Any, stored: Container[str] = ()) -> Behaviour | None:
    """The 400 OpenAI would send for this request body, or None if it is acceptable.
    ``stored``: the ids of responses this upstream keeps (for ``previous_response_id``)."""
    if not parsed or not isinstance(payload, dict):
        return errors.bad_request("We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.")
    if not isinstance(payload.get("model"), str):
        return _missing("model")
    previous = payload.get("previous_response_id")
    if previous is not None and previous not in stored:
        message = f"Previous response with id '{previous}' not found."
        return _invalid("previous_response_id", message, "previous_response_not_found")
    if "input" not in payload and previous is None and "prompt" not in payload:
        return _missing("input")
    items = payload.get("input")
    if items is not None and not isinstance(items, (str, list)):
        return _invalid("input", "Invalid type for 'input': expected one of a string or array of input items.", "invalid_type")
    problem = _check_tools(payload.get("tools"))
    problem = problem or _check_items(items if isinstance(items, list) else [], previous is not None)
    return problem or _check_options(payload)


def _check_tools(tools: Any) -> Behaviour | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return _invalid("tools", "Invalid type for 'tools': expected an array of objects.", "invalid_type")
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in TOOL_TYPES:
            return _invalid(
                f"tools[{i}].type", f"Invalid value: '{kind}'. Supported values are: " + ", ".join(f"'{t}'" for t in TOOL_TYPES) + "."
            )
        if kind == "function" and not isinstance(tool.get("name"), str):
            return _missing(f"tools[{i}].name")
    return None


def _check_items(items: list[Any], continued: bool) -> Behaviour | None:
    """Every function_call_output must answer a function_call of the same input (unless the
    conversation continues a stored response, which holds the calls)."""
    calls = {i.get("call_id") for i in items if isinstance(i, dict) and i.get("type") == "function_call"}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return _invalid(f"input[{i}]", f"Invalid type for 'input[{i}]': expected an object.", "invalid_type")
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") not in ("user", "assistant", "system", "developer"):
            return _invalid(
                f"input[{i}].role",
                f"Invalid value: '{item.get('role')}'. Supported values are: 'assistant', 'system', 'developer', and 'user'.",
            )
        if kind == "function_call_output" and not continued and item.get("call_id") not in calls:
            return _invalid("input", f"No tool call found for function call output with call_id {item.get('call_id')}.", "")
    return None


def _check_options(payload: Mapping[str, Any]) -> Behaviour | None:
    limit = payload.get("max_output_tokens")
    if isinstance(limit, int) and limit < MIN_OUTPUT_TOKENS:
        message = (
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}, but got {limit} instead."
        )
        return _invalid("max_output_tokens", message, "integer_below_min_value")
    effort = _effort(payload)
    if effort is not None and effort not in EFFORTS:
        return _invalid(
            "reasoning.effort", f"Invalid value: '{effort}'. Supported values are: " + ", ".join(f"'{e}'" for e in EFFORTS) + "."
        )
    fmt = _format(payload)
    if fmt.get("type") == "json_schema":
        for name in ("name", "schema"):
            if name not in fmt:
                return _missing(f"text.format.{name}")
    return None


def _effort(payload: Mapping[str, Any]) -> Any:
    reasoning = payload.get("reasoning")
    return reasoning.get("effort") if isinstance(reasoning, dict) else None


def _format(payload: Mapping[str, Any]) -> dict[str, Any]:
    text = payload.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return dict(fmt) if isinstance(fmt, dict) else {"type": "text"}


# -- the reply ---------------------------------------------------------------------------------


def _digest(payload: Mapping[str, Any], salt: str) -> str:
    return hashlib.sha256(salt.encode() + orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _item_id(payload: Mapping[str, Any], prefix: str, index: int) -> str:
    return prefix + _digest(payload, f"{prefix}{index}")[:48]


def _input_text(payload: Mapping[str, Any]) -> str:
    """The text the request puts before the model, for the token estimate."""
    items = payload.get("input")
    parts = [payload.get("instructions") if isinstance(payload.get("instructions"), str) else ""]
    for item in [items] if isinstance(items, str) else items if isinstance(items, list) else []:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            content = item.get("content", item.get("output", item.get("arguments", "")))
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text", ""), str)]
    return "".join(parts)


def usage(input_tokens: int, output_tokens: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """A Responses usage object; ``output_tokens`` includes the ``reasoning`` ones, as OpenAI counts."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool as a response echoes it (function tools with every field, strict by default)."""
    if tool.get("type") != "function":
        return dict(tool)
    keys = ("type", "name", "description", "parameters", "strict")
    defaults: dict[str, Any] = {"description": None, "parameters": None, "strict": True}
    return {k: tool.get(k, defaults.get(k)) for k in keys}


def _text_config(payload: Mapping[str, Any]) -> dict[str, Any]:
    fmt = _format(payload)
    if fmt.get("type") == "json_schema":
        fmt = {
            "type": "json_schema",
            "description": fmt.get("description"),
            "name": fmt["name"],
            "schema": fmt["schema"],
            "strict": fmt.get("strict", False),
        }
    text = payload.get("text")
    verbosity = text.get("verbosity", "medium") if isinstance(text, dict) else "medium"
    return {"format": fmt, "verbosity": verbosity}


def envelope(payload: Mapping[str, Any], created: int, status: str, output: list[Any], use: Mapping[str, Any] | None) -> dict[str, Any]:
    """The response object around ``output``, echoing the request's settings as OpenAI does."""
    summary = payload["reasoning"].get("summary") if isinstance(payload.get("reasoning"), dict) else None
    return {
        "id": _item_id(payload, "resp_", 0),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": created if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "max_tool_calls": payload.get("max_tool_calls"),
        "model": payload["model"],
        "output": output,
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "prompt_cache_key": payload.get("prompt_cache_key"),
        "reasoning": {"effort": _effort(payload), "summary": summary},
        "safety_identifier": payload.get("safety_identifier"),
        "service_tier": "default",
        "store": payload.get("store", True),
        "temperature": payload.get("temperature", 1.0),
        "text": _text_config(payload),
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": [_tool(t) for t in payload.get("tools") or [] if isinstance(t, dict)],
        "top_logprobs": payload.get("top_logprobs", 0),
        "top_p": payload.get("top_p", 1.0),
        "truncation": payload.get("truncation", "disabled"),
        "usage": dict(use) if use is not None else None,
        "user": payload.get("user"),
        "metadata": payload.get("metadata") or {},
    }


def _message(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [_part(text)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _call(item_id: str, call: Mapping[str, str], status: str) -> dict[str, Any]:
    arguments = call["arguments"] if status != "in_progress" else ""
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call["id"], "name": call["name"]}


def reply(payload: Mapping[str, Any], behaviour: Behaviour, text: str, created: int) -> dict[str, Any]:
    """The whole response object OpenAI would answer (what ``stream=false`` gets)."""
    output: list[dict[str, Any]] = []
    effort = _effort(payload)
    if effort is not None and effort != "none":
        output.append({"id": _item_id(payload, "rs_", 0), "type": "reasoning", "summary": []})
    status, incomplete = "completed", None
    if behaviour.tool_calls:
        output += [_call(_item_id(payload, "fc_", i), c, "completed") for i, c in enumerate(behaviour.tool_calls)]
    else:
        limit = payload.get("max_output_tokens")
        words = text.split(" ")
        if isinstance(limit, int) and len(words) > limit:
            text, status, incomplete = " ".join(words[:limit]), "incomplete", {"reason": "max_output_tokens"}
        output.append(_message(_item_id(payload, "msg_", 0), text, status))
    if behaviour.usage is not None:
        use = dict(behaviour.usage)
    else:
        reasoning = REASONING_TOKENS if output[0]["type"] == "reasoning" else 0
        produced = len(text.split()) + sum(len(c["arguments"]) // 4 + 1 for c in behaviour.tool_calls)
        use = usage(len(_input_text(payload)) // 4 + 1, produced + reasoning, reasoning=reasoning)
    whole = envelope(payload, created, status, output, use)
    whole["incomplete_details"] = incomplete
    return whole


# -- the stream --------------------------------------------------------------------------------


def event(kind: str, body: Mapping[str, Any], sequence: int) -> bytes:
    """One SSE event as OpenAI frames it: its type named twice, in ``event:`` and in the data."""
    data = {"type": kind, "sequence_number": sequence, **body}
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _split(text: str, parts: int) -> list[str]:
    n = len(text)
    pieces = [text[i * n // parts : (i + 1) * n // parts] for i in range(max(1, parts))]
    return [p for p in pieces if p] or [""]


def _obfuscation(payload: Mapping[str, Any], sequence: int, delta: str) -> dict[str, str]:
    """OpenAI pads each delta event with random characters (``obfuscation``) against length side
    channels, unless the request's ``stream_options.include_obfuscation`` is false."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_obfuscation") is False:
        return {}
    pad = _digest(payload, f"pad{sequence}")[: max(1, 16 - len(delta) % 16)]
    return {"obfuscation": pad}


def stream_events(payload: Mapping[str, Any], whole: Mapping[str, Any], behaviour: Behaviour) -> list[bytes]:
    """Every SSE event of the streamed form of ``whole`` (from :func:`reply`), in OpenAI's order,
    ended early by a ResponsesBehaviour's ``failed_after`` / ``error_event_after``."""
    events: list[tuple[str, dict[str, Any]]] = []
    start = {**whole, "status": "in_progress", "output": [], "usage": None, "completed_at": None, "incomplete_details": None}
    events += [("response.created", {"response": start}), ("response.in_progress", {"response": start})]
    for index, item in enumerate(whole["output"]):
        where = {"output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            at = {"item_id": item["id"], **where, "content_index": 0}
            events.append(("response.output_item.added", {**where, "item": _message(item["id"], "", "in_progress")}))
            events.append(("response.content_part.added", {**at, "part": _part("")}))
            events += [("response.output_text.delta", {**at, "delta": d, "logprobs": []}) for d in _split(text, behaviour.chunks)]
            events.append(("response.output_text.done", {**at, "text": text, "logprobs": []}))
            events.append(("response.content_part.done", {**at, "part": _part(text)}))
        elif item["type"] == "function_call":
            events.append(("response.output_item.added", {**where, "item": {**item, "status": "in_progress", "arguments": ""}}))
            at = {"item_id": item["id"], **where}
            events += [("response.function_call_arguments.delta", {**at, "delta": d}) for d in _split(item["arguments"], 2)]
            done = {**at, "name": item["name"], "arguments": item["arguments"]}  # `name` as in OpenAI's API reference
            events.append(("response.function_call_arguments.done", done))
        else:
            events.append(("response.output_item.added", {**where, "item": item}))
        events.append(("response.output_item.done", {**where, "item": item}))
    last = "response.incomplete" if whole["status"] == "incomplete" else "response.completed"
    events.append((last, {"response": dict(whole)}))
    framed = []
    for sequence, (kind, body) in enumerate(events):
        if kind.endswith(".delta"):
            body = {**body, **_obfuscation(payload, sequence, body["delta"])}
        framed.append(event(kind, body, sequence))
    return _failures(payload, whole, framed, behaviour)


def _failures(payload: Mapping[str, Any], whole: Mapping[str, Any], framed: list[bytes], behaviour: Behaviour) -> list[bytes]:
    if not isinstance(behaviour, ResponsesBehaviour):
        return framed
    failure = dict(behaviour.failure or {"code": "server_error", "message": FAILED_MESSAGE})
    if behaviour.failed_after is not None:
        k = behaviour.failed_after
        failed = {**whole, "status": "failed", "output": [], "usage": None, "completed_at": None, "error": failure}
        return [*framed[:k], event("response.failed", {"response": failed}, k)]
    if behaviour.error_event_after is not None:
        k = behaviour.error_event_after
        return [*framed[:k], event("error", {"code": failure["code"], "message": failure["message"], "param": None}, k)]
    return framed


def parse_stream(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each event of a Responses stream (LF framing, as OpenAI sends)."""
    found = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        if data:
            found.append((name, orjson.loads(data)))
    return found


def calls_of(items: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, Any]]:
    """(call_id, name, parsed arguments) of the function_call items of an output or input list."""
    return [(i["call_id"], i["name"], orjson.loads(i["arguments"])) for i in items if i.get("type") == "function_call"]
