"""Parse and check a request body just enough to route it; everything else goes upstream as sent."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import InvalidRequest
from faregate.types import Endpoint

REQUIRED: dict[Endpoint, str] = {
    "chat": "messages",
    "completions": "prompt",
    "embeddings": "input",
    "messages": "messages",  # Anthropic Messages (/v1/messages)
    "count_tokens": "messages",  # Anthropic /v1/messages/count_tokens
    "responses": "input",  # OpenAI Responses (server/responses_api.py checks the rest)
    "moderations": "input",  # server/openai_extra_api.py
    "images_generations": "prompt",
    "audio_speech": "input",
}
MAX_DEPTH = 254  # orjson reads 1,024 levels of arrays and objects but writes at most 254: what it cannot
# write again cannot be forwarded (nor priced, nor answered by the mock), so it is refused here, before anything runs
TOO_DEEP = f"the request body nests arrays and objects more than {MAX_DEPTH} levels deep; faregate accepts at most {MAX_DEPTH} levels"


def parse(endpoint: Endpoint, body: bytes, model: str | None = None) -> dict[str, Any]:
    """The payload of a request body, checked as far as routing needs. ``model``: the model the URL
    names (Azure's ``/openai/deployments/{name}/...``), which replaces the body's, as Azure reads it."""
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise InvalidRequest(TOO_DEEP, code="invalid_json") from None
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {_kind(payload)}", code="invalid_json")
    if len(body) > 2 * MAX_DEPTH:  # a shorter body cannot nest that deep
        try:  # writing is the exact test, and cheaper than counting brackets (200 KB: ~0.1 ms, bytes.count ~0.3 ms each)
            orjson.dumps(payload)
        except orjson.JSONEncodeError:
            raise InvalidRequest(TOO_DEEP, code="invalid_json") from None
    if model is not None:
        payload["model"] = model
    model = payload.get("model")
    if model is None:
        raise InvalidRequest("missing required field 'model'", param="model", code="missing_field")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"'model' must be a non-empty string, not {_kind(model)}", param="model", code="invalid_type")
    field = REQUIRED[endpoint]
    value = payload.get(field)
    if value is None:
        raise InvalidRequest(f"missing required field '{field}'", param=field, code="missing_field")
    if endpoint == "chat" or endpoint == "messages" or endpoint == "count_tokens":
        _check_messages(value)
    elif endpoint == "completions" and not isinstance(value, str | list):
        raise InvalidRequest(f"'prompt' must be a string or an array, not {_kind(value)}", param="prompt", code="invalid_type")
    elif endpoint == "embeddings" and not (isinstance(value, str | list) and value):
        raise InvalidRequest(f"'input' must be a non-empty string or array, not {_kind(value)}", param="input", code="invalid_type")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(f"'stream' must be a boolean, not {_kind(stream)}", param="stream", code="invalid_type")
    if endpoint == "embeddings" and stream:
        raise InvalidRequest("embeddings cannot be streamed", param="stream", code="invalid_value")
    if endpoint == "messages":
        _check_max_tokens(payload.get("max_tokens"))
    return payload


def _check_max_tokens(value: Any) -> None:
    """Anthropic requires ``max_tokens``, a positive whole number (the rest of the body is read by
    the upstream on the diagonal, or by the codec when it is translated)."""
    if value is None:
        raise InvalidRequest("missing required field 'max_tokens'", param="max_tokens", code="missing_field")
    if type(value) is not int:
        shown = repr(value) if type(value) is float else _kind(value)
        raise InvalidRequest(f"'max_tokens' must be a whole number, not {shown}", param="max_tokens", code="invalid_type")
    if value < 1:
        raise InvalidRequest(f"'max_tokens' must be at least 1, not {value}", param="max_tokens", code="invalid_value")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise InvalidRequest(
            f"'messages' must be an array of message objects, not {_kind(messages)}", param="messages", code="invalid_type"
        )
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{i}]' must be an object, not {_kind(message)}", param=f"messages[{i}]", code="invalid_type")
        role = message.get("role")
        if not isinstance(role, str):
            raise InvalidRequest(f"'messages[{i}].role' must be a string", param=f"messages[{i}].role", code="invalid_type")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


kind = _kind  # "an object", "an array", ...: for the fronts' own messages
