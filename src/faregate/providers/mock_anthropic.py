"""The mock provider's Anthropic Messages side: the replies a client of ``/v1/messages`` gets from
a ``type: mock`` deployment, in Anthropic's wire format (the mock is local, so both formats are
its diagonal).

A whole reply is a ``message`` object; a stream is Anthropic's exact event sequence:
``message_start`` (with the input usage), ``content_block_start``, one ``ping``,
``content_block_delta`` (``text_delta``) x ``stream_chunks``, ``content_block_stop``,
``message_delta`` (stop reason and output usage), ``message_stop``. ``count_tokens`` answers an
estimate (about 4 bytes of JSON per token of system, messages and tools). Deterministic.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from faregate.generation import Deployment
from faregate.providers.base import LocalReply
from faregate.types import Endpoint, Usage

SSE = b"text/event-stream; charset=utf-8"
CUT = "stream-cut"  # as in mock.py: a stream that stops halfway, without its end


def input_tokens(payload: dict[str, Any]) -> int:
    """The estimate ``count_tokens`` answers and the input usage a mock reply reports."""
    counted = [payload.get("system") or "", payload.get("messages") or [], payload.get("tools") or []]
    return max(1, len(orjson.dumps(counted)) // 4)


def answer(endpoint: Endpoint, deployment: Deployment, payload: dict[str, Any]) -> LocalReply:
    tokens = input_tokens(payload)
    if endpoint == "count_tokens":
        return LocalReply(200, body=orjson.dumps({"input_tokens": tokens}))
    text = reply_text(payload)
    output = len(text.split())
    mid = "msg_mock" + hashlib.sha256(text.encode()).hexdigest()[:20]
    spent = Usage(prompt_tokens=tokens, completion_tokens=output)
    if payload.get("stream") is True:
        return LocalReply(200, events=_events(mid, deployment, text, tokens, output), content_type=SSE, usage=spent)
    body = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": deployment.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _usage(tokens, output),
    }
    return LocalReply(200, body=orjson.dumps(body), usage=spent)


def reply_text(payload: dict[str, Any]) -> str:
    """An echo of the last user turn's text (a string, or its text blocks)."""
    prompt = ""
    for message in reversed(payload.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            prompt = content
        elif isinstance(content, list):
            prompt = " ".join(
                b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            )
        break
    words = prompt.split()
    echo = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    return f"This is the faregate mock provider answering: {echo}".strip()


def _usage(tokens: int, output: int) -> dict[str, int]:
    return {"input_tokens": tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _events(mid: str, deployment: Deployment, text: str, tokens: int, output: int) -> tuple[bytes, ...]:
    n = deployment.provider.stream_chunks
    words = text.split(" ")
    size = max(1, -(-len(words) // n))
    pieces = [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]
    pieces += [""] * (n - len(pieces))  # always exactly n delta events
    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": deployment.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(tokens, 1),
    }
    head = [
        _event("message_start", {"type": "message_start", "message": message}),
        _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _event("ping", {"type": "ping"}),
    ]
    deltas = [
        _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in pieces
    ]
    if CUT in deployment.model:
        return (*head, *deltas[: max(1, n // 2)])
    tail = [
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": output}},
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return (*head, *deltas, *tail)
