"""Blocking HTTP helpers (stdlib only): readiness polling and reply correctness checks."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

import orjson

from bench.mock import STREAM_EVENTS


def post(port: int, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, bytes]:
    """POST to 127.0.0.1:port and return (status, full body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_plain(status: int, body: bytes, client: str = "openai") -> str | None:
    """None if the reply is a 200 chat.completion with choices (an Anthropic client: a message
    with content; a Responses client: a response with output), else a reason."""
    if status != 200:
        return f"status {status}: {body[:300]!r}"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:300]!r}"
    field = {"anthropic": "content", "responses": "output"}.get(client, "choices")
    if not isinstance(doc, dict) or not doc.get(field):
        return f"no {field}: {body[:300]!r}"
    return None


def count_stream(body: bytes, client: str = "openai") -> tuple[int, bool]:
    """(content events, saw [DONE]) in an SSE body, counting ``data:`` lines with content. An
    Anthropic stream: (text deltas with text, saw message_stop); a Responses stream:
    (response.output_text.delta events with text, saw response.completed)."""
    if client == "anthropic":
        return _count_typed(body, "message_stop", "content_block_delta")
    if client == "responses":
        return _count_typed(body, "response.completed", "response.output_text.delta")
    content = 0
    done = False
    for line in body.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            continue
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        choices = doc.get("choices") if isinstance(doc, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and delta.get("content"):
                content += 1
                break
    return content, done


def _count_typed(body: bytes, end: str, delta_type: str) -> tuple[int, bool]:
    """Events whose data names its ``type`` (Anthropic, Responses): text deltas with text, and the end."""
    content = 0
    done = False
    for line in body.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        try:
            doc = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == end:
            done = True
        elif kind == delta_type:
            delta = doc.get("delta")
            text = delta.get("text") if isinstance(delta, dict) and delta.get("type") == "text_delta" else delta  # Responses: a string
            if isinstance(text, str) and text:
                content += 1
    return content, done


def check_stream(status: int, body: bytes, client: str = "openai") -> str | None:
    """None if the stream is 200 with all content events and its end ([DONE]; message_stop), else a reason."""
    if status != 200:
        return f"status {status}: {body[:300]!r}"
    content, done = count_stream(body, client)
    if content != STREAM_EVENTS or not done:
        return f"{content}/{STREAM_EVENTS} content events, [DONE]={done}: {body[:300]!r}"
    return None


def wait_ready(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    alive: Callable[[], bool] | None = None,
    client: str = "openai",
) -> tuple[bool, str]:
    """Poll until a plain POST succeeds; return (ok, last error)."""
    deadline = time.monotonic() + timeout
    last = "not tried"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False, f"process exited; last error: {last}"
        try:
            status, reply = post(port, path, body, headers, timeout=2.0)
            last = check_plain(status, reply, client) or ""
            if not last:
                return True, ""
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.02)
    return False, f"timed out after {timeout:.0f}s; last error: {last}"
