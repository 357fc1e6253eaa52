"""The OpenAI wire protocol: every OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from faregate.errors import UpstreamError, UpstreamProtocolError
from faregate.generation import Credential, Deployment
from faregate.providers import sse
from faregate.providers.base import MAX_TOKENS, PATHS, Form, UpstreamRequest, by_status
from faregate.types import Endpoint, Usage

USER_AGENT = "faregate"

# The Transport protocol (providers/base.py): this module is the openai transport.
format = "openai_chat"
endpoints: frozenset[Endpoint] = frozenset(
    {"chat", "completions", "embeddings", "moderations", "images_generations", "audio_transcriptions", "audio_speech"}
)
request_id_header = "x-request-id"
framing = sse.Splitter


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """The body is always re-serialised from the parsed payload, so what was authorised and routed is
    exactly what is sent (no duplicate-key parser differential), with the upstream model name; a
    multipart form (``base.Form``: transcriptions) goes as sent, with the upstream model name.
    No client header is passed on (``client_headers`` is for transports that forward some)."""
    provider = deployment.provider
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    headers.update(provider.headers)
    for secret_header in provider.secret_headers:  # `Bearer ${NAME}`: revealed only here, into the request
        headers[secret_header.name] = secret_header.value.reveal()
    if credential is not None and credential.secret is not None:
        headers["authorization"] = "Bearer " + credential.secret.reveal()
    if endpoint == "audio_transcriptions" and type(payload) is Form:  # multipart: the bytes as sent, but the model
        headers["content-type"] = payload.content_type
        return UpstreamRequest("POST", provider.base_url + PATHS[endpoint], headers, payload.with_model(deployment.model))
    body = bytes(memoryview(orjson.dumps({**payload, "model": deployment.model})))  # right-sized: base.UpstreamRequest
    return UpstreamRequest("POST", provider.base_url + PATHS[endpoint], headers, body)


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI error body, or Nones for anything else. Also read: the
    fields at the top (``{"object": "error", "message", ...}``: older vLLM, Mistral) and a list of
    one error (Gemini's OpenAI-compatible endpoint)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if type(data) is list and len(data) == 1:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if err is None and isinstance(data, dict) and data.get("object") == "error":
        err = data
    if isinstance(err, str):
        return err, None, None
    if not isinstance(err, dict):
        return None, None, None
    message, type_, code = err.get("message"), err.get("type"), err.get("code")
    return (
        message if isinstance(message, str) else None,
        type_ if isinstance(type_, str) else None,
        str(code) if isinstance(code, str | int) else None,
    )


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    message, type_, code = _error_fields(body)
    return by_status(status, code or type_, message, headers, body, content_type, now)


# The HTTP status an error object's type or code stands for, when it came in a 200.
_KIND_STATUS = {
    "invalid_api_key": 401,
    "authentication_error": 401,
    "unauthorized": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "rate_limited": 429,
    "insufficient_quota": 429,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "model_not_found": 404,
    "not_found_error": 404,
}


def error_in_reply(data: Any, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError | None:
    """A 200 whose body is an error object (``{"error": {...}}`` and no ``choices``/``data``) is
    the upstream error it names: by its numeric code or its type/code (401/403, 429, 4xx about the
    request), else an upstream server error (the next deployment is tried). None for a real reply."""
    if type(data) is not dict or not data.get("error") or "choices" in data or "data" in data:
        return None
    message, type_, code = _error_fields(body)
    status = 502
    for kind in (code, type_):
        if kind is None:
            continue
        if kind.isascii() and kind.isdigit() and 400 <= int(kind) <= 599:
            status = int(kind)
            break
        if kind in _KIND_STATUS:
            status = _KIND_STATUS[kind]
            break
    err = classify_error(status, headers, body, content_type, now)
    err.reason = err.message = f"200 with an error object: {code or type_ or message or 'no message'}"
    return err


def _usage(data: Any) -> Usage | None:
    """The usage object of a reply or an event: None when there is none. Each count must be a whole
    number from 0 to MAX_TOKENS (absent or null is 0; a JSON number with no fraction, such as 12.0,
    counts); otherwise a Usage whose ``anomaly`` says what is wrong, and the usage counts as unknown.
    No helper calls: this runs for every priced reply."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    counts: list[int] = []
    problems: list[str] = []
    fields = ((usage, "prompt_tokens"), (usage, "completion_tokens"), (details, "cached_tokens"), (completion_details, "reasoning_tokens"))
    for source, name in fields:
        value = source.get(name) if isinstance(source, dict) else None
        if value is None:
            value = 0
        elif type(value) is float and value.is_integer():  # NaN and the infinities are not
            value = int(value)
        if type(value) is not int:  # bool is a subclass of int, and no count
            problems.append(f"{name} is not a whole number ({type(value).__name__})")
        elif value < 0:
            problems.append(f"{name} is negative ({value})")
        elif value > MAX_TOKENS:
            problems.append(f"{name} is above 10^9 ({value:.3g})")
        counts.append(value)
    if problems:
        return Usage(anomaly="; ".join(problems))
    return Usage(prompt_tokens=counts[0], completion_tokens=counts[1], cached_tokens=counts[2], reasoning_tokens=counts[3])


