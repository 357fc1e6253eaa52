"""Bedrock's wire format for the fake (tests/fakes/bedrock_upstream.py): SigV4 checks, the binary
event-stream frames of ConverseStream, Converse replies and Bedrock's error replies.

Frames follow the AWS event-stream encoding: a prelude (total length, headers length, both
big-endian uint32, and the prelude's CRC32), headers (name length uint8, name, type 7 = string,
value length uint16, value), the payload and the message's CRC32. botocore has a parser but no
encoder: ``frame`` is checked against botocore's ``EventStreamBuffer`` and boto3's converse_stream
(tests/fakes_tests/test_bedrock_fake.py). SigV4 is checked by recomputing the signature with
botocore for the known test secret (``verify``): the fake accepts exactly what AWS would.
"""

from __future__ import annotations

import binascii
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY_ID = "AKIAFAREGATETEST0001"
SECRET_ACCESS_KEY = "fAkE/sEcReT+kEy/FaReGaTe0123456789abcdEF"
SESSION_TOKEN = "FwoGZXIvYXdzEFAKEfaregateSessionToken0123456789"
REGION = "us-east-1"
KEYS = {ACCESS_KEY_ID: SECRET_ACCESS_KEY}  # what the fake knows: any other access key id is unrecognised
INVALID_MODEL = "The provided model identifier is invalid."
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})"
)


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("B", len(raw_name)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event(name: str, data: dict[str, Any]) -> bytes:
    return frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"}, orjson.dumps(data))


def exception(name: str, message: str) -> bytes:
    """An exception frame; its ``:exception-type`` is the stream's member name (``modelStreamErrorException``)."""
    headers = {":exception-type": name[:1].lower() + name[1:], ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


# ---- SigV4 -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    ok: bool
    error: str = ""  # the exception name AWS would answer with
    message: str = ""
    access_key_id: str | None = None
    session_token: str | None = None


def verify(method: str, host: str, raw_path: str, headers: dict[str, str], body: bytes) -> Verdict:
    """Whether the request is signed as AWS SigV4 (service bedrock) requires, for a key the fake knows."""
    match = _AUTH.fullmatch(headers.get("authorization", ""))
    if match is None:
        return Verdict(False, "MissingAuthenticationTokenException", "Missing Authentication Token")
    akid, date, region, service, signed, signature = match.groups()
    token = headers.get("x-amz-security-token")
    if akid not in KEYS:
        return Verdict(False, "UnrecognizedClientException", "The security token included in the request is invalid.")
    stamp = headers.get("x-amz-date", "")
    if service != "bedrock" or not stamp.startswith(date):
        return Verdict(False, "InvalidSignatureException", f"Credential should be scoped to a valid service/date ({service}, {date}).")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or (token is not None and "x-amz-security-token" not in names):
        return Verdict(False, "InvalidSignatureException", "host, x-amz-date and x-amz-security-token must be signed.")
    request = AWSRequest(method=method, url=f"http://{host}{raw_path}", data=body, headers={n: headers.get(n, "") for n in names})
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(akid, KEYS[akid], token), service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if expected != signature:
        message = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key."
        return Verdict(False, "InvalidSignatureException", message)
    return Verdict(True, access_key_id=akid, session_token=token)


# ---- replies ---------------------------------------------------------------------------------
STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ModelErrorException": 424,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}


def error_reply(name: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a Bedrock error, as AWS sends it (restJson1)."""
    headers = {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/", "content-type": "application/json"}
    return STATUS.get(name, 400), headers, orjson.dumps({"message": message})


@dataclass
class Script:
    """What the fake answers to the next request (``FakeBedrock.enqueue``), or by default."""

    text: str = "Hello from Bedrock."
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, input) each
    usage: dict[str, Any] = field(default_factory=lambda: {"inputTokens": 12, "outputTokens": 5})
    error: tuple[str, str] | None = None  # (exception, message): answered instead of a reply
    stream_exception: tuple[str, str] | None = None  # ConverseStream: this exception frame after the first delta
    cut_after: int | None = None  # ConverseStream: the connection dies after this many frames
    stop_reason: str | None = None  # default: end_turn, or tool_use with tool calls


def content(script: Script) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": script.text}] if script.text else []
    for i, (name, arguments) in enumerate(script.tool_calls):
        blocks.append({"toolUse": {"toolUseId": f"tooluse_{i:02d}abc", "name": name, "input": arguments}})
    return blocks


def _stop(script: Script) -> str:
    return script.stop_reason or ("tool_use" if script.tool_calls else "end_turn")


def _usage(script: Script) -> dict[str, Any]:
    usage = dict(script.usage)
    usage["totalTokens"] = sum(usage.get(k, 0) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
    return usage


def converse_reply(script: Script) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content(script)}},
        "stopReason": _stop(script),
        "usage": _usage(script),
        "metrics": {"latencyMs": 42},
    }


def stream_frames(script: Script) -> list[bytes]:
    """The ConverseStream of ``script``: text in two deltas, each tool call's input in two fragments."""
    frames = [event("messageStart", {"role": "assistant"})]
    index = 0
    if script.text:
        half = len(script.text) // 2
        for part in (script.text[:half], script.text[half:]):
            frames.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": part}, "p": "abc"}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    if script.stream_exception is not None:
        frames.append(exception(*script.stream_exception))
        return frames
    for i, (name, arguments) in enumerate(script.tool_calls):
        start = {"toolUse": {"toolUseId": f"tooluse_{i:02d}abc", "name": name}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        text = orjson.dumps(arguments).decode()
        for part in (text[: len(text) // 2], text[len(text) // 2 :]):
            frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}))
        frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    frames.append(event("messageStop", {"stopReason": _stop(script)}))
    frames.append(event("metadata", {"usage": _usage(script), "metrics": {"latencyMs": 42}}))
    return frames
