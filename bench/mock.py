"""Static mock upstream bodies and nginx configs (mock upstream and proxy floor).

The mock is one nginx worker serving pre-generated files, so it is never the
bottleneck. nginx answers POST on a static file with 405; ``error_page 405 =200
$uri`` turns that into an internal GET redirect to the same file with status 200.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from tests.fakes import openai_responses_wire as responses_wire
from tests.fakes.openai_wire import Behaviour

STREAM_EVENTS = 50
MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
CREATED = 1_730_000_000
PROMPT_TOKENS = 9
WORDS = ("Hello", "!", " How", " can", " I", " help", " you", " today", "?", " I")


def plain_body() -> bytes:
    """A realistic non-streamed OpenAI ``chat.completion`` response."""
    doc = {
        "id": "chatcmpl-bench0000000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you today?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": 9,
            "total_tokens": 18,
        },
    }
    return orjson.dumps(doc) + b"\n"


def _chunk(delta: dict[str, object], finish: str | None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench0000000000000000000000001",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def stream_body(events: int = STREAM_EVENTS) -> bytes:
    """An OpenAI SSE stream: ``events`` content chunks, a stop chunk, a usage chunk, [DONE].

    The first content chunk also carries ``role`` (as OpenAI does), so exactly
    ``events`` chunks have a non-empty ``delta.content``.
    """
    out: list[bytes] = []
    for i in range(events):
        delta: dict[str, object] = {"content": WORDS[i % len(WORDS)]}
        if i == 0:
            delta["role"] = "assistant"
        out.append(b"data: " + orjson.dumps(_chunk(delta, None)) + b"\n\n")
    out.append(b"data: " + orjson.dumps(_chunk({}, "stop")) + b"\n\n")
    usage = _chunk({}, None)
    usage["choices"] = []
    usage["usage"] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": events,
        "total_tokens": PROMPT_TOKENS + events,
    }
    out.append(b"data: " + orjson.dumps(usage) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def anthropic_plain_body() -> bytes:
    """A realistic non-streamed Anthropic Messages reply (``type: message``)."""
    doc = {
        "id": "msg_01Bench000000000000000000",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": PROMPT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 9,
            "service_tier": "standard",
        },
    }
    return orjson.dumps(doc) + b"\n"


def _sse(name: str, data: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream_body(events: int = STREAM_EVENTS) -> bytes:
    """An Anthropic Messages SSE stream in the API's exact sequence (tests/fakes/anthropic_wire.py):
    message_start (input usage), content_block_start, ping, ``events`` text deltas,
    content_block_stop, message_delta (stop reason, usage), message_stop; no ``[DONE]``."""
    used = {
        "input_tokens": PROMPT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message: dict[str, object] = {
        "id": "msg_01Bench000000000000000001",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": used,
    }
    out = [
        _sse("message_start", {"type": "message_start", "message": message}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _sse("ping", {"type": "ping"}),
    ]
    for i in range(events):
        delta = {"type": "text_delta", "text": WORDS[i % len(WORDS)]}
        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    final = {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": events}
    delta_end = {"stop_reason": "end_turn", "stop_sequence": None}
    out.append(_sse("message_delta", {"type": "message_delta", "delta": delta_end, "usage": final}))
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


GEMINI_MODEL = "gemini-2.5-flash"


def gemini_plain_body() -> bytes:
    """A realistic non-streamed Gemini ``generateContent`` reply (tests/fakes/gemini_wire.py)."""
    doc = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Hello! How can I help you today?"}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": 9, "totalTokenCount": PROMPT_TOKENS + 9},
        "modelVersion": GEMINI_MODEL,
        "responseId": "bench-gemini-0",
    }
    return orjson.dumps(doc) + b"\n"


def gemini_stream_body(events: int = STREAM_EVENTS) -> bytes:
    """A ``streamGenerateContent?alt=sse`` stream: ``events`` chunks of one text part each, every one
    with the running usage, the last with the finishReason (Gemini sends no ``[DONE]``)."""
    out = []
    for i in range(events):
        candidate: dict[str, object] = {"content": {"role": "model", "parts": [{"text": WORDS[i % len(WORDS)]}]}, "index": 0}
        if i == events - 1:
            candidate["finishReason"] = "STOP"
        usage = {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": i + 1, "totalTokenCount": PROMPT_TOKENS + i + 1}
        chunk = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": GEMINI_MODEL, "responseId": "bench-gemini-1"}
        out.append(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
    return b"".join(out)


# The Responses request the gateway sends upstream on the diagonal (the ids of the reply derive from it).
RESPONSES_REQUEST: dict[str, object] = {"model": MODEL, "input": [{"role": "user", "content": "Say hello"}]}


def responses_plain_body() -> bytes:
    """A non-streamed OpenAI Responses reply (``object: response``) as tests/fakes/openai_responses_wire.py
    builds it: one assistant message with one output_text part, the request's settings echoed, usage."""
    use = responses_wire.usage(PROMPT_TOKENS, 9)
    whole = responses_wire.reply(RESPONSES_REQUEST, Behaviour(usage=use), "Hello! How can I help you today?", CREATED)
    return orjson.dumps(whole) + b"\n"


