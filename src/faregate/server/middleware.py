"""Pure ASGI middleware (never BaseHTTPMiddleware: it breaks streaming and contextvars)."""

from __future__ import annotations

import logging

from faregate.errors import FaregateError, InternalError
from faregate.server.http import Receive, Scope, Send, error_shape, send_error

log = logging.getLogger("faregate.server")


class ErrorGuard:
    """Last line of defence: any exception becomes an error in the client's format (Anthropic's on
    the /v1/messages routes, else OpenAI's), never a traceback.

    A FaregateError that escapes a handler is sent with its own status; anything else is logged
    with its traceback and answered 500. If the response had already started, the server refuses
    a second start (RuntimeError) and closes the connection; ``send`` is not wrapped, so this
    costs nothing per message on the hot path.
    """

    def __init__(self, app: object) -> None:
        if not callable(app):
            raise TypeError("ErrorGuard wraps an ASGI app")
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except FaregateError as err:
            await _try_send(send, err, scope)
        except Exception:
            log.exception("unhandled error while serving %s %s", scope.get("method"), scope.get("path"))
            if not await _try_send(send, InternalError("internal error in faregate; the server log has the details"), scope):
                raise


async def _try_send(send: Send, error: FaregateError, scope: Scope) -> bool:
    """Send the error if no response has started; False when one had (the server then drops the connection)."""
    try:
        await send_error(send, error, [], error_shape(scope.get("path", "")))
    except RuntimeError:
        return False
    return True