def usage_of(data: Any) -> Usage | None:
    """Usage from a parsed reply; None when absent (see ``_usage`` for invalid counts)."""
    return _usage(data)


def media_usage(data: Any) -> Usage | None:
    """The usage of an image, transcription or speech reply when it is in tokens (``gpt-image-1``,
    ``gpt-4o-transcribe``: ``{"input_tokens", "output_tokens", ...}``), checked as ``_usage`` checks
    counts; None for none or another unit (``whisper-1``'s ``{"type": "duration", "seconds"}``)."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict) or usage.get("type", "tokens") != "tokens" or "input_tokens" not in usage:
        return None
    return _usage({"usage": {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage.get("output_tokens")}})


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask the upstream to report usage at the end of a stream, so the stream can be priced.
    Returns the payload to send and whether the request was changed (then the usage event must be
    removed again before the client sees it: it did not ask for it)."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return payload, False
    merged = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
    return {**payload, "stream_options": merged}, True


class StreamEvents:
    """Reads the complete events of an OpenAI stream on their way to the client (``sse.Splitter``
    finds them): keeps the usage it reports, notes ``[DONE]``, and refuses an event whose data is
    not a JSON object (UpstreamProtocolError, code ``upstream_malformed_event``), so the client gets
    an explicit error instead of an unparseable chunk. What it passes on is the bytes as read."""

    __slots__ = ("done", "seen", "strip", "usage")
    end = "[DONE]"

    def __init__(self, *, strip: bool = False) -> None:
        self.strip = strip  # remove the usage-only event: the client did not ask for it
        self.usage: Usage | None = None
        self.done = False
        self.seen = 0  # events read, for messages

    def feed(self, events: list[bytes]) -> bytes:
        """The bytes of ``events`` to send on. No helper calls on the way: this runs per read."""
        kept = events
        for event in events:
            self.seen += 1
            value = event[6:].rstrip(b"\r\n") if event.startswith(b"data: ") else None
            if value is None or b"\n" in value or b"\r" in value:  # not one plain data line: the general case
                value = sse.data_of(event)
                if value is None:  # a comment or an empty event
                    continue
            if value == b"[DONE]":
                self.done = True
                continue
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError:
                data = None
            if type(data) is not dict:
                bad = UpstreamProtocolError(
                    f"event {self.seen} of the stream is not a JSON object ({len(value)} bytes of data)", code="upstream_malformed_event"
                )
                bad.before = b"".join(e for e in events[: events.index(event)] if e in kept)  # the relay sends these first
                raise bad
            if type(data.get("usage")) is dict:
                self.usage = usage_of(data) or self.usage
                if self.strip and data.get("choices") == []:
                    kept = [e for e in kept if e is not event]
        return b"".join(kept)


class UsageStripper(StreamEvents):
    """StreamEvents that also removes the usage-only event (``"choices": []`` with a usage object),
    for a client that did not ask for usage: faregate asked for it, to price the stream."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(strip=True)


stream_events = StreamEvents  # Transport.stream_events(strip=...): the watcher of one stream


# The cheapest probe of a deployment (faregate.probe): the model listing, else a 1-token request.
PROBE_ENDPOINT: Endpoint = "chat"
PROBE_PAYLOAD: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


def models_request(deployment: Deployment, credential: Credential | None, after: str | None = None) -> UpstreamRequest:
    """``GET {base_url}/models`` with the headers ``build`` sends (auth included). OpenAI's listing
    has one page: ``after`` is never needed."""
    headers = build("chat", deployment, credential, {}).headers
    headers.pop("content-type", None)
    return UpstreamRequest("GET", deployment.provider.base_url + "/models", headers, b"")


def listed_models(body: bytes) -> tuple[list[str], str | None] | None:
    """The model ids of a listing (``{"object": "list", "data": [{"id": ...}, ...]}``) and the
    cursor of its next page (always None here); None when the body is no listing."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)], None