def responses_stream_body(events: int = STREAM_EVENTS) -> bytes:
    """A Responses SSE stream in the API's sequence (tests/fakes/openai_responses_wire.py):
    response.created, response.in_progress, output_item.added, content_part.added, ``events``
    response.output_text.delta (each with its ``obfuscation`` pad), output_text.done,
    content_part.done, output_item.done, response.completed (with usage); no ``[DONE]``."""
    payload = {**RESPONSES_REQUEST, "stream": True}
    text = "".join(WORDS[i % len(WORDS)] for i in range(events))  # longer than `events` characters: no delta is empty
    behaviour = Behaviour(chunks=events, usage=responses_wire.usage(PROMPT_TOKENS, events))
    whole = responses_wire.reply(payload, behaviour, text, CREATED)
    return b"".join(responses_wire.stream_events(payload, whole, behaviour))


# What the mock serves: (URL prefix, file under it, body, content type). The Anthropic prefixes are
# an anthropic provider's base_url (its transport adds /v1/messages), the Gemini ones a gemini
# provider's (its transport adds /v1beta/models/{model}:generateContent; the ?alt=sse of a stream is
# not part of the file's name), the Responses ones an openai provider's with ``responses: true`` (its
# transport adds /responses).
MOCK_FILES = (
    ("plain", "v1/chat/completions", plain_body, "application/json"),
    ("stream", "v1/chat/completions", stream_body, "text/event-stream"),
    ("anthropic-plain", "v1/messages", anthropic_plain_body, "application/json"),
    ("anthropic-stream", "v1/messages", anthropic_stream_body, "text/event-stream"),
    ("gemini-plain", f"v1beta/models/{GEMINI_MODEL}:generateContent", gemini_plain_body, "application/json"),
    ("gemini-stream", f"v1beta/models/{GEMINI_MODEL}:streamGenerateContent", gemini_stream_body, "text/event-stream"),
    ("responses-plain", "v1/responses", responses_plain_body, "application/json"),
    ("responses-stream", "v1/responses", responses_stream_body, "text/event-stream"),
)


def _common(prefix: Path) -> str:
    """Directives shared by both nginx instances; every path lives in ``prefix``."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
    )


def _http_common(prefix: Path) -> str:
    temps = "".join(f"  {kind}_temp_path {prefix}/tmp_{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        "  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n"
        "  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n"
        "  server_tokens off;\n" + temps
    )


def write_mock(prefix: Path, port: int) -> Path:
    """Write the mock's files and config under ``prefix``; return the config path."""
    www = prefix / "www"
    locations = ""
    for kind, name, body, ctype in MOCK_FILES:
        path = www / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body())
        extra = "      add_header Cache-Control no-cache;\n" if ctype == "text/event-stream" else ""
        locations += (
            f"    location /{kind}/ {{\n      types {{ }}\n      default_type {ctype};\n{extra}      error_page 405 =200 $uri;\n    }}\n"
        )
    conf = (
        _common(prefix)
        + "http {\n"
        + _http_common(prefix)
        + f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    root {www};\n"
        + locations
        + "  }\n}\n"
    )
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def write_proxy(prefix: Path, port: int, upstream_port: int) -> Path:
    """Write a plain nginx reverse-proxy config (the floor) forwarding to the mock."""
    conf = (
        _common(prefix)
        + "http {\n"
        + _http_common(prefix)
        + (
            f"  upstream mock {{\n    server 127.0.0.1:{upstream_port};\n    keepalive 256;\n  }}\n"
            f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n"
            "    location / {\n      proxy_pass http://mock;\n      proxy_http_version 1.1;\n"
            '      proxy_set_header Connection "";\n      proxy_buffering off;\n'
            "      proxy_request_buffering off;\n    }\n  }\n}\n"
        )
    )
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def nginx_cmd(nginx: str, prefix: Path, conf: Path) -> list[str]:
    """Command line for a foreground nginx using only files under ``prefix``."""
    return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
