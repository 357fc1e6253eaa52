"""The Anthropic Messages wire protocol: api.anthropic.com and every Anthropic-compatible server.

``base_url`` is the server's root *without* ``/v1``, as the anthropic SDKs take it (their
``base_url``, ``ANTHROPIC_BASE_URL``): ``https://api.anthropic.com``; this transport adds
``/v1/messages`` (``faregate check`` refuses a base_url ending in ``/v1``). The credential goes in
``x-api-key``. ``anthropic-version`` is the client's when it sent one (its body is written for that
version), else the provider's ``anthropic_version`` option, else ``VERSION``; ``anthropic-beta``
from the client is passed on, after any configured for the provider. A header configured under
the provider's ``headers`` is sent as configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from faregate.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
)
from faregate.generation import Credential, Deployment
from faregate.providers import sse
from faregate.providers.base import MAX_TOKENS, UpstreamRequest, by_status
from faregate.types import Endpoint, Usage

USER_AGENT = "faregate"
VERSION = "2023-06-01"  # the anthropic-version sent when neither the client nor the config names one

# The Transport protocol (providers/base.py): this module is the anthropic transport.
format = "anthropic"
endpoints: frozenset[Endpoint] = frozenset({"messages", "count_tokens"})
request_id_header = "request-id"
framing = sse.Splitter
PATHS: dict[Endpoint, str] = {"messages": "/v1/messages", "count_tokens": "/v1/messages/count_tokens"}


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """Re-serialised from the parsed payload with the upstream model name, like openai.build: keys,
    their order and every unknown field (cache_control, thinking signatures) stay as the client sent them."""
    provider = deployment.provider
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "anthropic-version": provider.anthropic_version or VERSION}
    beta = None
    if client_headers:
        version = client_headers.get("anthropic-version")
        if version:
            headers["anthropic-version"] = version
        beta = client_headers.get("anthropic-beta")
    headers.update(provider.headers)
    if beta:
        configured = headers.get("anthropic-beta")
        headers["anthropic-beta"] = f"{configured},{beta}" if configured else beta
    for secret_header in provider.secret_headers:
        headers[secret_header.name] = secret_header.value.reveal()
    if credential is not None and credential.secret is not None:
        headers["x-api-key"] = credential.secret.reveal()
    body = bytes(memoryview(orjson.dumps({**payload, "model": deployment.model})))  # right-sized: base.UpstreamRequest
    return UpstreamRequest("POST", provider.base_url + PATHS[endpoint], headers, body)


def _error_fields(data: Any) -> tuple[str | None, str | None, str | None]:
    """(message, type, details.error_code) of a parsed Anthropic error body
    (``{"type": "error", "error": {"type", "message", "details"?}}``), or Nones."""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return err, None, None
    if not isinstance(err, dict):
        return None, None, None
    message, type_, details = err.get("message"), err.get("type"), err.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    return (
        message if isinstance(message, str) else None,
        type_ if isinstance(type_, str) else None,
        code if isinstance(code, str) else None,
    )


def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    """401/403: the credential; 402 (billing_error) and 429 with ``enforced_spend_limit_reached``:
    the account's quota (code ``insufficient_quota``, as OpenAI's); 429: a rate limit, with
    retry-after; 408, 409 and 5xx (529 overloaded_error included): the server, retried elsewhere;
    any other 4xx (400, 404, 413): the request, passed through with Anthropic's message."""
    message, type_, code = _error_fields(_parsed(body))
    if status == 402 or (status == 429 and code == "enforced_spend_limit_reached"):
        return UpstreamRateLimited(f"{status} {code or type_ or 'billing_error'}", status=status, code="insufficient_quota")
    if status == 429 and type_ is None:
        type_ = "rate_limit_error"
    return by_status(status, type_, message, headers, body, content_type, now)


