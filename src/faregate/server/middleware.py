"""Pure ASGI middleware (never BaseHTTPMiddleware: it breaks streaming and contextvars)."""

from __future__ import annotations

import logging

from faregate.errors import FaregateError, InternalError
from faregate.server.http import Message, Receive, Scope, Send, send_error

log = logging.getLogger("faregate.server")


class ErrorGuard:
    """Last line of defence: any exception becomes an OpenAI-format error, never a traceback.

    A FaregateError that escapes a handler is sent with its own status; anything else is logged
    with its traceback and answered 500. If the response had started, the connection is closed.
    """

    def __init__(self, app: object) -> None:
        if not callable(app):
            raise TypeError("ErrorGuard wraps an ASGI app")
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except FaregateError as err:
            if not started:
                await send_error(send, err)
        except Exception:
            log.exception("unhandled error while serving %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_error(send, InternalError("internal error in faregate; the server log has the details"))
            else:
                raise
