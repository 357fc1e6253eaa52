"""The lockstep pair of ``bench.lockstep`` speaking Anthropic Messages: an Anthropic upstream and a
client of ``/v1/messages`` that move in lockstep, so the Anthropic diagonal is counted in the same
deterministic pieces as the OpenAI one (every SSE event in its own write, each released only after
the client received the previous one; no event is hidden on this diagonal).
"""

from __future__ import annotations

import http.client
import socket
from typing import Any

import orjson

from bench.lockstep import WAIT, LockstepUpstream, in_step
from tests.fakes import anthropic_wire as wire

HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def _content(chunks: int) -> list[dict[str, Any]]:
    return [wire.text(" ".join(["Hello"] * chunks))]  # one word per delta: `chunks` content events


def _reply(payload: dict[str, Any], chunks: int) -> dict[str, Any]:
    content = _content(chunks)
    return wire.message(payload, content, wire.Behaviour(), wire.reply_usage(payload, content, wire.Behaviour()))


def events(payload: dict[str, Any], chunks: int) -> list[bytes]:
    """The SSE events of one stream: message_start, the block's start, a ping, ``chunks`` deltas,
    its stop, message_delta and message_stop."""
    return [event for _, event in wire.stream_events(_reply(payload, chunks), chunks)]


class AnthropicLockstepUpstream(LockstepUpstream):
    """An Anthropic upstream on 127.0.0.1 (its URL is the root, without /v1)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if payload.get("stream") is not True:
            body = orjson.dumps(_reply(payload, self.chunks))
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)  # one write: headers and body
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in [*events(payload, self.chunks), b""]:
            if not self.go.acquire(timeout=WAIT):
                raise TimeoutError("the lockstep client stopped releasing the upstream")
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"0\r\n\r\n")


def visible_events(body: dict[str, Any], chunks: int) -> int:
    return len(events(body, chunks))


def send(conn: http.client.HTTPConnection, upstream: LockstepUpstream, body: dict[str, Any], headers: dict[str, str]) -> int:
    """One /v1/messages request. For a stream, each SSE event the client receives releases the next one."""
    body = {**body, "max_tokens": 256}
    conn.request("POST", "/v1/messages", body=orjson.dumps(body), headers={**headers, **HEADERS})
    response = conn.getresponse()
    if body.get("stream") is not True:
        response.read()
        return response.status
    return in_step(response, upstream, visible_events(body, upstream.chunks))
