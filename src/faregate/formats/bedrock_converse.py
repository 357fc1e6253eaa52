"""Amazon Bedrock Converse (``POST /model/{modelId}/converse`` and ``/converse-stream``), the
provider side only: no client speaks it, so this codec writes requests and reads replies
(``bedrock_converse_reply``: whole replies and the ConverseStream events).

The model is not in the body: it is the URL's ``modelId`` (a model id, an inference profile id
such as ``us.anthropic.claude-sonnet-4-20250514-v1:0``, or an ARN), which the transport writes.
Whether the reply is streamed is the URL too: ``encode_request`` sets ``"stream": true`` in the
payload for a streamed request, and the transport (``providers.bedrock.build``) takes it out
again to choose ``/converse-stream``; Bedrock never sees that key.

Decisions (the translation table in the README repeats them):
- A neutral cache mark (Anthropic ``cache_control``) is a ``cachePoint`` block right after the
  block it marks (system, message content, tool list), with ``ttl: "1h"`` for a one-hour mark.
- ``response_format`` json_schema is Converse structured output: ``outputConfig.textFormat``
  (``json_schema``, the schema as JSON text); json_object has no counterpart (not carried).
- Reasoning (a budget, or an effort as Anthropic's budgets) is Anthropic-on-Bedrock's
  ``additionalModelRequestFields.thinking``; ``maxTokens`` grows by the budget as for Anthropic.
  Only Claude models accept it; another model answers with a ValidationException.
- ``tool_choice`` none has no counterpart (Converse offers auto, any and one tool): not carried;
  nor is ``parallel_tool_calls: false``, ``top_k`` (model-specific), a URL image (Converse takes
  images inline: a ``data:`` URL is), an image format other than png/jpeg/gif/webp, or thinking
  without a signature. ``user`` and string ``metadata`` go to ``requestMetadata`` (what fits its
  character set and sizes; the rest is not carried).
- Consecutive turns of one role are merged, a user turn's tool results come first, and empty
  text is not written (Bedrock refuses blank text blocks), nor turns left empty.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from faregate.errors import InvalidRequest
from faregate.formats import neutral
from faregate.formats.bedrock_converse_reply import StreamDecoder, decode_reply

__all__ = ["DEFAULT_MAX_TOKENS", "EFFORT_BUDGETS", "NAME", "StreamDecoder", "decode_reply", "encode_request"]

NAME = "bedrock_converse"
DEFAULT_MAX_TOKENS = 4096  # Claude on Bedrock needs maxTokens; every model accepts this many
EFFORT_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}  # as formats.anthropic
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


def _cache_point(ttl: neutral.CacheTTL) -> dict[str, Any]:
    return {"cachePoint": {"type": "default"} if ttl == "5m" else {"type": "default", "ttl": ttl}}


def _marked(block: dict[str, Any], cache: neutral.CacheTTL | None, out: list[dict[str, Any]]) -> None:
    out.append(block)
    if cache is not None:
        out.append(_cache_point(cache))


def _image(image: neutral.Image, dropped: set[str]) -> dict[str, Any] | None:
    if image.detail not in (None, "auto"):
        dropped.add("image.detail")
    media_type, data = image.media_type, image.data
    if data is None and image.url and image.url.startswith("data:") and ";base64," in image.url:
        media_type, data = image.url[5:].split(";base64,", 1)
    if data is None:
        dropped.add("image_url")  # Converse reads images inline (bytes) or from S3, never from a URL
        return None
    fmt = IMAGE_FORMATS.get((media_type or "image/png").lower())
    if fmt is None:
        dropped.add("image")
        return None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _input(call: neutral.ToolCall, where: str) -> dict[str, Any]:
    """Tool-call arguments (JSON text) as Converse's ``input`` object; empty text is ``{}``."""
    if not call.arguments.strip():
        return {}
    try:
        value = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        message = f"{where}: the arguments of tool call {call.id!r} ({call.name}) are not a JSON object, as Bedrock requires"
        raise InvalidRequest(message, param=where, code="invalid_request")
    return value


