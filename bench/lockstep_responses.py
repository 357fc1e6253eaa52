"""The lockstep pair of ``bench.lockstep`` speaking OpenAI Responses: an upstream of
``POST /v1/responses`` (an openai provider with ``responses: true``) and a Responses client that
move in lockstep, so the Responses diagonal is counted in the same deterministic pieces as the
Chat one: every SSE event in its own write, each released only after the client received the
previous one (the gateway passes a Responses stream on as bytes, so no event is hidden).
The reply and the events are those of ``tests.fakes.openai_responses_wire``.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any

import orjson

from bench.lockstep import WAIT, LockstepUpstream, in_step
from tests.fakes import openai_responses_wire as wire
from tests.fakes import openai_wire

CREATED = 1_730_000_000  # a fixed clock: the same bytes on every run
HEADERS = {"content-type": "application/json"}


def _behaviour(chunks: int) -> openai_wire.Behaviour:
    return openai_wire.Behaviour(chunks=chunks)


def events(payload: dict[str, Any], chunks: int) -> list[bytes]:
    """The SSE events of one stream: created, in_progress, the message's item and part added,
    ``chunks`` text deltas, text and part and item done, completed."""
    whole = wire.reply(payload, _behaviour(chunks), openai_wire.DEFAULT_REPLY, CREATED)
    return wire.stream_events(payload, whole, _behaviour(chunks))


class ResponsesLockstepUpstream(LockstepUpstream):
    """An OpenAI upstream on 127.0.0.1 that answers ``POST /v1/responses``."""

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if payload.get("stream") is not True:
            body = orjson.dumps(wire.reply(payload, _behaviour(self.chunks), openai_wire.DEFAULT_REPLY, CREATED))
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)  # one write: headers and body
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in [*events(payload, self.chunks), b""]:
            if not self.go.acquire(timeout=WAIT):
                raise TimeoutError("the lockstep client stopped releasing the upstream")
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"0\r\n\r\n")


def as_responses(body: dict[str, Any]) -> dict[str, Any]:
    """The chat body of ``bench.callcount`` as a Responses request: the messages as ``input``."""
    return {"model": body["model"], "input": body["messages"], "stream": body.get("stream") is True}


def visible_events(body: dict[str, Any], chunks: int) -> int:
    return len(events(as_responses(body), chunks))


def send(conn: http.client.HTTPConnection, upstream: LockstepUpstream, body: dict[str, Any], headers: dict[str, str]) -> int:
    """One /v1/responses request. For a stream, each SSE event the client receives releases the next one."""
    body = as_responses(body)
    conn.request("POST", "/v1/responses", body=orjson.dumps(body), headers={**headers, **HEADERS})
    response = conn.getresponse()
    if body["stream"] is not True:
        response.read()
        return response.status
    return in_step(response, upstream, len(events(body, upstream.chunks)))
