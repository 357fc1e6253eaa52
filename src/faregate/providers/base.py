"""Shared shapes for adapters: the request an adapter builds and the reply a local adapter makes."""

from __future__ import annotations

from dataclasses import dataclass

from faregate.types import Endpoint, Usage

PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class LocalReply:
    """A whole reply produced without I/O: either a body or the SSE events of a stream."""

    status: int
    body: bytes = b""
    events: tuple[bytes, ...] = ()
    content_type: bytes = b"application/json"
    usage: Usage | None = None  # for streams: what the reply cost, whether or not the client asked
