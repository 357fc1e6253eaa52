"""Lockstep upstreams of the providers no client speaks: Gemini (``generateContent``, SSE streams
of ``streamGenerateContent?alt=sse``) and Bedrock (``converse``, binary event-stream frames of
``converse-stream``), for ``bench.lockstep_translated``'s grouped writes: each group ends with an
event the gateway answers with at least one client event, so the gateway reads every group in one
piece on every run. Whether a request is a stream is in its URL here, not its body.
"""

from __future__ import annotations

import socket
from typing import Any

import orjson

from bench.lockstep import LockstepUpstream
from bench.lockstep_translated import _Grouped
from faregate.providers import bedrock
from tests.fakes import bedrock_wire, gemini_wire

GEMINI_MODEL = "gemini-2.5-flash"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"


def _plain(conn: socket.socket, data: dict[str, Any]) -> None:
    body = orjson.dumps(data)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


def _words(chunks: int) -> str:
    return " ".join(["Hello"] * chunks)


class GeminiUpstream(_Grouped, LockstepUpstream):
    """A Gemini upstream (its URL is the root: the transport adds /v1beta/models/...)."""

    framing = "gemini"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _behaviour(self) -> gemini_wire.Behaviour:
        return gemini_wire.Behaviour(reply_text=_words(self.chunks), chunks=self.chunks)

    def upstream_events(self, payload: dict[str, Any]) -> list[bytes]:
        behaviour = self._behaviour()
        parts = gemini_wire.reply_parts(behaviour, "")
        return gemini_wire.stream_chunks(GEMINI_MODEL, parts, behaviour, gemini_wire.count_usage(payload, parts, behaviour))

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if b":streamGenerateContent" not in self.target:
            behaviour = self._behaviour()
            parts = gemini_wire.reply_parts(behaviour, "")
            _plain(conn, gemini_wire.response(GEMINI_MODEL, parts, behaviour, gemini_wire.count_usage(payload, parts, behaviour)))
            return
        self.write_stream(conn, payload, self.go, "gemini")


class BedrockUpstream(_Grouped, LockstepUpstream):
    """A Bedrock runtime upstream (Converse and ConverseStream); it checks no signature."""

    framing = "bedrock"
    content_type = b"application/vnd.amazon.eventstream"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_events(self, payload: dict[str, Any]) -> list[bytes]:
        """messageStart, ``chunks`` text deltas, the block's stop, messageStop, metadata: one frame each."""
        deltas = [bedrock_wire.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello "}})] * self.chunks
        return [
            bedrock_wire.event("messageStart", {"role": "assistant"}),
            *deltas,
            bedrock_wire.event("contentBlockStop", {"contentBlockIndex": 0}),
            bedrock_wire.event("messageStop", {"stopReason": "end_turn"}),
            bedrock_wire.event("metadata", {"usage": {"inputTokens": 12, "outputTokens": self.chunks, "totalTokens": 12 + self.chunks}}),
        ]

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        if not self.target.endswith(b"/converse-stream"):
            _plain(conn, bedrock_wire.converse_reply(bedrock_wire.Script(text=_words(self.chunks))))
            return
        self.write_stream(conn, payload, self.go, "bedrock")


def frames_as_events(frame: bytes) -> list[bytes]:
    """What the gateway's bedrock framing makes of one frame: the SSE event its codec reads."""
    return bedrock.Framing().feed(frame)
