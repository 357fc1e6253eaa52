"""A lean HTTP/1.1 client for the one job faregate needs: POST a body to a provider over a pooled
keep-alive connection and pass the reply's bytes on as they arrive.

Why not aiohttp or httpx: measured with ``python -m bench.callcount``, aiohttp spent ~136 Python
calls per proxied request, more than faregate and uvicorn together (see bench/README.md). This
client is an ``asyncio.Protocol`` over ``httptools`` (the C parser uvicorn uses): one write per
request, body bytes handed over as they arrive, connections reused per origin.

Scope, deliberately small: HTTP/1.1 over TCP or TLS, directly or through an ``http://`` proxy
(``faregate.proxies``: absolute-form targets for http, ``CONNECT`` and TLS in the tunnel for https);
requests with a body (POST, and GET; never HEAD, whose reply the parser could not delimit);
``Content-Length``, chunked (extensions and trailers read past, trailers not merged into the headers)
and read-until-close replies; no redirects (a provider that redirects is an error), no compression
(we ask for ``identity`` so bytes pass through untouched). Errors are ``Http1Error``, ``OSError``
or ``TimeoutError``; ``faregate.upstream`` maps them to faregate's errors.

RFC 9112 rules kept here (tests/test_http1_conformance.py runs them, and the same cases against
aiohttp): interim ``1xx`` replies (100, 103 Early Hints) are skipped, ``101`` is an error; 204 and
304 have no body; ``Content-Length`` with ``Transfer-Encoding`` is refused (the parser's choice,
allowed by section 6.3); reply heads are capped (``MAX_HEADER_BYTES``, ``MAX_HEADERS``). A connection
goes back to the pool only when its reply was complete, keep-alive, and nothing else happened on
it: never after ``Connection: close``, a reply that came while the request was still being written,
or bytes the server sent after the reply (those bytes are never read as the next reply; an idle
connection whose socket is readable is dropped at checkout).
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from faregate.proxies import NONE, Proxies, Proxy

IDLE_SECONDS = 20.0  # a pooled connection idle longer than this is closed rather than reused
HIGH_WATER = 1 << 20  # stop reading from the socket while this many reply bytes wait unread
MAX_HEADER_BYTES = 64 * 1024  # a reply's head (its interim 1xx replies and trailers included)
MAX_HEADERS = 100  # header fields in a reply's head, interim 1xx replies counted as one each


class Http1Error(Exception):
    """The peer broke the protocol or the connection ended early."""


class _Stray(Exception):
    """The server sent bytes after a complete reply (raised inside a parser callback)."""


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

    @property
    def authority(self) -> bytes:
        """``host:port`` with the port always written (the target of a CONNECT)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}".encode("idna")


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
        self._poll: select.poll | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.interim = False  # inside a 1xx reply, which is skipped
        self.head_bytes = 0  # header bytes parsed for this request (1xx replies and trailers included)
        self.head_wire = 0  # bytes received while the head was incomplete
        self.header_count = 0
        self.error: Http1Error | None = None
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.received_any = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:  # to see, at checkout, whether an idle connection has bytes (or EOF) waiting
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self.complete:  # after the reply: nothing was asked, so the server is out of step
            self._stray()
            return
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            if self.complete or isinstance(cause, _Stray):
                self._stray()  # the reply was whole; what followed it is never read as another reply
                return
            self._fail(cause if isinstance(cause, Http1Error) else Http1Error(f"malformed HTTP reply: {exc}"))
            self.close()
            return
        if not self.headers_done:
            self.head_wire += len(data)
            if self.head_wire > MAX_HEADER_BYTES:
                self._fail(Http1Error(f"reply head exceeds the {MAX_HEADER_BYTES} byte limit without ending"))
                self.close()

    def _stray(self) -> None:
        self.keep_alive = False
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.complete:
            return
        chunked = self.headers.get("transfer-encoding", "").rstrip().endswith("chunked")
        if self.headers_done and "content-length" not in self.headers and not chunked:
            self.complete = True  # a reply delimited by the end of the connection (RFC 9112 6.3, rules 3 and 8)
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
        if self.complete:
            raise _Stray
        self.head_bytes += len(name) + len(value)
        self.header_count += 1
        if self.head_bytes > MAX_HEADER_BYTES or self.header_count > MAX_HEADERS:
            raise _limit_error(self.head_bytes, self.header_count)
        if self.headers_done:  # a trailer after a chunked body: counted, read past, not merged
            return
        if name:
            self._header_name = name.lower()
        key = self._header_name.decode("latin-1")
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else previous + ", " + text

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _Stray
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                raise Http1Error("upstream answered 101 Switching Protocols; no upgrade was asked for")
            self.interim = True  # 100 Continue, 103 Early Hints...: the reply is still to come
            self.headers = {}
            self.header_count += 1  # an endless run of interim replies meets the same limit
            if self.header_count > MAX_HEADERS:
                raise _limit_error(self.head_bytes, self.header_count)
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful inside a callback
        if self.keep_alive and self.transport is not None and self.transport.get_write_buffer_size():
            self.keep_alive = False  # answered before our request was written: the server may take the rest as a request
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
        if self.interim:
            self.interim = False
            return
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
        """Open, not idle for too long, and nothing (bytes, or the server's close) waiting on its socket."""
        if self.transport is None or self.transport.is_closing() or time.monotonic() - self.idle_since >= IDLE_SECONDS:
            return False
        return not (self._poll is not None and self._poll.poll(0))

    @property
    def reusable(self) -> bool:
        return self.complete and self.error is None and self.keep_alive and self.transport is not None

    def close(self) -> None:
        transport = self.transport
        if transport is not None:
            self.transport = None
            if transport.get_write_buffer_size():
                transport.abort()  # the request is still being written: do not wait for a server that stopped reading
            else:
                transport.close()


