"""OpenAI's moderations, image generation, transcription and speech endpoints, as the fake serves them.

Pure (no I/O): :mod:`tests.fakes.openai_upstream` serves it. The shapes are OpenAI's: a
moderation object per input, ``{"created", "data": [...]}`` images (``url`` for dall-e models,
``b64_json`` and a token ``usage`` for gpt-image models), a transcription as JSON (``{"text",
"usage"}``: tokens for gpt-4o-transcribe, seconds for whisper-1) or plain text, speech as audio
bytes sent chunked. The multipart form of a transcription is read with the standard library's
MIME parser, independent of faregate's own reader, so a body faregate alters shows.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.fakes.openai_wire import Behaviour, error_behaviour, new_id

PATHS = frozenset({"/v1/moderations", "/v1/images/generations", "/v1/audio/transcriptions", "/v1/audio/speech"})
CATEGORIES = (
    *("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm"),
    *("self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic"),
)
FLAGGED_WORD = "FLAGME"  # an input holding it is flagged for violence
SPEECH_CHUNKS = 4  # speech is written in this many chunks (Transfer-Encoding: chunked, as OpenAI sends it)
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
PNG_1PX = base64.b64decode(b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@dataclass(frozen=True)
class Reply:
    """What to send: ``body`` whole, or ``chunks`` one write each (speech)."""

    content_type: str
    body: bytes = b""
    chunks: tuple[bytes, ...] = ()
    json: Any = None


def missing(name: str) -> Behaviour:
    return error_behaviour(400, f"Missing required parameter: '{name}'.", "invalid_request_error", "missing_required_parameter", name)


def form_fields(body: bytes, content_type: str) -> dict[str, bytes] | None:
    """The parts of a multipart/form-data body by name (the value's bytes); None when it is no form."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


def speech_audio(text: str, size: int = 48_000) -> bytes:
    """Deterministic "audio" for ``text``: an MP3 frame header, then bytes of every value (a
    relay that decodes, re-encodes or cuts them shows)."""
    seed = hashlib.sha256(text.encode()).digest()
    out = bytearray(b"\xff\xfb\x90\x64")
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:size])


def transcript_of(audio: bytes) -> str:
    return f"Transcribed {len(audio)} bytes, sha256 {hashlib.sha256(audio).hexdigest()[:16]}."


def answer(path: str, payload: Any, fields: Mapping[str, bytes] | None) -> Reply | Behaviour:
    """The reply to a valid request on ``path``, or the 400 OpenAI sends for an invalid one."""
    if path == "/v1/audio/transcriptions":
        return _transcription(fields)
    if not isinstance(payload, dict):
        return error_behaviour(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    if path == "/v1/moderations":
        return _moderation(payload)
    if path == "/v1/images/generations":
        return _images(payload)
    return _speech(payload)


def _moderation(payload: dict[str, Any]) -> Reply | Behaviour:
    inputs = payload.get("input")
    if inputs is None:
        return missing("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    results = []
    for item in items:
        flagged = FLAGGED_WORD in str(item)
        results.append(
            {
                "flagged": flagged,
                "categories": {c: flagged and c == "violence" for c in CATEGORIES},
                "category_scores": {c: 0.97 if flagged and c == "violence" else 0.0001 for c in CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
            }
        )
    body = {"id": new_id("modr-"), "model": payload.get("model") or "omni-moderation-latest", "results": results}
    return Reply("application/json", json=body)


def _images(payload: dict[str, Any]) -> Reply | Behaviour:
    prompt = payload.get("prompt")
    if not isinstance(prompt, str):
        return missing("prompt")
    n = payload.get("n") or 1
    model = str(payload.get("model") or "dall-e-2")
    body: dict[str, Any] = {"created": int(time.time())}
    if model.startswith("gpt-image"):
        body["data"] = [{"b64_json": base64.b64encode(PNG_1PX).decode()} for _ in range(n)]
        text_tokens = max(1, len(prompt.split()))
        body.update(background="opaque", output_format="png", quality="low", size="1024x1024")
        body["usage"] = {
            "input_tokens": text_tokens,
            "output_tokens": 272 * n,
            "total_tokens": text_tokens + 272 * n,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        }
    elif payload.get("response_format") == "b64_json":
        body["data"] = [{"b64_json": base64.b64encode(PNG_1PX).decode(), "revised_prompt": prompt} for _ in range(n)]
    else:
        body["data"] = [{"url": f"https://images.example/{new_id('img-')}.png", "revised_prompt": prompt} for _ in range(n)]
    return Reply("application/json", json=body)


def _transcription(fields: Mapping[str, bytes] | None) -> Reply | Behaviour:
    if fields is None:
        return error_behaviour(400, "Invalid Content-Type header, expected multipart/form-data.", "invalid_request_error")
    for name in ("file", "model"):
        if name not in fields:
            return missing(name)
    model = fields["model"].decode()
    text = transcript_of(fields["file"])
    response_format = fields.get("response_format", b"json").decode()
    if response_format == "text":
        return Reply("text/plain; charset=utf-8", body=text.encode() + b"\n")
    body: dict[str, Any] = {"text": text}
    if model.startswith("whisper"):
        body["usage"] = {"type": "duration", "seconds": 3}
    else:
        audio_tokens = max(1, len(fields["file"]) // 1000)
        output = len(text.split())
        body["usage"] = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": output,
            "total_tokens": audio_tokens + output,
        }
    return Reply("application/json", json=body)


def _speech(payload: dict[str, Any]) -> Reply | Behaviour:
    for name in ("input", "voice"):
        if not isinstance(payload.get(name), str | dict):
            return missing(name)
    audio = speech_audio(payload["input"])
    step = -(-len(audio) // SPEECH_CHUNKS)
    chunks = tuple(audio[i : i + step] for i in range(0, len(audio), step))
    return Reply(AUDIO_TYPES.get(str(payload.get("response_format") or "mp3"), "audio/mpeg"), chunks=chunks)
