"""A lean HTTP/1.1 client for the one job faregate needs: POST a body to a provider over a pooled
keep-alive connection and pass the reply's bytes on as they arrive.

Why not aiohttp or httpx: measured with ``python -m bench.callcount``, aiohttp spent ~136 Python
calls per proxied request, more than faregate and uvicorn together (see bench/README.md). This
client is an ``asyncio.Protocol`` over ``httptools`` (the C parser uvicorn uses): one write per
request, body bytes handed over as they arrive, connections reused per origin.

Scope, deliberately small: HTTP/1.1 over TCP or TLS; ``Content-Length``, chunked and
read-until-close replies; no redirects (a provider that redirects is an error), no compression
(we ask for ``identity`` so bytes pass through untouched), no proxies. Errors are ``Http1Error``,
``OSError`` or ``TimeoutError``; ``faregate.upstream`` maps them to faregate's errors.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_SECONDS = 20.0  # a pooled connection idle longer than this is closed rather than reused
HIGH_WATER = 1 << 20  # stop reading from the socket while this many reply bytes wait unread


class Http1Error(Exception):
    """The peer broke the protocol or the connection ended early."""


class ConnectionLost(Http1Error):
    """The connection closed before the reply was complete."""

    def __init__(self, message: str, *, before_reply: bool) -> None:
        super().__init__(message)
        self.before_reply = before_reply


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


_ORIGINS: dict[str, tuple[Origin, bytes]] = {}


def split_url(url: str) -> tuple[Origin, bytes]:
    """(origin, request target) for a URL; parsed once per distinct URL."""
    cached = _ORIGINS.get(url)
    if cached is not None:
        return cached
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Http1Error(f"unsupported upstream URL {url!r}: only http:// and https:// are supported")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if port == default else f"{shown}:{port}").encode("idna")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    result = (Origin(parts.scheme, host, port, host_header), target.encode())
    if len(_ORIGINS) < 4096:
        _ORIGINS[url] = result
    return result


class Connection(asyncio.Protocol):
    """One TCP/TLS connection carrying one request at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = time.monotonic()
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: Http1Error | None = None
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.received_any = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Http1Error(f"malformed HTTP reply: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.complete:
            return
        if self.headers_done and "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", ""):
            self.complete = True  # a reply delimited by the end of the connection
            self._wake()
            return
        where = (
            "before the reply"
            if not self.received_any
            else ("before the headers ended" if not self.headers_done else "in the middle of the reply body")
        )
        self._fail(ConnectionLost(f"connection closed {where}", before_reply=not self.received_any))

    # httptools callbacks ------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name:
            self._header_name = name.lower()
        key = self._header_name.decode("latin-1")
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else previous + ", " + text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful inside a callback
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # consumer side ------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Http1Error) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    async def wait(self, timeout: float) -> None:
        """Until something new happens (headers, body bytes, completion, error); TimeoutError after
        ``timeout`` seconds of nothing. Cancel-safe: nothing is consumed here."""
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """Every body byte received so far."""
        if not self.body:
            return b""
        data = self.body.popleft() if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        return data

    def send(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self._reset()
        self.transport.writelines((head, body))

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and time.monotonic() - self.idle_since < IDLE_SECONDS

    @property
    def reusable(self) -> bool:
        return self.complete and self.error is None and self.keep_alive and self.transport is not None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def checkout(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self, origin: Origin, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(origin),
                origin.host,
                origin.port,
                ssl=self._ssl_context() if origin.tls else None,
                server_hostname=origin.host if origin.tls else None,
            )
        return conn

    def release(self, conn: Connection) -> None:
        """Back to the pool if the reply was read to its end on a keep-alive connection, else closed."""
        if conn.reusable and not self.closed:
            conn.idle_since = time.monotonic()
            conn.reused = False
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def request_head(method: str, target: bytes, origin: Origin, headers: dict[str, str], length: int) -> bytes:
    lines = [f"{method} ".encode() + target + b" HTTP/1.1", b"host: " + origin.host_header, b"content-length: " + str(length).encode()]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise Http1Error(f"header {name!r} contains a line break")
        try:
            lines.append(f"{name}: {value}".encode("latin-1"))
        except UnicodeEncodeError:
            raise Http1Error(f"header {name!r} has characters that HTTP headers cannot carry") from None
    lines.append(b"accept-encoding: identity")
    return b"\r\n".join(lines) + b"\r\n\r\n"