def _result(part: neutral.ToolResult, dropped: set[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for item in part.content:
        if isinstance(item, neutral.Text):
            if item.text:
                content.append({"text": item.text})
        else:
            image = _image(item, dropped)
            if image is not None:
                content.append(image)
    if not content:  # Converse requires content; an empty result says nothing, as an empty JSON object
        content.append({"json": {}})
    block: dict[str, Any] = {"toolUseId": part.call_id, "content": content}
    if part.is_error:
        block["status"] = "error"
    return {"toolResult": block}


def _blocks(part: neutral.Part, where: str, dropped: set[str], out: list[dict[str, Any]]) -> None:
    if isinstance(part, neutral.Text):
        if part.text:
            _marked({"text": part.text}, part.cache, out)
        elif part.cache is not None and out:  # a mark on an empty text marks what came before it
            out.append(_cache_point(part.cache))
    elif isinstance(part, neutral.Image):
        image = _image(part, dropped)
        if image is not None:
            _marked(image, part.cache, out)
    elif isinstance(part, neutral.ToolCall):
        _marked({"toolUse": {"toolUseId": part.id, "name": part.name, "input": _input(part, where)}}, part.cache, out)
    elif isinstance(part, neutral.ToolResult):
        _marked(_result(part, dropped), part.cache, out)
    elif part.redacted is not None:
        out.append({"reasoningContent": {"redactedContent": part.redacted}})
    elif part.signature is not None:
        out.append({"reasoningContent": {"reasoningText": {"text": part.text, "signature": part.signature}}})
    else:
        dropped.add("thinking")  # unsigned reasoning cannot be handed back


def _messages(messages: tuple[neutral.Message, ...], dropped: set[str]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        blocks: list[dict[str, Any]] = []
        for part in message.parts:
            _blocks(part, f"messages.{i}", dropped, blocks)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":  # tool results first, in their order (a cache point stays with what it follows)
            results: list[dict[str, Any]] = []
            rest: list[dict[str, Any]] = []
            last: list[dict[str, Any]] | None = None
            for block in turn["content"]:
                if "cachePoint" in block and last is not None:
                    last.append(block)
                    continue
                last = results if "toolResult" in block else rest
                last.append(block)
            turn["content"] = results + rest
    return turns


def _tool_config(request: neutral.Request, dropped: set[str]) -> dict[str, Any] | None:
    if not request.tools:
        if request.tool_choice is not None and request.tool_choice.mode not in ("auto", "none"):
            dropped.add("tool_choice")
        return None
    tools: list[dict[str, Any]] = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        spec["inputSchema"] = {"json": dict(tool.parameters)}
        if tool.strict is not None:
            spec["strict"] = tool.strict
        _marked({"toolSpec": spec}, tool.cache, tools)
    config: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if choice is not None:
        if choice.mode == "auto":
            config["toolChoice"] = {"auto": {}}
        elif choice.mode == "required":
            config["toolChoice"] = {"any": {}}
        elif choice.mode == "tool":
            config["toolChoice"] = {"tool": {"name": choice.name or ""}}
        else:
            dropped.add("tool_choice")  # "none": Converse has no way to forbid tool calls but to offer no tools
        if choice.parallel is False:
            dropped.add("parallel_tool_calls")
    return config


_METADATA = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")  # what requestMetadata keys and values may hold


def _metadata(request: neutral.Request, dropped: set[str]) -> dict[str, str]:
    """``requestMetadata`` (at most 16 entries of Bedrock's characters, 256 each): what does not fit is named."""
    out: dict[str, str] = {}
    for key, value in request.metadata.items():
        if isinstance(value, str) and key and _METADATA.fullmatch(key) and _METADATA.fullmatch(value) and len(out) < 15:
            out[key] = value
        else:
            dropped.add("metadata")
    if request.user is not None:
        if _METADATA.fullmatch(request.user):
            out["user"] = request.user
        else:
            dropped.add("user")
    return out


def encode_request(request: neutral.Request, model: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A neutral Request as a Converse body (``model`` goes in the URL), and the names of what it cannot carry."""
    dropped: set[str] = set()
    payload: dict[str, Any] = {"messages": _messages(request.messages, dropped)}
    if request.system:
        system: list[dict[str, Any]] = []
        for text in request.system:
            if text.text:
                _marked({"text": text.text}, text.cache, system)
        if system:
            payload["system"] = system
    inference: dict[str, Any] = {"maxTokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS}
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    payload["inferenceConfig"] = inference
    if request.top_k is not None:
        dropped.add("top_k")
    tool_config = _tool_config(request, dropped)
    if tool_config is not None:
        payload["toolConfig"] = tool_config
    reasoning = request.reasoning
    budget = reasoning and (reasoning.budget_tokens or (reasoning.effort and EFFORT_BUDGETS[reasoning.effort]))
    if budget:
        payload["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
        if inference["maxTokens"] <= budget:
            inference["maxTokens"] += budget
    fmt = request.response_format
    if fmt is not None and fmt.kind == "json_schema" and fmt.schema is not None:
        schema = {"schema": orjson.dumps(dict(fmt.schema)).decode(), "name": fmt.name or "response"}
        payload["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
    elif fmt is not None and fmt.kind != "text":
        dropped.add("response_format")
    metadata = _metadata(request, dropped)
    if metadata:
        payload["requestMetadata"] = metadata
    dropped.update(request.extra)  # fields of another format: none has a Converse counterpart
    if request.stream:
        payload["stream"] = True  # for the transport (the URL), never sent: see the module docstring
    return payload, tuple(sorted(dropped))
