"""Amazon Bedrock's Converse API (bedrock-runtime): ``POST /model/{modelId}/converse`` and
``/converse-stream``, signed with AWS Signature Version 4.

``base_url`` defaults to ``https://bedrock-runtime.{region}.amazonaws.com``. The deployment's
``model`` is the ``modelId``: a model id, a cross-region inference profile id
(``us.anthropic.claude-sonnet-4-20250514-v1:0``) or an ARN, percent-encoded into the path as the
AWS SDKs do. Requests are signed with SigV4 (``sigv4``, checked byte for byte against botocore's
signer; service ``bedrock``, the provider's region) using the credential's keys: configured ones (``access_key_id``, ``secret_access_key``,
``session_token``), or the keys minted from the AWS environment chain (``credentials.aws``).

A ConverseStream reply is ``application/vnd.amazon.eventstream``: binary frames, parsed by
botocore's ``EventStreamBuffer`` (``framing``), each handed on as one SSE event whose data is the
frame's JSON named by its event type (``{"contentBlockDelta": {...}}``) or, for an exception
frame, carrying ``":exception-type"``. No client speaks Converse, so a Bedrock reply is always
translated (``formats.bedrock_converse``); ``stream_events`` exists for the Transport protocol.

Errors are named by the ``x-amzn-errortype`` header (else the body's ``__type``); the body is
``{"message": "..."}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from faregate.errors import (
    CredentialRejected,
    UpstreamError,
    UpstreamModelMissing,
    UpstreamProtocolError,
    UpstreamServerError,
)
from faregate.generation import Credential, Deployment
from faregate.providers import sigv4, sse
from faregate.providers.base import MAX_TOKENS, UpstreamRequest, by_status
from faregate.types import Endpoint, Usage

USER_AGENT = "faregate"
SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime

# The Transport protocol (providers/base.py): this module is the bedrock transport.
format = "bedrock_converse"
endpoints: frozenset[Endpoint] = frozenset({"chat"})  # the conversation endpoint: Converse serves every translated chat
request_id_header = "x-amzn-requestid"


@dataclass(frozen=True, slots=True)
class AwsKeys:
    """The keys one request is signed with (what ``Minted.value`` holds for the AWS chain)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def keys_of(credential: Credential | None) -> AwsKeys:
    """The credential's AWS keys: configured (``secret`` the access key id, ``parts`` the secret key
    and session token) or minted from the chain; CredentialRejected when none are configured,
    UpstreamServerError while the chain has given none (a later attempt may find them)."""
    if credential is not None and credential.minted is not None:
        value = credential.minted.value
        if isinstance(value, AwsKeys):
            return value
        # not the credential's fault for good (it is not rejected): the refresher asks the chain again
        reason = f"credential {credential.label}: no AWS keys from the environment chain yet: {credential.minted.error or 'not resolved'}"
        raise UpstreamServerError(reason, code="no_aws_credentials")
    if credential is None or credential.secret is None or not credential.parts:
        raise CredentialRejected(
            "no AWS credentials: configure access_key_id and secret_access_key, or leave credentials out for the AWS chain"
        )
    token = credential.parts[1].reveal() if len(credential.parts) > 1 else None
    return AwsKeys(credential.secret.reveal(), credential.parts[0].reveal(), token)


