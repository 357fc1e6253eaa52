"""What every transport shares: the protocol the pipeline calls, the request a transport builds,
the reply a local adapter makes, and the small helpers two wire protocols have in common.

A transport is one module per wire protocol (``openai``, ``anthropic``): the module itself is the
object in ``faregate.providers.TRANSPORTS`` and satisfies ``Transport`` with its module-level
names, so a call through the protocol costs exactly the call of the function it names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from faregate.errors import (
    CredentialRejected,
    UpstreamError,
    UpstreamModelMissing,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from faregate.generation import Credential, Deployment
from faregate.types import Endpoint, Usage

PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",  # providers/openai_responses.py
    "moderations": "/moderations",
    "images_generations": "/images/generations",
    "audio_transcriptions": "/audio/transcriptions",
    "audio_speech": "/audio/speech",
}

MAX_TOKENS = 10**9
"""The most tokens one usage field may report. The largest context windows are ~10^7 tokens, so
10^9 is far beyond any real request, yet small enough that sums of many (counters, spend totals)
stay well inside the 64-bit integers that orjson and the database columns hold."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    # Right-sized: ``bytes(memoryview(orjson.dumps(...)))``. orjson (3.12 on) returns bytes whose allocation is
    # sized for the worst case and never shrunk (a 150 KB body holds 2 MB, ~14x); the copy frees that at once,
    # where the body would otherwise hold it until the upstream answered (bench.allocations measures it).
    body: bytes
    # A whole reply's body as the client's format has it, for an endpoint this transport serves in
    # the client's format over a wire of its own (Gemini's embeddings); None: the body as it is.
    reshape: Callable[[bytes], bytes] | None = None


class Form(dict[str, Any]):
    """A multipart/form-data request passed through as the client sent it (``audio_transcriptions``).
    As a dict it holds only the fields read to route and admit it (``model``, never the file);
    ``body`` is the bytes as sent, ``content_type`` the client's Content-Type (with the boundary the
    body was read by) and ``model_at`` the (start, end) of the model field's value in ``body``: a
    transport sends ``with_model(deployment.model)``, the bytes unchanged but for the deployment's
    model name (``faregate.server.forms`` reads them)."""

    __slots__ = ("body", "content_type", "model_at")

    def __init__(self, fields: dict[str, Any], body: bytes, content_type: str, model_at: tuple[int, int]) -> None:
        super().__init__(fields)
        self.body, self.content_type, self.model_at = body, content_type, model_at

    def with_model(self, model: str) -> bytes:
        start, end = self.model_at
        name = model.encode()
        return self.body if self.body[start:end] == name else self.body[:start] + name + self.body[end:]


@dataclass(frozen=True, slots=True)
class LocalReply:
    """A whole reply produced without I/O: either a body or the SSE events of a stream."""

    status: int
    body: bytes = b""
    events: tuple[bytes, ...] = ()
    content_type: bytes = b"application/json"
    usage: Usage | None = None  # for streams: what the reply cost, whether or not the client asked


class Framing(Protocol):
    """Complete events out of a stream's reads (``sse.Splitter`` is the SSE one)."""

    def feed(self, data: bytes) -> list[bytes]: ...  # the events ``data`` completed, in order

    def close(self) -> bytes: ...  # what is left when the stream ends (an event without its end)


class StreamWatch(Protocol):
    """Watches the complete SSE events of a stream relayed as bytes (``sse.Splitter`` finds them):
    the usage it reports, whether its own end arrived, and malformed events, which it refuses with
    an UpstreamProtocolError (code ``upstream_malformed_event``). An upstream error event raises
    the UpstreamError it stands for."""

    usage: Usage | None  # the latest usage reported, None while none was
    done: bool  # the stream's own end was seen ([DONE], message_stop)

    @property
    def end(self) -> str: ...  # that end, as an operator would look for it in a message: "[DONE]", "message_stop"

    def feed(self, events: list[bytes]) -> bytes: ...  # the bytes of ``events`` to send on to the client


