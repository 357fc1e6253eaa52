"""Small ASGI helpers: read a bounded body, find headers, send whole responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from faregate.errors import BodyTooLarge, FaregateError, InvalidRequest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes (server.max_body_bytes)")
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes (server.max_body_bytes)")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, content_type: bytes, headers: Headers = ()) -> None:  # type: ignore[assignment]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


ErrorEncoder = Callable[[FaregateError], bytes]  # the client format's error body: FaregateError.openai_body | anthropic_body
ANTHROPIC_PATHS = ("/v1/messages", "/messages")  # errors on these are in Anthropic's shape, also before or outside a handler


def error_shape(path: str) -> ErrorEncoder | None:
    """The error encoder for a request path, where no handler chose one (routing, the ErrorGuard)."""
    return FaregateError.anthropic_body if path.startswith(ANTHROPIC_PATHS) else None


async def send_error(send: Send, error: FaregateError, headers: Headers = (), encode: ErrorEncoder | None = None) -> None:  # type: ignore[assignment]
    body = error.openai_body() if encode is None else encode(error)
    await send_bytes(send, error.status, body, b"application/json", [*headers, *error.headers()])
