"""The rig mock's routes (bench/rig/mock.c): a spec file and the bodies and frame templates it names.

The routes sit at the nginx mock's prefixes (bench/mock.py), so every config in bench/targets.py
points at either mock unchanged. Each stream frame carries 16 bytes of content, a placeholder the
C mock replaces by ``#NNNNNN:abcdefgh`` (the frame's number in its stream); the text of the
Responses done events is letters only, so no tag is echoed by the diagonal.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from bench import mock
from tests.fakes import openai_responses_wire as responses_wire
from tests.fakes.openai_wire import Behaviour

HOLE = "@" * 16  # the C mock's placeholder (PLACEHOLDER in mock.c)
FRAMES = 64
PIECE = "abcdefghijklmnop"  # 16 bytes of text where a frame's tag stands in the done events

Stream = tuple[bytes, bytes, bytes]  # head, one frame's template, tail


def _chunk(delta: dict[str, object], finish: str | None) -> bytes:
    return b"data: " + orjson.dumps(mock._chunk(delta, finish)) + b"\n\n"


def openai_stream(frames: int) -> Stream:
    usage = mock._chunk({}, None) | {"choices": []}
    usage["usage"] = {"prompt_tokens": mock.PROMPT_TOKENS, "completion_tokens": frames, "total_tokens": mock.PROMPT_TOKENS + frames}
    head = _chunk({"role": "assistant", "content": ""}, None)
    tail = _chunk({}, "stop") + b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"
    return head, _chunk({"content": HOLE}, None), tail


def anthropic_stream(frames: int) -> Stream:
    whole = mock.anthropic_stream_body(1)
    events = [e + b"\n\n" for e in whole.split(b"\n\n") if e]
    # message_start, content_block_start, ping, one delta, content_block_stop, message_delta, message_stop
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": HOLE}}
    frame = mock._sse("content_block_delta", delta)
    tail = b"".join(events[4:]).replace(b'"output_tokens":1}', b'"output_tokens":%d}' % frames)
    return b"".join(events[:3]), frame, tail


def gemini_stream(frames: int) -> Stream:
    def chunk(text: str, done: bool) -> bytes:
        cand: dict[str, object] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if done:
            cand["finishReason"] = "STOP"
        use = {"promptTokenCount": mock.PROMPT_TOKENS, "candidatesTokenCount": frames, "totalTokenCount": mock.PROMPT_TOKENS + frames}
        doc = {"candidates": [cand], "usageMetadata": use, "modelVersion": mock.GEMINI_MODEL, "responseId": "bench-gemini-1"}
        return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"

    return b"", chunk(HOLE, False), chunk("", True)


def responses_stream(frames: int) -> Stream:
    payload = {**mock.RESPONSES_REQUEST, "stream": True}
    behaviour = Behaviour(chunks=frames, usage=responses_wire.usage(mock.PROMPT_TOKENS, frames))
    whole = responses_wire.reply(payload, behaviour, PIECE * frames, mock.CREATED)
    events = responses_wire.stream_events(payload, whole, behaviour)
    deltas = [i for i, e in enumerate(events) if b"response.output_text.delta" in e.split(b"\n", 1)[0]]
    if len(deltas) != frames:
        raise RuntimeError(f"responses stream: {len(deltas)} deltas for {frames} frames")
    frame = events[deltas[0]].replace(PIECE.encode(), HOLE.encode(), 1)
    return b"".join(events[: deltas[0]]), frame, b"".join(events[deltas[-1] + 1 :])


GEMINI = f"v1beta/models/{mock.GEMINI_MODEL}"
# (path, plain body builder) and (path, stream builder), at the nginx mock's prefixes
PLAIN_ROUTES = (
    ("/plain/v1/chat/completions", mock.plain_body),
    ("/anthropic-plain/v1/messages", mock.anthropic_plain_body),
    (f"/gemini-plain/{GEMINI}:generateContent", mock.gemini_plain_body),
    ("/responses-plain/v1/responses", mock.responses_plain_body),
)
STREAM_ROUTES = (
    ("/stream/v1/chat/completions", openai_stream),
    ("/anthropic-stream/v1/messages", anthropic_stream),
    (f"/gemini-stream/{GEMINI}:streamGenerateContent", gemini_stream),
    ("/responses-stream/v1/responses", responses_stream),
)


def write_spec(folder: Path, delay_ms: int, interval_ms: int, frames: int = FRAMES) -> Path:
    """Write the bodies, templates and the spec file under ``folder``; return the spec's path.

    ``delay_ms``: a plain reply's delay after its request's last byte; ``interval_ms``: the time
    between a stream's frames (0: back to back, each still its own write)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (path, body) in enumerate(PLAIN_ROUTES):
        f = folder / f"plain{i}.json"
        f.write_bytes(body())
        lines.append(f"plain {path} {delay_ms} application/json {f}")
    for i, (path, build) in enumerate(STREAM_ROUTES):
        parts = build(frames)
        names = [folder / f"stream{i}.{part}" for part in ("head", "frame", "tail")]
        for name, data in zip(names, parts, strict=True):
            name.write_bytes(data)
        lines.append(f"stream {path} {interval_ms} {frames} {names[0]} {names[1]} {names[2]}")
    spec = folder / "routes.spec"
    spec.write_text("\n".join(lines) + "\n")
    return spec
