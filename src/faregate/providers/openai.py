"""The OpenAI wire protocol: every OpenAI-compatible server (OpenAI, vLLM, Ollama, Groq, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from faregate.errors import (
    CredentialRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from faregate.generation import Credential, Deployment
from faregate.providers.base import PATHS, UpstreamRequest
from faregate.types import Endpoint, Usage

USER_AGENT = "faregate"


def build(endpoint: Endpoint, deployment: Deployment, credential: Credential | None, payload: dict[str, Any]) -> UpstreamRequest:
    """The body is always re-serialised from the parsed payload, so what was authorised and routed is
    exactly what is sent (no duplicate-key parser differential), with the upstream model name."""
    provider = deployment.provider
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    headers.update(provider.headers)
    if credential is not None and credential.secret is not None:
        headers["authorization"] = "Bearer " + credential.secret.reveal()
    body = orjson.dumps({**payload, "model": deployment.model})
    return UpstreamRequest("POST", provider.base_url + PATHS[endpoint], headers, body)


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI error body, or Nones for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    err = data.get("error") if isinstance(data, dict) else None
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


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
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


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    message, type_, code = _error_fields(body)
    kind = code or type_
    if status in (401, 403):
        return CredentialRejected(f"credential rejected ({status} {kind or 'unauthorized'})", status=status, code=kind)
    if status == 429:
        return UpstreamRateLimited(f"429 {kind or 'rate_limited'}", code=kind, retry_after=retry_after(headers, now))
    if status in (408, 409) or status >= 500:
        detail = kind or (message[:80] if message else "no error body")
        return UpstreamServerError(f"{status} {detail}", status=status, code=kind)
    return UpstreamRejected(f"{status} {kind or 'rejected'}", status=status, body=body, content_type=content_type)


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def usage_of(data: Any) -> Usage | None:
    """Usage from a parsed reply; None when absent or malformed."""
    try:
        return _usage(data)
    except (TypeError, ValueError):
        return None


def stream_usage(chunk: bytes) -> Usage | None:
    """Usage from the SSE event(s) in ``chunk`` that carry it (called only when b'"usage"' is in it)."""
    found = None
    for line in chunk.split(b"\n"):
        if line.startswith(b"data:") and b'"usage"' in line:
            try:
                usage = _usage(orjson.loads(line[5:]))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                continue
            found = usage or found
    return found


def has_usage(chunk: bytes) -> bool:
    """Whether a streamed chunk may carry a usage object (not the `"usage":null` of every chunk)."""
    return b'"usage":{' in chunk or b'"usage": {' in chunk


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask the upstream to report usage at the end of a stream, so the stream can be priced.
    Returns the payload to send and whether the request was changed (then the usage event must be
    removed again before the client sees it: it did not ask for it)."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return payload, False
    merged = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
    return {**payload, "stream_options": merged}, True


class UsageStripper:
    """Removes the usage-only event (`"choices":[]` plus a usage object) from an SSE byte stream and
    keeps its usage. Holds back an incomplete event until its end arrives; everything else is passed
    on unchanged and in order."""

    __slots__ = ("_carry", "usage")

    def __init__(self) -> None:
        self._carry = b""
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
        end = data.rfind(b"\n\n")
        if end < 0:
            self._carry = data
            return b""
        complete, self._carry = data[: end + 2], data[end + 2 :]
        if b'"usage":{' not in complete and b'"usage": {' not in complete:  # has_usage, inlined: this runs per chunk
            return complete
        kept = []
        for event in complete.split(b"\n\n")[:-1]:
            if has_usage(event) and b'"choices":[]' in event.replace(b" ", b""):
                self.usage = stream_usage(event) or self.usage
                continue
            kept.append(event + b"\n\n")
        return b"".join(kept)

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        return rest
