"""The Gemini API (v1beta REST) wire format for the fake upstream: behaviours, reply bodies, stream
chunks, Google error bodies and the request checks the real API makes. Pure (no I/O);
:mod:`tests.fakes.gemini_upstream` serves it. Field names are the API's camelCase JSON (the
google-genai SDK's ``types.py`` in snake case).

Token counts are deterministic: prompt = bytes of the compact JSON of ``contents`` // 4 + 1;
candidates = words of every text part (thought parts are counted apart, as ``thoughtsTokenCount``),
plus (bytes of the JSON args) // 4 + 1 per function call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_REPLY = "Hello from the fake Gemini upstream."
SSE_CONTENT_TYPE = "text/event-stream"
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "text-embedding-004", "gemini-embedding-001")

# What the API reads (GenerateContentRequest and its parts); anything else is a 400 "Unknown name".
REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent", "labels"}
)
PART_FIELDS = frozenset(
    {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}
    | {"executableCode", "codeExecutionResult", "videoMetadata", "mediaResolution"}
)
GENERATION_FIELDS = frozenset(
    {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount", "maxOutputTokens"}
    | {"temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs"}
    | {"thinkingConfig", "responseModalities", "speechConfig", "mediaResolution", "enableEnhancedCivicAnswers"}
)
# The Schema object (OpenAPI 3.0 subset) as the Gemini API reads it in `parameters` and `responseSchema`
SCHEMA_FIELDS = frozenset(
    {"type", "format", "title", "description", "nullable", "enum", "items", "minItems", "maxItems", "properties"}
    | {"required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf"}
    | {"propertyOrdering", "default", "minimum", "maximum"}
)
SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request. The defaults give a normal, successful reply."""

    status: int = 200
    error: Mapping[str, Any] | None = None  # the Google error object {"code", "message", "status", "details"}
    headers: Mapping[str, str] = field(default_factory=dict)
    release: threading.Event | None = None  # the reply waits until the test sets this (30 s at most)
    # the reply
    parts: Sequence[Mapping[str, Any]] | None = None  # the candidate's parts (text()/call()/thought()); None: the text
    reply_text: str | None = None
    finish_reason: str = "STOP"
    safety_ratings: Sequence[Mapping[str, Any]] | None = None
    prompt_block: str | None = None  # promptFeedback.blockReason: no candidates at all
    usage: Mapping[str, Any] | None = None  # merged over the counted usageMetadata
    # the stream
    chunks: int = 3  # chunks a text part is split into
    stream_drop_after: int | None = None  # abort the connection after this many chunks
    error_after: int | None = None  # after this many chunks, write an error chunk and end
    stream_error: Mapping[str, Any] | None = None

    @property
    def is_error(self) -> bool:
        return self.status >= 400 or self.error is not None


def text(value: str, signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": value}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def thought(value: str, signature: str | None = None) -> dict[str, Any]:
    return {**text(value, signature), "thought": True}


def call(name: str, args: Mapping[str, Any], signature: str | None = None, id: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "args": dict(args)}
    if id is not None:
        function["id"] = id
    part: dict[str, Any] = {"functionCall": function}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def usage(prompt: int, candidates: int, cached: int | None = None, thoughts: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates}
    if cached is not None:
        meta["cachedContentTokenCount"] = cached
    if thoughts is not None:
        meta["thoughtsTokenCount"] = thoughts
    meta["totalTokenCount"] = prompt + candidates + (thoughts or 0)
    return meta


def google_error(code: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()) -> Behaviour:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = [dict(d) for d in details]
    return Behaviour(status=code, error=error)


class _Errors:
    """Behaviours for each failure class, with Google's codes, statuses and messages."""

    @staticmethod
    def bad_request(message: str) -> Behaviour:
        return google_error(400, "INVALID_ARGUMENT", message)

    @staticmethod
    def invalid_key() -> Behaviour:
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}
        help_ = {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid. Please pass a valid API key.",
        }
        return google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info, help_])

    @staticmethod
    def permission_denied() -> Behaviour:
        return google_error(403, "PERMISSION_DENIED", "The caller does not have permission")

    @staticmethod
    def model_not_found(model: str) -> Behaviour:
        message = f"models/{model} is not found for API version v1beta, or is not supported for generateContent."
        return google_error(404, "NOT_FOUND", message)

    @staticmethod
    def not_found() -> Behaviour:
        return google_error(404, "NOT_FOUND", "Requested entity was not found.")

    @staticmethod
    def rate_limited(delay: str = "7s") -> Behaviour:
        details = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
        ]  # fmt: skip
        return google_error(
            429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.", details
        )

    @staticmethod
    def internal() -> Behaviour:
        return google_error(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )

    @staticmethod
    def unavailable() -> Behaviour:
        return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


