"""The lockstep pairs of ``bench.lockstep`` off the diagonal: a client of one format, an upstream of
the other, so each translated direction is counted in the same deterministic pieces as a diagonal.

On a diagonal every upstream event reaches the client as one event, so the client can release the
upstream's next write as soon as it has the previous event. Translated, some upstream events give
the client nothing (Anthropic's content_block_start and ping, OpenAI's usage-only chunk, a
``message_start`` held until the first content), so the client could not tell that the gateway had
read them. Here the upstream writes its events in groups, each group ending with an event the
gateway answers with at least one client event, and tells the client how many events each group
yields; the client releases the next group only when it has them all. The gateway therefore reads
every group in one piece, on every run. The grouping is worked out by translating the events
once with faregate's own codecs, before the upstream writes anything.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any

import orjson

from bench import lockstep_anthropic
from bench.lockstep import WAIT, LockstepUpstream
from faregate.translate import CLIENT_CODECS, PROVIDER_CODECS, StreamTranslator
from tests.fakes import openai_wire

FORMATS = {  # bench kinds -> codec names
    "openai": "openai_chat",
    "anthropic": "anthropic",
    "responses": "openai_responses",
    "gemini": "gemini",
    "bedrock": "bedrock_converse",
}


def plan(events: list[bytes], upstream: str, client: str, include_usage: bool) -> list[tuple[bytes, int]]:
    """The upstream's events as (bytes of one write, client events the gateway makes of it)."""
    encoder = CLIENT_CODECS[FORMATS[client]].StreamEncoder("m", "id", include_usage=include_usage)
    translator = StreamTranslator(PROVIDER_CODECS[FORMATS[upstream]], encoder, "the end")
    groups: list[tuple[bytes, int]] = []
    pending = b""
    from bench import lockstep_providers  # (it builds on _Grouped, below)

    for event in events:
        pending += event
        fed = lockstep_providers.frames_as_events(event) if upstream == "bedrock" else [event]  # a frame: the event framing reads
        made = translator.feed(fed).count(b"\n\n")
        if made:
            groups.append((pending, made))
            pending = b""
    if pending:  # trailing events that give the client nothing go with the last group
        last, made = groups.pop() if groups else (b"", 0)
        groups.append((last + pending, made))
    return groups


class _Grouped:
    """Mixin for a lockstep upstream: a stream is written in ``plan``'s groups; ``expect`` holds
    the client events of each group of the stream being answered (set before its headers)."""

    client = "openai"
    content_type = b"text/event-stream"
    expect: list[int] = []  # noqa: RUF012 - replaced per stream, never mutated

    def upstream_events(self, payload: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError

    def write_stream(self, conn: socket.socket, payload: dict[str, Any], go: Any, upstream: str) -> None:
        groups = plan(self.upstream_events(payload), upstream, self.client, include_usage=False)
        self.expect = [made for _, made in groups]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        conn.sendall(head % self.content_type)
        for piece in [*(group for group, _ in groups), b""]:
            if not go.acquire(timeout=WAIT):
                raise TimeoutError("the lockstep client stopped releasing the upstream")
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"0\r\n\r\n")


class OpenAIUpstream(_Grouped, LockstepUpstream):
    """An OpenAI upstream for an Anthropic client (the gateway asks it for usage in the stream)."""

    client = "anthropic"

    def upstream_events(self, payload: dict[str, Any]) -> list[bytes]:
        text = openai_wire.DEFAULT_REPLY
        return openai_wire.stream_events(payload, self.chunks, True, text, openai_wire.default_usage(payload, text))

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if payload.get("stream") is not True:
            super()._answer(conn, payload)
            return
        self.write_stream(conn, payload, self.go, "openai")


class AnthropicUpstream(_Grouped, lockstep_anthropic.AnthropicLockstepUpstream):
    """An Anthropic upstream for an OpenAI client."""

    client = "openai"

    def upstream_events(self, payload: dict[str, Any]) -> list[bytes]:
        return lockstep_anthropic.events(payload, self.chunks)

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if payload.get("stream") is not True:
            super()._answer(conn, payload)
            return
        self.write_stream(conn, payload, self.go, "anthropic")


def upstream_for(kind: str, client: str | None = None) -> _Grouped:
    """The lockstep upstream of ``kind`` for a client of another format (``client``: the other of
    openai and anthropic by default; ``responses``: an OpenAI Responses client); ``gemini`` and
    ``bedrock``: bench.lockstep_providers."""
    from bench import lockstep_providers

    upstream: _Grouped
    if kind == "gemini":
        upstream = lockstep_providers.GeminiUpstream()
    elif kind == "bedrock":
        upstream = lockstep_providers.BedrockUpstream()
    else:
        upstream = OpenAIUpstream() if kind == "openai" else AnthropicUpstream()
    if client is not None and client != kind:
        upstream.client = client
    return upstream


def send(conn: http.client.HTTPConnection, upstream: _Grouped, body: dict[str, Any], headers: dict[str, str]) -> int:
    """One request in the client's format (``upstream.client``). For a stream, the client releases
    each group of upstream events once it has every client event the gateway makes of the previous one."""
    if upstream.client == "anthropic":
        path, body, headers = "/v1/messages", {**body, "max_tokens": 256}, {**headers, **lockstep_anthropic.HEADERS}
    elif upstream.client == "responses":  # the same conversation as a Responses body
        path, headers = "/v1/responses", {**headers, "content-type": "application/json"}
        body = {"model": body["model"], "input": body["messages"], "stream": body.get("stream") is True}
    else:
        path, headers = "/v1/chat/completions", {**headers, "content-type": "application/json"}
    conn.request("POST", path, body=orjson.dumps(body), headers=headers)
    response = conn.getresponse()  # the gateway has the upstream's headers (and the upstream its plan)
    if body.get("stream") is not True:
        response.read()
        return response.status
    seen = b""
    wanted = 0
    for made in upstream.expect:
        upstream.go.release()
        wanted += made
        while seen.count(b"\n\n") < wanted:
            data = response.read1(65536)
            if not data:
                raise ConnectionError(f"the stream ended before client event {wanted} of {sum(upstream.expect)}")
            seen += data
    upstream.go.release()  # the chunked end
    response.read()
    return response.status