def build(
    endpoint: Endpoint,
    deployment: Deployment,
    credential: Credential | None,
    payload: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """The signed Converse request. ``"stream": true`` in the payload (``formats.bedrock_converse``)
    chooses ``/converse-stream`` and is not sent."""
    provider = deployment.provider
    stream = payload.get("stream") is True
    if "stream" in payload:
        payload = {key: value for key, value in payload.items() if key != "stream"}
    url = f"{provider.base_url}/model/{quote(deployment.model, safe='')}/{'converse-stream' if stream else 'converse'}"
    headers = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
    headers["user-agent"] = USER_AGENT
    headers.update(provider.headers)
    body = bytes(memoryview(orjson.dumps(payload)))  # right-sized: base.UpstreamRequest
    return UpstreamRequest("POST", url, sign("POST", url, headers, body, keys_of(credential), provider.region or ""), body)


def sign(method: str, url: str, headers: dict[str, str], body: bytes, keys: AwsKeys, region: str) -> dict[str, str]:
    """``headers`` with SigV4's (authorization, x-amz-date, x-amz-security-token) added (``sigv4``:
    botocore's result at a tenth of its cost, measured)."""
    return sigv4.sign(method, url, headers, body, keys.access_key_id, keys.secret_access_key, keys.session_token, region, SERVICE)


# ---- errors ----------------------------------------------------------------------------------
def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_fields(headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
    """(the exception's name, its message): ``x-amzn-errortype`` (``Name:namespace``), else the
    body's ``__type`` (``namespace#Name``); the body's ``message`` (or ``Message``)."""
    data = _parsed(body)
    data = data if isinstance(data, dict) else {}
    kind = headers.get("x-amzn-errortype", "").split(":", 1)[0].strip() or None
    if kind is None and isinstance(data.get("__type"), str):
        kind = data["__type"].rsplit("#", 1)[-1] or None
    message = data.get("message", data.get("Message"))
    return kind, message if isinstance(message, str) else None


# The model itself failed or is not ready: another deployment may answer (a server error, not the request's)
_MODEL_TROUBLE = frozenset({"ModelErrorException", "ModelStreamErrorException", "ModelNotReadyException", "ModelTimeoutException"})


def classify_error(status: int, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError:
    """ThrottlingException (429): a rate limit; AccessDeniedException, UnrecognizedClientException,
    InvalidSignatureException, ExpiredTokenException (403): the credential; ResourceNotFoundException
    and a ValidationException saying the model identifier is invalid: the deployment's model is
    missing; ModelNotReady/ModelError/ModelTimeout and 5xx (ServiceUnavailableException,
    InternalServerException): the server, retried elsewhere; any other ValidationException: the
    request, passed through with Bedrock's message."""
    kind, message = error_fields(headers, body)
    if kind in _MODEL_TROUBLE:
        return UpstreamServerError(f"{status} {kind}: {message or 'no message'}", status=502 if status < 500 else status, code=kind)
    if kind == "ResourceNotFoundException":
        return UpstreamModelMissing(f"{status} {kind}: {message or 'model not found'}", status=status, code=kind)
    if 400 <= status < 500 and status not in (401, 403, 408, 409, 429):  # Bedrock's {"message"} in an error shape clients read
        body = orjson.dumps({"error": {"message": message or kind or "rejected", "type": "invalid_request_error", "code": kind}})
        content_type = b"application/json"
    return by_status(status, kind, message, headers, body, content_type, now)


def error_in_reply(data: Any, headers: Mapping[str, str], body: bytes, content_type: bytes, now: float) -> UpstreamError | None:
    """A 200 without ``output`` whose body names an exception (``__type``) is that error; None for a reply."""
    if type(data) is not dict or "output" in data or not isinstance(data.get("__type"), str):
        return None
    return classify_error(502, headers, body, content_type, now)


# ---- usage -----------------------------------------------------------------------------------
_COUNTS = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


def usage_from(usage: Any) -> Usage | None:
    """Converse's ``usage`` in faregate's sense (``prompt_tokens`` counts input, cache reads and
    writes; writes split by ``cacheDetails`` ttl); None when there is none."""
    if type(usage) is not dict:
        return None
    counts: dict[str, int] = {}
    problems: list[str] = []
    for name in _COUNTS:
        value = usage.get(name, 0)
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int or not 0 <= value <= MAX_TOKENS:
            problems.append(f"{name} is not a whole number from 0 to 10^9 ({value!r:.20})")
        else:
            counts[name] = value
    if problems:
        return Usage(anomaly="; ".join(problems))
    write = counts["cacheWriteInputTokens"]
    details = usage.get("cacheDetails")
    write_1h = sum(
        d["inputTokens"]
        for d in (details if isinstance(details, list) else ())
        if isinstance(d, dict) and d.get("ttl") == "1h" and type(d.get("inputTokens")) is int and d["inputTokens"] >= 0
    )
    write_1h = min(write_1h, write)
    read = counts["cacheReadInputTokens"]
    return Usage(
        prompt_tokens=counts["inputTokens"] + read + write,
        completion_tokens=counts["outputTokens"],
        cached_tokens=read,
        cache_write_5m=write - write_1h,
        cache_write_1h=write_1h,
    )


def usage_of(data: Any) -> Usage | None:
    return usage_from(data.get("usage")) if type(data) is dict else None


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """ConverseStream always ends with its usage (the metadata event): nothing to ask for."""
    return payload, False


# ---- streams: the event-stream framing -------------------------------------------------------
_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9_]{0,63}")


class Framing:
    """Binary event-stream frames out of reads (botocore's parser checks each frame's CRCs), each
    as one SSE event ``data: <JSON>\\n\\n``. A frame longer than ``limit`` bytes, or one that does
    not parse, is an UpstreamProtocolError."""

    __slots__ = ("_buffer", "_malformed", "_pending", "limit")

    def __init__(self, limit: int = sse.MAX_EVENT_BYTES) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError  # botocore only once a bedrock stream is read

        self.limit = limit
        self._buffer = EventStreamBuffer()
        self._malformed = ParserError
        self._pending = 0  # bytes fed and not yet part of a complete frame

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.add_data(data)
        self._pending += len(data)
        events: list[bytes] = []
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                events.append(_event(message.headers, message.payload))
        except self._malformed as exc:
            raise UpstreamProtocolError(
                f"an event-stream frame could not be read ({type(exc).__name__})", code="upstream_malformed_event"
            ) from None
        if self._pending > self.limit:
            raise sse.too_large(self.limit)
        return events

    def close(self) -> bytes:
        """A frame cut short is dropped: the stream then ends before its metadata event (a cut)."""
        return b""


framing = Framing


def _event(headers: Mapping[str, Any], payload: bytes) -> bytes:
    kind = headers.get(":message-type", "event")
    if kind == "event":
        name = str(headers.get(":event-type", "")).encode()
        if _NAME.fullmatch(name):
            return b'data: {"' + name + b'":' + (payload.strip() or b"{}") + b"}\n\n"
        return (
            b"data: " + orjson.dumps({":exception-type": "UnknownEvent", "message": "an event frame without a valid :event-type"}) + b"\n\n"
        )
    if kind == "exception":
        data = _parsed(payload)
        data = data if isinstance(data, dict) else {"message": payload[:300].decode("utf-8", "replace")}
        member = str(headers.get(":exception-type", "UnknownException"))  # the stream member: modelStreamErrorException
        data[":exception-type"] = member[:1].upper() + member[1:]  # as the exception's name: ModelStreamErrorException
    else:  # an error frame: its code and message are headers
        data = {":exception-type": str(headers.get(":error-code", "UnknownError")), "message": str(headers.get(":error-message", ""))}
    return b"data: " + orjson.dumps(data) + b"\n\n"


_STATUS = {"ThrottlingException": 429, "ValidationException": 400, "ServiceUnavailableException": 503, "InternalServerException": 500}


class StreamEvents:
    """Watches a ConverseStream's events (as ``Framing`` gives them): usage and the end from the
    metadata event; an exception frame raises the error it names. Passes the events on as read."""

    __slots__ = ("done", "seen", "usage")
    end = "metadata"

    def __init__(self, *, strip: bool = False) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.seen = 0

    def feed(self, events: list[bytes]) -> bytes:
        for i, event in enumerate(events):
            self.seen += 1
            try:
                data = sse.json_object(sse.data_of(event) or b"", self.seen)
            except UpstreamProtocolError as bad:
                bad.before = b"".join(events[:i])  # the good events before it are the client's
                raise
            if ":exception-type" in data:
                name = str(data[":exception-type"])
                err = classify_error(_STATUS.get(name, 502), {"x-amzn-errortype": name}, orjson.dumps(data), b"application/json", 0.0)
                err.before = b"".join(events[:i])
                raise err
            metadata = data.get("metadata")
            if type(metadata) is dict:
                self.usage = usage_from(metadata.get("usage")) or self.usage
                self.done = True
        return b"".join(events)


stream_events = StreamEvents


# The probe (faregate.probe): Bedrock's runtime has no model listing, so the 1-token request.
PROBE_ENDPOINT: Endpoint = "chat"
PROBE_PAYLOAD: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": "ping"}]}], "inferenceConfig": {"maxTokens": 1}}
