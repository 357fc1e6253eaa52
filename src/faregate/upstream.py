"""The worker's one pooled upstream client, and the one boundary where transport failures become
faregate errors: every exception of ``faregate.http1`` (and the OS) is mapped here to the most
specific ``faregate.errors.UpstreamError``, raised ``from`` the original.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping

from faregate.config import runtime
from faregate.errors import UpstreamConnectionError, UpstreamError, UpstreamProtocolError, UpstreamReplyTooLarge, UpstreamTimeout
from faregate.http1 import Connection, ConnectionLost, Http1Error, Origin, Pool, request_head, split_url
from faregate.providers.base import UpstreamRequest
from faregate.proxies import Proxies
from faregate.turns import Turns

HEARTBEAT = b""  # yielded by ``Reply.chunks`` when the upstream was silent for a heartbeat interval


def _translate(exc: Exception, what: str) -> UpstreamError:
    """The most specific faregate error for a transport failure (TimeoutError is handled by callers)."""
    if isinstance(exc, ConnectionLost):
        if exc.before_reply:
            return UpstreamConnectionError(f"connection closed by upstream {what}")
        return UpstreamProtocolError(f"reply cut off {what} ({exc})")
    if isinstance(exc, Http1Error):
        return UpstreamProtocolError(f"unreadable reply {what}: {exc}")
    if isinstance(exc, ssl_errors()):
        return UpstreamConnectionError(f"TLS failure {what}: {exc.__class__.__name__}")
    if isinstance(exc, OSError):
        return UpstreamConnectionError(f"connection error {what}: {exc.strerror or exc.__class__.__name__}")
    raise exc


def ssl_errors() -> tuple[type[Exception], ...]:
    return (ssl.SSLError, ssl.CertificateError)


class Reply:
    """An upstream response whose headers have arrived. Read it once; it then goes back to the pool."""

    __slots__ = ("_conn", "_pool", "_timeout", "content_type", "headers", "status")

    def __init__(self, conn: Connection, pool: Pool, timeout: float) -> None:
        self._conn = conn
        self._pool = pool
        self._timeout = timeout
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self.content_type = conn.headers.get("content-type", "application/json").encode("latin-1")

    async def read(self, limit: int) -> bytes:
        """The whole body. Past ``limit`` bytes (``server.max_reply_bytes``), or when the upstream
        declares more, reading stops, the connection is dropped and UpstreamReplyTooLarge is raised:
        at most ``limit`` plus one socket read (and the pause threshold) is ever buffered."""
        conn = self._conn
        parts: list[bytes] = []
        size = 0
        try:
            declared = conn.headers.get("content-length")
            if declared is not None and int(declared) > limit:
                raise _too_large(conn, limit, f"declares {declared} bytes")
            while True:
                part = conn.take()
                size += len(part)
                if size > limit:
                    raise _too_large(conn, limit, f"passed {limit} bytes")
                parts.append(part)
                if conn.complete:
                    return b"".join(parts)
                try:
                    await conn.wait(self._timeout)
                except TimeoutError:
                    raise UpstreamTimeout(f"timed out reading the reply after {self._timeout:g}s of silence") from None
                except (Http1Error, OSError) as exc:
                    raise _translate(exc, "while reading the reply") from exc
        finally:
            self._pool.release(conn)

    async def chunks(self, heartbeat: float) -> AsyncIterator[bytes]:
        """Reply bytes as they arrive; ``HEARTBEAT`` after each ``heartbeat`` seconds of silence.
        Raises UpstreamTimeout after ``timeout`` seconds without a byte."""
        conn = self._conn
        silent = 0.0
        try:
            while True:
                data = conn.take()
                if data:
                    silent = 0.0
                    yield data
                    continue
                if conn.complete:
                    return
                wait = min(heartbeat, self._timeout - silent)
                try:
                    await conn.wait(wait)
                except TimeoutError:
                    silent += wait
                    if silent >= self._timeout - 1e-6:
                        raise UpstreamTimeout(f"timed out waiting for the next event after {self._timeout:g}s") from None
                    yield HEARTBEAT
                except (Http1Error, OSError) as exc:
                    raise _translate(exc, "while streaming") from exc
        finally:
            self._pool.release(conn)

    def close(self) -> None:
        """Drop the connection (the client went away or the stream failed)."""
        self._conn.close()


def _too_large(conn: Connection, limit: int, what: str) -> UpstreamReplyTooLarge:
    conn.close()
    return UpstreamReplyTooLarge(
        f"the upstream reply {what}, over the limit of {limit} bytes (server.max_reply_bytes); raise it if such replies are expected"
    )


class Upstream:
    """One connection pool per worker process, used from the worker's event loop. Proxies come
    from the environment (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``) unless given; ``ssl_context``
    is for tests that trust their own CA (the default verifies against the system's CAs)."""

    def __init__(self, proxies: Proxies | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self._proxies = proxies if proxies is not None else Proxies.from_env(runtime.proxy_env())
        self._ssl_context = ssl_context
        self._forwarding = self._proxies.http is not None  # plain-HTTP requests may change form (absolute target)
        self._pool = Pool(self._proxies, ssl_context)
        self.replies = Turns()  # replies whose headers arrived, taken on a few per loop turn (faregate.turns)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.close()

    def retire(self) -> None:
        """A new generation is in: close idle connections; ones still in use close when released."""
        old, self._pool = self._pool, Pool(self._proxies, self._ssl_context)
        old.close()

    async def send(self, request: UpstreamRequest, *, connect_timeout: float, timeout: float) -> Reply:
        """Send and wait for the response headers. Every failure is an UpstreamError.

        A request written to a reused keep-alive connection that the server had already closed
        (nothing came back) is sent once more on a new connection: the server never saw it."""
        try:
            origin, target = split_url(request.url)
            proxy = self._pool.proxy_for(origin) if self._forwarding and not origin.tls else None
            head = request_head(request.method, target, origin, request.headers, len(request.body), proxy)
        except Http1Error as exc:
            raise UpstreamConnectionError(f"cannot send: {exc}") from exc
        for attempt in (1, 2):
            conn = self._pool.checkout(origin)
            if conn is None:
                try:
                    conn = await self._pool.connect(origin, connect_timeout)
                except TimeoutError:
                    raise UpstreamTimeout(f"timed out connecting to {self._where(origin)} after {connect_timeout:g}s") from None
                except ssl_errors() as exc:
                    raise UpstreamConnectionError(f"cannot connect to {self._where(origin)} (TLS: {exc.__class__.__name__})") from exc
                except OSError as exc:
                    reason = exc.strerror or exc.__class__.__name__
                    raise UpstreamConnectionError(f"cannot connect to {self._where(origin)} ({reason})") from exc
                except Http1Error as exc:
                    raise UpstreamConnectionError(f"cannot connect to {self._where(origin)}: {exc}") from exc
            conn.send(head, request.body)
            try:
                while not conn.headers_done:
                    await conn.wait(timeout)
            except TimeoutError:
                conn.close()
                raise UpstreamTimeout(f"timed out waiting for the reply after {timeout:g}s") from None
            except (Http1Error, OSError) as exc:
                conn.close()
                if attempt == 1 and conn.reused and not conn.received_any:
                    continue  # a stale keep-alive connection: the server never saw the request
                raise _translate(exc, "waiting for the reply") from exc
            except asyncio.CancelledError:
                conn.close()
                raise
            if 300 <= conn.status < 400:
                conn.close()
                location = conn.headers.get("location")
                if location is None:
                    raise UpstreamProtocolError(f"upstream answered {conn.status}, which has no reply faregate can pass on")
                raise UpstreamProtocolError(f"upstream answered {conn.status} redirect to {location!r}; redirects are not followed")
            waiter = self.replies.admit()
            if waiter is not None:  # many replies at once: the rest of this request runs in a later turn
                try:
                    await waiter
                except asyncio.CancelledError:
                    conn.close()
                    raise
            return Reply(conn, self._pool, timeout)
        raise AssertionError("unreachable")

    def _where(self, origin: Origin) -> str:
        """The upstream, and the proxy it is reached through (by host and port: never credentials)."""
        proxy = self._pool.proxy_for(origin)
        where = f"{origin.host}:{origin.port}"
        return where if proxy is None else f"{where} through proxy {proxy.shown}"


async def paced(events: tuple[bytes, ...], delay: float, heartbeat: float | None = None) -> AsyncIterator[bytes]:
    """A locally produced stream, one event at a time, ``delay`` seconds apart; a ``HEARTBEAT``
    after each whole ``heartbeat`` seconds of a pause, as ``Reply.chunks`` yields one for a silent
    upstream (counted, not timed: a pause of 0.35 s with heartbeats of 0.1 s has three)."""
    for i, event in enumerate(events):
        if delay and i:
            pause = delay
            while heartbeat and pause > heartbeat:
                await asyncio.sleep(heartbeat)
                pause -= heartbeat
                yield HEARTBEAT
            await asyncio.sleep(pause)
        yield event
