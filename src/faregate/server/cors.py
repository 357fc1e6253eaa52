"""CORS for browser clients (``server.cors``), as a plain ASGI middleware.

Installed only when the config faregate starts with sets ``server.cors``; otherwise the app is not
wrapped at all and CORS costs nothing. While installed it reads the current generation's setting
per request, so a reload may change the origins or switch CORS off at once; switching it on in a
process that started without it needs a restart (the reload says so in its warnings).

* A request without ``Origin``, or from an origin not listed, passes through untouched: no CORS
  headers, so the browser refuses to show the answer to the page.
* A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before
  authentication, as browsers send no credentials on it: 204 with the allowed methods and headers
  for a listed origin, 403 ``origin_not_allowed`` in the OpenAI error format for any other.
* An actual response to a listed origin carries ``Access-Control-Allow-Origin`` (the origin
  itself, or ``*`` when every origin is allowed without credentials) and exposes faregate's
  ``x-*`` headers, ``retry-after`` and ``openai-*`` to the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from faregate.config.schema import CorsConfig
from faregate.errors import PermissionDenied
from faregate.server.http import ASGIApp, Headers, Message, Receive, Scope, Send, header, send_error

METHODS = b"GET, HEAD, POST, PATCH, DELETE, OPTIONS"
# what the OpenAI and Anthropic SDKs send; used when a preflight does not list its headers
HEADERS = b"authorization, content-type, x-api-key, anthropic-version, anthropic-beta, openai-beta, openai-organization, openai-project"
REQUEST_HEADERS = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~, -]{1,2048}")  # header names, commas and spaces only
ORIGIN_NOT_ALLOWED = "origin_not_allowed"


class Cors:
    def __init__(self, app: ASGIApp, current: Callable[[], CorsConfig | None]) -> None:
        if not callable(app) or not callable(current):
            raise TypeError("Cors wraps an ASGI app and reads the current CORS setting from a callable")
        self.app = app
        self.current = current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin") if scope["type"] == "http" else None
        config = self.current() if origin is not None else None
        if origin is None or config is None:
            await self.app(scope, receive, send)
            return
        allowed = config.origins == ["*"] or origin.decode("latin-1") in config.origins
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method") is not None:
            await _preflight(scope, send, origin, config, allowed)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _with_cors(send, _allow(origin, config)))


def _allow(origin: bytes, config: CorsConfig) -> Headers:
    """The headers that let the page at ``origin`` read an answer."""
    if config.origins == ["*"] and not config.allow_credentials:
        return [(b"access-control-allow-origin", b"*")]
    headers = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
    if config.allow_credentials:
        headers.append((b"access-control-allow-credentials", b"true"))
    return headers


async def _preflight(scope: Scope, send: Send, origin: bytes, config: CorsConfig, allowed: bool) -> None:
    if not allowed:
        refused = PermissionDenied(f"the origin {origin.decode('latin-1')[:200]!r} is not in server.cors.origins", code=ORIGIN_NOT_ALLOWED)
        await send_error(send, refused, [(b"vary", b"Origin")])
        return
    asked = header(scope, b"access-control-request-headers")
    headers = _allow(origin, config)
    headers += [
        (b"access-control-allow-methods", METHODS),
        (b"access-control-allow-headers", asked if asked is not None and REQUEST_HEADERS.fullmatch(asked) else HEADERS),
        (b"access-control-max-age", str(config.max_age).encode()),
        (b"vary", b"Access-Control-Request-Headers"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, allow: Headers) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = sorted({name.lower() for name, _ in message["headers"] if _exposed(name.lower())})
            extra = [(b"access-control-expose-headers", b", ".join(names))] if names else []
            message = {**message, "headers": [*message["headers"], *allow, *extra]}
        await send(message)

    return send_with_cors


def _exposed(name: bytes) -> bool:
    return name.startswith((b"x-", b"openai-")) or name == b"retry-after"
