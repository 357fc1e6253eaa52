"""Connection-level limits: uvicorn's httptools protocol with timeouts, a head size limit and a
connection cap, so slow, idle or oversized clients cannot hold a worker's sockets.

``faregate serve`` names :class:`GuardedProtocol` as uvicorn's ``http`` class. Its limits come
from the config each worker loads at start (the app puts them in the lifespan state, which uvicorn
hands to every connection), so every worker process has them, and a reload does not change them.

Per connection, one timer at a time:

- from ``connection_made``, and from the first byte after an idle keep-alive period, until the
  request's headers are complete: ``header_timeout``. It is cancelled when the headers are complete,
  so it never covers a body upload or a response (a streamed one may run for minutes).
- after a response, while idle: uvicorn's keep-alive timer (``keep_alive_timeout``).
- while a body is read: ``body_timeout`` between bytes (not while uvicorn itself stops reading
  because the app has not taken the body yet).

The head (request line and headers) is counted twice: exactly, as httptools hands over the URL and
each header, and, for a head still incomplete after a read, by the bytes read, because httptools
buffers a header value until it ends (a 16 MiB value would otherwise be held whole before any
callback). Refusals are answered in the OpenAI error format and the connection is closed.

Per request this adds two Python calls (``on_message_begin`` and ``on_headers_complete`` wrap
uvicorn's); ``data_received``, ``on_url`` and ``on_header`` replace uvicorn's at no extra call.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from faregate.config.schema import ServerConfig
from faregate.errors import FaregateError, HeadersTooLarge, RequestTimeout, TooManyConnections
from faregate.server.http import error_shape

log = logging.getLogger("faregate.server")

STATE_KEY = "faregate.connection_limits"  # where the app leaves its limits in the lifespan state
FD_HEADROOM = 64  # files a worker keeps open besides connections: logs, databases, the bus, metrics


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    keep_alive_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int
    max_headers: int

    @classmethod
    def of(cls, server: ServerConfig) -> ConnectionLimits:
        return cls(
            server.header_timeout,
            server.keep_alive_timeout,
            server.body_timeout,
            server.max_connections or default_max_connections(),
            server.max_header_bytes,
            server.max_headers,
        )


def default_max_connections() -> int:
    """Half of what this process may open (``ulimit -n``): each client connection in flight may hold
    an upstream connection too, and the cap must bite before accept() fails for want of a file."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - FD_HEADROOM) // 2)


def refusal(error: FaregateError, path: bytes = b"") -> bytes:
    """A whole response that closes the connection, written without the app: in the error shape of
    the route the request line named (Anthropic's on /v1/messages), OpenAI's before one arrived."""
    encode = error_shape(path.partition(b"?")[0].decode("latin-1"))
    body = error.openai_body() if encode is None else encode(error)
    head = (
        f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
    )
    extra = "".join(f"{name.decode()}: {value.decode()}\r\n" for name, value in error.headers())
    return f"{head}{extra}\r\n".encode() + body


DEFAULTS = ConnectionLimits.of(ServerConfig())  # for an app that does not state its limits


class _Refused(Exception):
    """Raised inside a parser callback to stop httptools; data_received answers with the error."""


class GuardedProtocol(HttpToolsProtocol):
    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = app_state.get(STATE_KEY)
        self.limits: ConnectionLimits = limits if isinstance(limits, ConnectionLimits) else DEFAULTS
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]  # uvicorn says int; call_later takes float
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a request's first byte arrived; its headers are not complete yet
        self._head_size = 0  # URL and header bytes httptools handed over for that request
        self._head_read = 0  # bytes read while its head stayed incomplete
        self._received = 0  # bytes read on this connection (the body timer's sign of progress)
        self._body_mark = 0
        self._refusal: FaregateError | None = None

    # connection ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning(
                "connection from %s refused: this worker holds %d connections (server.max_connections)",
                self.client,
                self.limits.max_connections,
            )
            self._refuse(
                TooManyConnections(
                    f"this gateway worker already holds {self.limits.max_connections} connections (server.max_connections); retry shortly"
                )
            )
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        idle = self.timeout_keep_alive_task
        if idle is not None:  # the first bytes after an idle keep-alive period: a new head has begun
            idle.cancel()
            self.timeout_keep_alive_task = None
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        self._received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSockets here: the request was dispatched as plain HTTP (as uvicorn does without a WebSocket library)
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head:
            self._head_read += len(data)  # all of this read is head, unless an earlier request ended in it (pipelining)
            if self._head_read > self.limits.max_header_bytes:
                self._refuse(self._too_large())
        elif self._body_timer is None and (cycle := self.cycle) is not None and cycle.more_body and not cycle.response_complete:
            self._body_mark = self._received
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_stalled)

    # parser callbacks ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._head_read = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_size += len(url)
        if self._head_size > self.limits.max_header_bytes:
            self._refusal = self._too_large()
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_size > self.limits.max_header_bytes or len(self.headers) >= self.limits.max_headers:
            self._refusal = self._too_large()
            raise _Refused
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:  # still set from the previous request's body: this body gets a timer of its own
            self._body_timer.cancel()
            self._body_timer = None
        super().on_headers_complete()

    # timers and refusals ---------------------------------------------------------------------------
    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # never cut a response
        if not self._in_head:  # nothing of a request arrived: close quietly (a 408 could pass for the reply to the next request)
            self.transport.close()
            return
        log.info("request from %s timed out before its headers were complete (server.header_timeout)", self.client)
        self._refuse(
            RequestTimeout(f"the request headers were not complete within {self.limits.header_timeout:g} s (server.header_timeout)")
        )

    def _body_stalled(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body or cycle.response_complete:
            return
        if self._received != self._body_mark or self.flow.read_paused:  # progress, or uvicorn stopped reading for the app
            self._body_mark = self._received
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_stalled)
            return
        log.info("request from %s timed out: its body stalled (server.body_timeout)", self.client)
        if cycle.response_started:
            self.transport.close()
            return
        self._refuse(RequestTimeout(f"no byte of the request body arrived for {self.limits.body_timeout:g} s (server.body_timeout)"))

    def _too_large(self) -> HeadersTooLarge:
        limits = self.limits
        if len(self.headers) >= limits.max_headers:
            message = f"the request has more than {limits.max_headers} headers (server.max_headers)"
        else:
            message = f"the request line and headers exceed {limits.max_header_bytes} bytes (server.max_header_bytes)"
        log.info("request from %s refused: %s", self.client, message)
        return HeadersTooLarge(message)

    def _refuse(self, error: FaregateError) -> None:
        self._stop_timers()
        if not self.transport.is_closing():
            self.transport.write(refusal(error, getattr(self, "url", b"")))  # no url before the first request line
            self.transport.close()

    def _stop_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