# The HTTP status each Anthropic error type is sent with (docs: "HTTP errors"), for one that came
# in a 200 or as an `event: error` in a stream.
_KIND_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_in_reply(data: Any, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError | None:
    """A 200 whose body is an error object (``"type": "error"``, or an ``error`` and no message) is
    the error its type names (an unknown type: a server error). None for a real reply."""
    if type(data) is not dict or not data.get("error") or data.get("type") == "message":
        return None
    message, type_, _ = _error_fields(data)
    err = classify_error(_KIND_STATUS.get(type_ or "", 502), headers, body, content_type, now)
    err.reason = err.message = f"200 with an error object: {type_ or message or 'no message'}"
    return err


def _stream_error(data: dict[str, Any], value: bytes) -> UpstreamError:
    """An ``event: error`` in a stream: the error its type names, with Anthropic's message."""
    message, type_, _ = _error_fields(data)
    err = classify_error(_KIND_STATUS.get(type_ or "", 502), {}, value, b"application/json", 0.0)
    err.reason = err.message = f"error event {type_ or 'without a type'}: {message or 'no message'}"
    return err


_COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_CACHE_WRITES = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def _read(usage: dict[str, Any], counts: dict[str, int], problems: list[str]) -> None:
    """Put the counts ``usage`` reports into ``counts`` (an absent or null one leaves its value as it
    was: a message_delta reports only what changed). Each must be a whole number from 0 to
    MAX_TOKENS (12.0 counts); otherwise its problem is noted and the usage counts as unknown."""
    breakdown = usage.get("cache_creation")
    for source, names in ((usage, _COUNTS), (breakdown, _CACHE_WRITES)):
        if type(source) is not dict:
            continue
        for name in names:
            value = source.get(name)
            if value is None:
                continue
            if type(value) is float and value.is_integer():  # NaN and the infinities are not
                value = int(value)
            if type(value) is not int:  # bool is a subclass of int, and no count
                problems.append(f"{name} is not a whole number ({type(value).__name__})")
            elif value < 0:
                problems.append(f"{name} is negative ({value})")
            elif value > MAX_TOKENS:
                problems.append(f"{name} is above 10^9 ({value:.3g})")
            else:
                counts[name] = value


def _normalised(counts: dict[str, int], problems: list[str]) -> Usage:
    """Anthropic's counts as types.Usage: every prompt token in ``prompt_tokens`` (input, cache
    reads and writes). Writes: the 1-hour ones from the breakdown, the rest of
    cache_creation_input_tokens as 5-minute ones (at least the breakdown's 5-minute figure), so a
    total and a breakdown that disagree never make written tokens free."""
    if problems:
        return Usage(anomaly="; ".join(problems))
    read = counts.get("cache_read_input_tokens", 0)
    write_1h = counts.get("ephemeral_1h_input_tokens", 0)
    write_5m = max(counts.get("ephemeral_5m_input_tokens", 0), counts.get("cache_creation_input_tokens", 0) - write_1h)
    return Usage(
        prompt_tokens=counts.get("input_tokens", 0) + read + write_5m + write_1h,
        completion_tokens=counts.get("output_tokens", 0),
        cached_tokens=read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
    )


FREE = Usage()  # a count_tokens reply: Anthropic does not charge for counting


def usage_of(data: Any) -> Usage | None:
    """Usage of a parsed reply: a message's ``usage``; a count_tokens reply (``{"input_tokens": n}``)
    costs nothing; None when there is none."""
    if type(data) is not dict:
        return None
    usage = data.get("usage")
    if type(usage) is not dict:
        return FREE if "type" not in data and type(data.get("input_tokens")) is int else None
    counts: dict[str, int] = {}
    problems: list[str] = []
    _read(usage, counts, problems)
    return _normalised(counts, problems)


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Anthropic streams always report usage (message_start, message_delta): nothing to ask for."""
    return payload, False


class StreamEvents:
    """Reads the complete events of an Anthropic stream on their way to the client (``sse.Splitter``
    finds them): usage from message_start (input, cache) and message_delta (output, cumulative),
    the end at message_stop; an ``event: error`` raises the upstream error it carries; an event
    whose data is not a JSON object is refused (UpstreamProtocolError, ``upstream_malformed_event``).
    What it passes on is the bytes as read. ``strip`` is accepted and unused: nothing is injected."""

    __slots__ = ("_counts", "_problems", "done", "seen", "usage")
    end = "message_stop"

    def __init__(self, *, strip: bool = False) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.seen = 0  # events read, for messages
        self._counts: dict[str, int] = {}
        self._problems: list[str] = []

    def feed(self, events: list[bytes]) -> bytes:
        """The bytes of ``events`` to send on. No helper calls for most events: this runs per read.
        A bad event raises; the error carries the events before it (``before``), which the relay
        sends first: a read holding good events and a bad one loses none of the good."""
        start = self.seen
        try:
            for event in events:
                self.seen += 1
                # the usual event is `event: <name>\ndata: <json>\n\n`: read its one data line directly
                if event.startswith(b"event: "):
                    at = event.find(b"\ndata: ")
                    value = event[at + 7 :].rstrip(b"\r\n") if at >= 0 else None
                elif event.startswith(b"data: "):
                    value = event[6:].rstrip(b"\r\n")
                else:
                    value = None
                if value is None or b"\n" in value or b"\r" in value:  # anything else: the general case
                    value = sse.data_of(event)
                    if value is None:  # a comment, an empty event, an event without data
                        continue
                try:
                    data = orjson.loads(value)
                except orjson.JSONDecodeError:
                    data = None
                if type(data) is not dict:
                    raise UpstreamProtocolError(
                        f"event {self.seen} of the stream is not a JSON object ({len(value)} bytes of data)",
                        code="upstream_malformed_event",
                    )
                kind = data.get("type")
                if kind == "message_start":
                    message = data.get("message")
                    usage = message.get("usage") if type(message) is dict else None
                    if type(usage) is dict:
                        _read(usage, self._counts, self._problems)
                        self.usage = _normalised(self._counts, self._problems)
                elif kind == "message_delta":
                    usage = data.get("usage")
                    if type(usage) is dict:
                        _read(usage, self._counts, self._problems)
                        self.usage = _normalised(self._counts, self._problems)
                elif kind == "message_stop":
                    self.done = True
                elif kind == "error":
                    raise _stream_error(data, value)
        except UpstreamError as err:
            err.before = b"".join(events[: self.seen - start - 1])
            raise
        return b"".join(events)


stream_events = StreamEvents  # Transport.stream_events(strip=...): the watcher of one stream


# The cheapest probe of a deployment (faregate.probe): the model listing, else a 1-token request.
PROBE_ENDPOINT: Endpoint = "messages"
PROBE_PAYLOAD: dict[str, Any] = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
LISTING_PAGE = 1000  # the most models the Models API returns per page


def models_request(deployment: Deployment, credential: Credential | None, after: str | None = None) -> UpstreamRequest:
    """``GET /v1/models`` (one page; ``after``: the ``last_id`` of the page before) with the
    headers ``build`` sends: the credential's ``x-api-key``, ``anthropic-version``, the provider's."""
    headers = build("messages", deployment, credential, {}).headers
    headers.pop("content-type", None)
    query = f"?limit={LISTING_PAGE}" + (f"&after_id={quote(after, safe='')}" if after else "")
    return UpstreamRequest("GET", deployment.provider.base_url + "/v1/models" + query, headers, b"")


def listed_models(body: bytes) -> tuple[list[str], str | None] | None:
    """The model ids of one page of the Models API (``{"data": [{"type": "model", "id"}], "has_more",
    "last_id"}``) and the ``after`` of the next page (None on the last); None when it is no listing."""
    data = _parsed(body)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    names = [item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    last = data.get("last_id")
    return names, last if data.get("has_more") is True and isinstance(last, str) and last else None