errors = _Errors()


# ---- request checks (what the real API refuses before generating) ------------------------------
def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return f"Invalid value at '{where}', must be an object"
    for key, value in schema.items():
        if key not in SCHEMA_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
        if key == "type" and (not isinstance(value, str) or value.upper() not in SCHEMA_TYPES):
            return f"Invalid value at '{where}.type' ({value!r})"
        if key == "properties":
            if not isinstance(value, dict):
                return f"Invalid value at '{where}.properties'"
            for name, sub in value.items():
                if (problem := _schema_problem(sub, f"{where}.properties[{name}].value")) is not None:
                    return problem
        if key == "items" and (problem := _schema_problem(value, f"{where}.items")) is not None:
            return problem
        if key == "anyOf":
            for i, sub in enumerate(value if isinstance(value, list) else [None]):
                if (problem := _schema_problem(sub, f"{where}.any_of[{i}]")) is not None:
                    return problem
        if key == "enum" and not all(isinstance(v, str) for v in value):
            return f"Invalid value at '{where}.enum', TYPE_STRING expected"
    if schema.get("type", "").upper() == "OBJECT" and "properties" in schema and not schema["properties"]:
        return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
    return None


def _unknown(obj: Mapping[str, Any], known: frozenset[str], where: str) -> str | None:
    for key in obj:
        if key not in known:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
    return None


def check_generate(payload: Any) -> str | None:
    """The 400 message the API would answer for this generateContent body, or None."""
    if not isinstance(payload, dict):
        return "Invalid JSON payload received."
    if (problem := _unknown(payload, REQUEST_FIELDS, "")) is not None:
        return problem
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        role, parts = content.get("role"), content.get("parts")
        if role not in ("user", "model", "function", None):
            return f"Please use a valid role: user, model. (contents[{i}].role)"
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            if (problem := _unknown(part, PART_FIELDS, f"contents[{i}].parts[{j}]")) is not None:
                return problem
            response = part.get("functionResponse")
            if response is not None and (not response.get("name") or not isinstance(response.get("response"), dict)):
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response.name: Name cannot be empty."
            fcall = part.get("functionCall")
            if fcall is not None and not isinstance(fcall.get("args", {}), dict):
                return f"Invalid value at 'contents[{i}].parts[{j}].function_call.args'"
    config = payload.get("generationConfig") or {}
    if (problem := _unknown(config, GENERATION_FIELDS, "generation_config")) is not None:
        return problem
    if "responseSchema" in config and (problem := _schema_problem(config["responseSchema"], "generation_config.response_schema")):
        return problem
    for t, tool in enumerate(payload.get("tools") or ()):
        for f, decl in enumerate(tool.get("functionDeclarations") or ()):
            if "parameters" in decl and (
                problem := _schema_problem(decl["parameters"], f"tools[{t}].function_declarations[{f}].parameters")
            ):
                return problem
    return None


# ---- replies --------------------------------------------------------------------------------
def reply_parts(behaviour: Behaviour, default_text: str) -> list[dict[str, Any]]:
    if behaviour.parts is not None:
        return [dict(p) for p in behaviour.parts]
    return [text(behaviour.reply_text if behaviour.reply_text is not None else default_text)]