class Transport(Protocol):
    """One wire protocol towards an upstream: where to send, how to authenticate, how replies,
    errors and usage read. Sans-IO (README.md): data in, data out."""

    format: str  # the codec NAME it speaks (faregate.formats): "openai_chat", "anthropic"
    endpoints: frozenset[Endpoint]  # what it serves; a request for anything else never reaches it
    request_id_header: str  # the reply header holding the upstream's request id

    @property
    def framing(self) -> Callable[[int], Framing]:
        """How a streamed reply's bytes split into events (``sse.Splitter`` for SSE), given the most
        bytes one event may hold. A binary framing (Bedrock's event-stream) hands each frame on as
        one SSE event (``data: <its JSON>``), so the relay and StreamTranslator are one path for
        every upstream."""
        ...

    def build(
        self,
        endpoint: Endpoint,
        deployment: Deployment,
        credential: Credential | None,
        payload: dict[str, Any],
        client_headers: Mapping[str, str] | None = None,
    ) -> UpstreamRequest:
        """The request to send. ``client_headers``: the client's headers (lower-case names) that a
        transport of the client's own format may pass on (``anthropic-beta``); never its auth."""
        ...

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
        """The most specific UpstreamError for an error status and body."""
        ...

    def error_in_reply(self, data: Any, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError | None:
        """A success status whose parsed body is an error object: that error; None for a real reply."""
        ...

    def usage_of(self, data: Any) -> Usage | None:
        """The usage of a parsed whole reply, normalised (types.Usage); None when it reports none."""
        ...

    def stream_events(self, *, strip: bool) -> StreamWatch:
        """A watcher for one stream; ``strip``: remove the usage event that ``with_stream_usage`` asked for."""
        ...

    def with_stream_usage(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The payload that makes the upstream report a stream's usage, and whether it was changed."""
        ...


def by_status(
    status: int, kind: str | None, message: str | None, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float
) -> UpstreamError:
    """The faregate error for an upstream's error status, the same for every wire protocol: 401/403
    the credential; 429 a limit (with retry-after); 408, 409 and 5xx the server (retried elsewhere);
    any other 4xx the request (passed through), except a provider saying the deployment's model does
    not exist (``model_missing``). ``kind`` is the protocol's code or type of the error."""
    if status in (401, 403):
        return CredentialRejected(f"credential rejected ({status} {kind or 'unauthorized'})", status=status, code=kind)
    if status == 429:
        return UpstreamRateLimited(f"429 {kind or 'rate_limited'}", code=kind, retry_after=retry_after(headers, now))
    if status in (408, 409) or status >= 500:
        detail = kind or message or "no error body"  # shortened by UpstreamError.redact, after scrubbing
        return UpstreamServerError(f"{status} {detail}", status=status, code=kind)
    if status in (400, 404) and model_missing(status, message, kind):
        return UpstreamModelMissing(f"{status} {kind or 'not_found'}: {message or 'model not found'}", status=status, code=kind)
    return UpstreamRejected(f"{status} {kind or 'rejected'}", status=status, body=body, content_type=content_type)


# "This model does not exist here", as each kind of provider says it. Codes (or types) that say only
# that: OpenAI, Groq, Fireworks and LiteLLM's 404 model_not_found; Azure OpenAI's 404
# DeploymentNotFound (the deployment name is the model); Together's 404 model_not_available.
_MISSING_KINDS = frozenset({"model_not_found", "DeploymentNotFound", "model_not_available"})
# A 404 whose message names a model that is not there: OpenAI's, vLLM's and TGI's "The model `x` does
# not exist", Ollama's 'model "x" not found, try pulling it first', Gemini's "models/x is not found
# for API version v1beta", Cohere's "model 'x' not found", Anthropic's "model: claude-x" (its whole
# message), "no such model", "unknown model". A model word must come first: "File not found" or
# "Not Found" (an unknown URL) is not about the model.
_MISSING_404 = re.compile(
    r"\bmodels?\b.{0,160}?\b(?:does not exist|doesn't exist|not exist|not found|could not be found)\b"
    r"|\bno such model\b|\bunknown model\b|^model: \S",
    re.IGNORECASE | re.DOTALL,
)
# Phrases that say it with a 400 or a 404: LiteLLM's "Invalid model name passed in model=x",
# OpenRouter's "x is not a valid model ID", Mistral's "Invalid model: x", DeepSeek's "Model Not Exist",
# Bedrock's "The provided model identifier is invalid" and "Could not resolve the foundation model
# from the provided model identifier".
_MISSING_PHRASES = re.compile(
    r"invalid model name passed|is not a valid model id|^invalid model: |^model not exist"
    r"|provided model identifier is invalid|could not resolve the foundation model",
    re.IGNORECASE,
)
# A message about the address, not the model ("Invalid URL (POST /v1/models/x/chat)", "route not
# found", "not supported in the v1/completions endpoint"): never a missing model by its wording.
_ABOUT_ADDRESS = re.compile(r"\b(?:url|route|endpoint|path)\b", re.IGNORECASE)


def model_missing(status: int, message: str | None, *kinds: str | None) -> bool:
    """Whether an upstream error (its HTTP status, message, and the protocol's codes or types in
    ``kinds``) says the requested model does not exist on that upstream: the deployment's upstream
    model name is wrong (misspelt, not deployed, not pulled), not the client's request. Shared by
    every wire protocol (``by_status``); a provider type of its own (Gemini's NOT_FOUND, Bedrock's
    ResourceNotFoundException or ValidationException) passes its own kinds and message."""
    if status not in (400, 404):
        return False
    if any(kind in _MISSING_KINDS for kind in kinds):
        return True
    if message is None or _ABOUT_ADDRESS.search(message) is not None:
        return False
    if _MISSING_PHRASES.search(message) is not None:
        return True
    return status == 404 and _MISSING_404.search(message) is not None


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)