def _limit_error(head_bytes: int, count: int) -> Http1Error:
    if count > MAX_HEADERS:
        return Http1Error(f"reply has more than {MAX_HEADERS} header fields and interim replies (the limit)")
    return Http1Error(f"reply headers exceed the {MAX_HEADER_BYTES} byte limit")


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _TunnelReply(asyncio.Protocol):
    """Reads a proxy's answer to ``CONNECT``: a status line and headers, and nothing after them."""

    def __init__(self, proxy: Proxy, target: bytes) -> None:
        self.proxy, self.target = proxy, target.decode("idna")
        self.head = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(Http1Error(f"the proxy {message}"))

    def data_received(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEADER_BYTES:
                self._fail(f"answered CONNECT with more than {MAX_HEADER_BYTES} bytes of head")
            return
        line = self.head.split(b"\r\n", 1)[0].decode("latin-1")[:120]
        version, _, rest = line.partition(" ")
        status = rest[:3]
        if not version.startswith("HTTP/1.") or not status.isdigit():
            self._fail(f"answered CONNECT with something other than HTTP: {line!r}")
        elif not status.startswith("2"):
            self._fail(f"refused CONNECT to {self.target}: {rest}")
        elif end + 4 != len(self.head):
            self._fail("sent bytes after its answer to CONNECT")
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"closed the connection before answering CONNECT to {self.target}")


class Pool:
    """Idle keep-alive connections per origin, for one event loop. ``ssl_context`` replaces the
    default one (the system's CAs, hostnames checked): tests pass one that trusts their own CA."""

    def __init__(self, proxies: Proxies = NONE, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, list[Connection]] = {}
        self._ssl = ssl_context
        self.proxies = proxies
        self.closed = False

    def proxy_for(self, origin: Origin) -> Proxy | None:
        return self.proxies.route(origin.tls, origin.host, origin.port) if self.proxies.any else None

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
        """A new connection to ``origin``, through its proxy if it has one; ``timeout`` covers the
        TCP connect, the proxy's CONNECT and the TLS handshake."""
        loop = asyncio.get_running_loop()
        proxy = self.proxy_for(origin)
        async with asyncio.timeout(timeout):
            if proxy is None:
                _, conn = await loop.create_connection(
                    lambda: Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=self._ssl_context() if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                )
                return conn
            if proxy.problem is not None:
                raise Http1Error(proxy.problem)
            if not origin.tls:  # plain HTTP: requests go to the proxy in absolute form (see request_head)
                _, conn = await loop.create_connection(lambda: Connection(origin), proxy.host, proxy.port)
                return conn
            return await self._tunnel(loop, origin, proxy)

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, origin: Origin, proxy: Proxy) -> Connection:
        transport, reply = await loop.create_connection(lambda: _TunnelReply(proxy, origin.authority), proxy.host, proxy.port)
        try:
            transport.write(connect_head(origin, proxy))
            await reply.done
            conn = Connection(origin)
            tls = await loop.start_tls(transport, conn, self._ssl_context(), server_hostname=origin.host)
            if tls is None:
                raise Http1Error("the tunnel through the proxy closed during the TLS handshake")
        except BaseException:
            transport.close()
            raise
        conn.connection_made(tls)  # start_tls does not call it
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


def connect_head(origin: Origin, proxy: Proxy) -> bytes:
    lines = [b"CONNECT " + origin.authority + b" HTTP/1.1", b"host: " + origin.authority]
    if proxy.authorization is not None:
        lines.append(b"proxy-authorization: " + proxy.authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def request_head(method: str, target: bytes, origin: Origin, headers: dict[str, str], length: int, proxy: Proxy | None = None) -> bytes:
    """The request line and headers. With ``proxy`` (plain HTTP through a forward proxy) the target
    is in absolute form and the proxy's credentials, if any, go in ``proxy-authorization``."""
    if method in ("HEAD", "CONNECT"):
        raise Http1Error(f"{method} requests are not supported by faregate's upstream client")
    if proxy is not None:
        target = b"http://" + origin.host_header + target
    lines = [f"{method} ".encode() + target + b" HTTP/1.1", b"host: " + origin.host_header, b"content-length: " + str(length).encode()]
    if proxy is not None and proxy.authorization is not None:
        lines.append(b"proxy-authorization: " + proxy.authorization)
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise Http1Error(f"header {name!r} contains a line break")
        try:
            lines.append(f"{name}: {value}".encode("latin-1"))
        except UnicodeEncodeError:
            raise Http1Error(f"header {name!r} has characters that HTTP headers cannot carry") from None
    lines.append(b"accept-encoding: identity")
    return b"\r\n".join(lines) + b"\r\n\r\n"
