"""The 400s the Anthropic Messages API sends for bodies it refuses, for the fake upstream.

Pure functions; each returns the error message (type ``invalid_request_error``, status 400) or None.
They check what a translating gateway most easily gets wrong: the required fields, roles, tool
results grouped right after the turn that called the tools, and the thinking constraints.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config", "speed"}
    | {"user_profile_id", "workspace_id", "mcp_servers", "context_management"}
)
MESSAGE_FIELDS = COUNT_FIELDS | {
    # the create parameters of the installed SDK (types/message_create_params.py and its beta
    # twin), plus stream and the sampling fields older models take
    *("max_tokens", "stream", "metadata", "stop_sequences", "service_tier", "container", "inference_geo", "diagnostics"),
    *("compaction", "fallbacks", "thread", "temperature", "top_p", "top_k"),
}
"""Top-level fields the API knows; any other one is a 400 ("Extra inputs are not permitted")."""
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def check(path: str, parsed: bool, payload: Any, strict: bool = True) -> str | None:
    """The message of the 400 for this body at ``path`` (``/v1/messages`` or its count_tokens), or
    None.  ``strict``: unknown top-level fields are refused, as the API does."""
    if not parsed or not isinstance(payload, dict):
        return "There was an issue with the format or content of your request: the body is not valid JSON."
    counting = path.endswith("/count_tokens")
    required = ("model", "messages") if counting else ("model", "max_tokens", "messages")
    for name in required:
        if name not in payload:
            return f"{name}: Field required"
    known = COUNT_FIELDS if counting else MESSAGE_FIELDS
    extra = [name for name in payload if name not in known]
    if strict and extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(payload["model"], str):
        return "model: Input should be a valid string"
    if "max_tokens" in required:
        max_tokens = payload["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 1:
            return "max_tokens: Input should be greater than or equal to 1"
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid list"
    stops = payload.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(x, str) for x in stops)):
        return "stop_sequences: Input should be a valid list"
    return _messages(payload["messages"]) or _tools(payload) or _thinking(payload, not counting)


def _messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        if msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = msg.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Input should be a valid list"
        if not content and not (i == len(messages) - 1 and msg["role"] == "assistant"):
            return f"messages.{i}: all messages must have non-empty content except for the optional final assistant message"
        for j, block in enumerate(_blocks(msg)):
            problem = _block(f"messages.{i}.content.{j}", block)
            if problem:
                return problem
    for i, msg in enumerate(messages):
        problem = _tool_pairing(messages, i, msg)
        if problem:
            return problem
    return None


def _block(where: str, block: Any) -> str | None:
    """The problem with one content block: the shapes a translation most easily gets wrong."""
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return f"{where}: Input tag is missing or not a string"
    kind = block["type"]
    if kind == "text" and not block.get("text"):
        return "messages: text content blocks must be non-empty"
    if kind == "tool_use":
        if not isinstance(block.get("input"), dict):
            return f"{where}.tool_use.input: Input should be a valid dictionary"
        if not TOOL_ID.match(str(block.get("id", ""))):
            return f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
    if kind == "thinking" and not isinstance(block.get("signature"), str):
        return f"{where}.thinking.signature: Field required"
    if kind == "image":
        return _image(where, block.get("source"))
    return None


def _image(where: str, source: Any) -> str | None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        return None if isinstance(source.get("url"), str) else f"{where}.image.source.url.url: Field required"
    if kind != "base64":
        return (
            f"{where}.image.source: Input tag {kind!r} found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'"
        )
    if source.get("media_type") not in IMAGE_TYPES:
        return f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
    try:
        base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        return f"{where}.image.source.base64.data: The image data is not valid base64."
    return None


def _tools(payload: Mapping[str, Any]) -> str | None:
    tools = payload.get("tools", [])
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{k}: Input should be a valid dictionary"
        if tool.get("type", "custom") != "custom":  # a server tool (web_search_..., bash_...): its own shape
            continue
        if not TOOL_NAME.match(str(tool.get("name", ""))):
            return f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        if not isinstance(tool.get("input_schema"), dict):
            return f"tools.{k}.custom.input_schema: Field required"
    choice = payload.get("tool_choice")
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        return f"tool_choice: Input tag {kind!r} found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
    if kind == "tool" and not isinstance(choice.get("name"), str):
        return "tool_choice.tool.name: Field required"
    return None


def _blocks(msg: Mapping[str, Any]) -> list[Any]:
    content = msg.get("content")
    return content if isinstance(content, list) else []


def _ids(msg: Mapping[str, Any] | None, kind: str, key: str) -> list[str]:
    if msg is None:
        return []
    return [str(b.get(key)) for b in _blocks(msg) if b.get("type") == kind]


def _tool_pairing(messages: list[Any], i: int, msg: Mapping[str, Any]) -> str | None:
    """Every tool_use is answered by a tool_result in the very next message, and every tool_result
    answers a tool_use of the message just before it."""
    nxt = messages[i + 1] if i + 1 < len(messages) else None
    prev = messages[i - 1] if i > 0 else None
    if msg["role"] == "assistant" and nxt is not None:
        answered = set(_ids(nxt, "tool_result", "tool_use_id")) if nxt["role"] == "user" else set()
        missing = [t for t in _ids(msg, "tool_use", "id") if t not in answered]
        if missing:
            return (
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
            )
    if msg["role"] == "user":
        called = set(_ids(prev, "tool_use", "id")) if prev is not None and prev["role"] == "assistant" else set()
        for j, block in enumerate(_blocks(msg)):
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in called:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )
    return None


def _thinking(payload: Mapping[str, Any], has_max_tokens: bool) -> str | None:
    config = payload.get("thinking")
    if not isinstance(config, dict) or config.get("type") != "enabled":
        return None
    budget = config.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if has_max_tokens and payload["max_tokens"] <= budget:
        return f"`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at {THINKING_DOCS}#max-tokens-and-context-window-size"
    temperature = payload.get("temperature")
    if temperature is not None and temperature != 1:
        return f"`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at {THINKING_DOCS}#feature-compatibility"
    choice = payload.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None