def count_usage(payload: Mapping[str, Any], parts: Sequence[Mapping[str, Any]], behaviour: Behaviour) -> dict[str, Any]:
    prompt = len(orjson.dumps(payload.get("contents") or [])) // 4 + 1
    out = thoughts = 0
    for part in parts:
        if "functionCall" in part:
            out += len(orjson.dumps(part["functionCall"].get("args") or {})) // 4 + 1
        elif part.get("thought"):
            thoughts += len(str(part.get("text", "")).split())
        else:
            out += len(str(part.get("text", "")).split())
    meta = usage(prompt, out, thoughts=thoughts or None)
    return {**meta, **(behaviour.usage or {})}


def response(
    model: str, parts: Sequence[Mapping[str, Any]], behaviour: Behaviour, meta: Mapping[str, Any] | None, finish: bool = True
) -> dict[str, Any]:
    """One GenerateContentResponse (a whole reply, or one chunk of a stream)."""
    if behaviour.prompt_block is not None:
        feedback: dict[str, Any] = {"blockReason": behaviour.prompt_block}
        if behaviour.safety_ratings is not None:
            feedback["safetyRatings"] = [dict(r) for r in behaviour.safety_ratings]
        return {"promptFeedback": feedback, "usageMetadata": dict(meta or {}), "modelVersion": model, "responseId": "resp-fake"}
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [dict(p) for p in parts]}, "index": 0}
    if finish:
        candidate["finishReason"] = behaviour.finish_reason
        if behaviour.safety_ratings is not None:
            candidate["safetyRatings"] = [dict(r) for r in behaviour.safety_ratings]
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "resp-fake"}
    if meta is not None:
        out["usageMetadata"] = dict(meta)
    return out


def stream_chunks(model: str, parts: Sequence[Mapping[str, Any]], behaviour: Behaviour, meta: Mapping[str, Any]) -> list[bytes]:
    """The SSE events of ``streamGenerateContent?alt=sse``: text split over ``chunks`` chunks, each
    call whole in a chunk of its own; every chunk has the running usage (prompt only until the last)
    and the last one the finishReason and the final usage."""
    if behaviour.prompt_block is not None:
        return [sse(response(model, [], behaviour, meta))]
    pieces: list[dict[str, Any]] = []
    for part in parts:
        value = part.get("text")
        if isinstance(value, str) and behaviour.chunks > 1 and len(value) >= behaviour.chunks:
            size = -(-len(value) // behaviour.chunks)
            rest = {k: v for k, v in part.items() if k not in ("text", "thoughtSignature")}
            bits = [value[i : i + size] for i in range(0, len(value), size)]
            pieces += [{**rest, "text": bit} for bit in bits[:-1]]
            pieces.append({**{k: v for k, v in part.items() if k != "text"}, "text": bits[-1]})
        else:
            pieces.append(dict(part))
    running = {"promptTokenCount": meta.get("promptTokenCount", 0)}
    events = [sse(response(model, [piece], behaviour, running, finish=False)) for piece in pieces[:-1]]
    events.append(sse(response(model, pieces[-1:], behaviour, meta)))
    return events


def sse(data: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


def error_body(error: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"error": dict(error)})


def embedding(text_: str, dimensions: int | None) -> dict[str, Any]:
    """A deterministic vector: the first bytes of the text, scaled."""
    size = dimensions or 8
    raw = (text_.encode() * size)[:size] or bytes(size)
    return {"values": [round(b / 255, 4) for b in raw]}


def models_page(token: str | None, size: int) -> dict[str, Any]:
    start = int(token) if token and token.isdigit() else 0
    items = [{"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent"]} for m in MODELS]
    page: dict[str, Any] = {"models": items[start : start + size]}
    if start + size < len(items):
        page["nextPageToken"] = str(start + size)
    return page
