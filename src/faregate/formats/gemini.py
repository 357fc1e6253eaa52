"""The Gemini API codec (``generateContent``), provider side only: no client speaks it to faregate.
Pure: no I/O. Replies and streams are read in ``gemini_reply``; tool schemas in ``gemini_schema``.

Decisions (the README's translation table repeats them):
- The body has no model (it is in the URL); ``stream`` is written as a top-level ``"stream": true``
  that the transport (``providers.gemini``) takes out into the URL (``:streamGenerateContent?alt=sse``).
- Roles are ``user`` and ``model``; consecutive turns of one role are merged (a run of tool results
  is one turn, as Gemini wants the responses to parallel calls). Empty text is not written.
- System text becomes ``systemInstruction``. Images: base64 (or a data: URL) as ``inlineData``,
  any other URL as ``fileData`` (``fileUri``, the media type guessed from its name); a ``detail``
  other than auto is listed as ``image.detail``.
- Tool calls are ``functionCall`` parts (arguments must be a JSON object); results are
  ``functionResponse`` parts named after the call they answer (looked up in the history; an unknown
  call id is a 400), ``response: {"output": text}`` or ``{"error": text}`` when ``is_error``;
  images in a result follow it as parts. The thought signature packed in a call's id
  (``gemini_reply``) goes back on the call's part as ``thoughtSignature``; Gemini's own call id as
  ``id`` (never one faregate made).
- Thinking: a Gemini signature (``gemini:``) goes back on the part before it (or on a thought part of
  its own when it has text, or on an empty text part when nothing precedes it in the turn); thinking
  without one (another provider's, or reasoning text) is listed as ``thinking``.
- Tools: ``functionDeclarations`` with ``parameters`` converted to Gemini's schema subset
  (``gemini_schema``); a tool without properties has no ``parameters``. ``strict`` and cache marks
  are hints Gemini has no field for and are left out unlisted. ``tool_choice``: auto ``AUTO``, none
  ``NONE``, required ``ANY``, one tool ``ANY`` with ``allowedFunctionNames``; no parallel calls
  (``parallel_tool_calls: false``) has no counterpart and is listed.
- ``response_format``: json_object is ``responseMimeType: application/json``; json_schema adds
  ``responseSchema`` (converted: every Gemini model takes it, unlike ``responseJsonSchema``).
- Reasoning: ``thinkingConfig {thinkingBudget, includeThoughts: true}`` (an effort becomes a budget,
  the Anthropic codec's table); ``thinkingBudget`` is read by Gemini 2.5 and 3 alike.
- From ``extra``: seed, presence_penalty, frequency_penalty go into ``generationConfig``; ``n: 1``
  is Gemini's default; any other extra field and ``metadata`` are listed. ``user`` (an end-user id
  for the provider's abuse tracking; Claude Code sends one with every request as
  ``metadata.user_id``) changes no reply and Gemini has no field for it: left out, unlisted, like
  cache marks.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from faregate.errors import InvalidRequest
from faregate.formats import neutral
from faregate.formats.gemini_reply import SIGNATURE_PREFIX, StreamDecoder, decode_reply, split_call_id
from faregate.formats.gemini_schema import to_gemini

__all__ = ["NAME", "StreamDecoder", "decode_reply", "encode_request"]

NAME = "gemini"
EFFORT_BUDGETS: dict[str, int] = {"minimal": 512, "low": 2048, "medium": 8192, "high": 24576}
_EXTRA = {"seed": "seed", "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _image(image: neutral.Image, dropped: set[str]) -> dict[str, Any]:
    if image.detail not in (None, "auto"):
        dropped.add("image.detail")
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url or ""
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"inlineData": {"mimeType": head or "image/png", "data": data}}
    guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
    return {"fileData": {"mimeType": image.media_type or guessed or "image/jpeg", "fileUri": url}}


def _arguments(call: neutral.ToolCall, where: str) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise _fail(where, f"the arguments of tool call {call.id!r} ({call.name}) are not a JSON object, as Gemini requires")
    return value


def _call(part: neutral.ToolCall, where: str) -> dict[str, Any]:
    own_id, signature = split_call_id(part.id)
    call: dict[str, Any] = {"name": part.name, "args": _arguments(part, where)}
    if own_id is not None:
        call["id"] = own_id
    out: dict[str, Any] = {"functionCall": call}
    if signature is not None:
        out["thoughtSignature"] = signature
    return out


def _result(part: neutral.ToolResult, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    name = names.get(part.call_id)
    if name is None:
        raise _fail(where, f"tool result for call {part.call_id!r} answers no tool call earlier in the conversation")
    text = "\n".join(p.text for p in part.content if isinstance(p, neutral.Text))
    response: dict[str, Any] = {"name": name, "response": {"error" if part.is_error else "output": text}}
    own_id, _ = split_call_id(part.call_id)
    if own_id is not None:
        response["id"] = own_id
    images = [_image(p, set()) for p in part.content if isinstance(p, neutral.Image)]
    return [{"functionResponse": response}, *images]


def _thinking(part: neutral.Thinking, parts: list[dict[str, Any]], dropped: set[str]) -> None:
    signature = part.signature
    if signature is None or not signature.startswith(SIGNATURE_PREFIX) or part.redacted is not None:
        if part.text or part.signature or part.redacted:
            dropped.add("thinking")
        return
    signature = signature[len(SIGNATURE_PREFIX) :]
    if part.text:
        parts.append({"text": part.text, "thought": True, "thoughtSignature": signature})
    elif parts and "thoughtSignature" not in parts[-1]:
        parts[-1]["thoughtSignature"] = signature
    else:
        parts.append({"text": "", "thoughtSignature": signature})


def _parts(message: neutral.Message, names: dict[str, str], where: str, dropped: set[str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, neutral.Text):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, neutral.Image):
            parts.append(_image(part, dropped))
        elif isinstance(part, neutral.ToolCall):
            if message.role != "assistant":
                dropped.add("user.tool_call")
                continue
            names[part.id] = part.name
            parts.append(_call(part, where))
        elif isinstance(part, neutral.ToolResult):
            parts.extend(_result(part, names, where))
        else:
            _thinking(part, parts, dropped)
    return parts


def _contents(messages: tuple[neutral.Message, ...], dropped: set[str]) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id -> the function's name, for the responses
    for i, message in enumerate(messages):
        parts = _parts(message, names, f"messages.{i}", dropped)
        if not parts:
            continue
        role = "model" if message.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    for content in contents:  # a turn's responses first, as Gemini pairs them with the calls before
        if content["role"] == "user":
            content["parts"].sort(key=lambda p: "functionResponse" not in p)
    return contents


def _tool(tool: neutral.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    parameters = to_gemini(tool.parameters)
    if parameters.get("properties"):
        out["parameters"] = parameters
    return out


def _generation(request: neutral.Request, dropped: set[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    for name, key in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        value = getattr(request, name)
        if value is not None:
            config[key] = value
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.kind != "text":
        config["responseMimeType"] = "application/json"
        if fmt.kind == "json_schema" and fmt.schema is not None:
            config["responseSchema"] = to_gemini(fmt.schema)
    reasoning = request.reasoning
    budget = reasoning and (reasoning.budget_tokens or (reasoning.effort and EFFORT_BUDGETS[reasoning.effort]))
    if budget:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    for name, value in request.extra.items():
        if name in _EXTRA:
            config[_EXTRA[name]] = value
        elif not (name == "n" and value == 1):
            dropped.add(name)
    return config


def encode_request(request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A neutral Request as a ``generateContent`` body, and the names of what it cannot carry.
    ``model`` is not written: Gemini's URL names it."""
    dropped: set[str] = set()
    payload: dict[str, Any] = {"contents": _contents(request.messages, dropped)}
    system = [{"text": s.text} for s in request.system if s.text]
    if system:
        payload["systemInstruction"] = {"parts": system}
    if request.tools:
        payload["tools"] = [{"functionDeclarations": [_tool(tool) for tool in request.tools]}]
    choice = request.tool_choice
    if choice is not None:
        calling: dict[str, Any] = {"mode": _MODES[choice.mode]}
        if choice.mode == "tool" and choice.name:
            calling["allowedFunctionNames"] = [choice.name]
        payload["toolConfig"] = {"functionCallingConfig": calling}
        if choice.parallel is False:
            dropped.add("parallel_tool_calls")
    config = _generation(request, dropped)
    if config:
        payload["generationConfig"] = config
    if request.metadata:
        dropped.add("metadata")
    if request.stream:
        payload["stream"] = True
    return payload, tuple(sorted(dropped))
