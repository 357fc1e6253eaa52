"""The worker's one pooled upstream client, and the one boundary where transport failures become
faregate errors: every exception of ``faregate.http1`` (and the OS) is mapped here to the most
specific ``faregate.errors.UpstreamError``, raised ``from`` the original.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping

from faregate.errors import UpstreamConnectionError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from faregate.http1 import Connection, ConnectionLost, Http1Error, Pool, request_head, split_url
from faregate.providers.base import UpstreamRequest

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

    async def read(self) -> bytes:
        conn = self._conn
        parts: list[bytes] = []
        try:
            while not conn.complete:
                try:
                    await conn.wait(self._timeout)
                except TimeoutError:
                    raise UpstreamTimeout(f"timed out reading the reply after {self._timeout:g}s of silence") from None
                except (Http1Error, OSError) as exc:
                    raise _translate(exc, "while reading the reply") from exc
                parts.append(conn.take())
            parts.append(conn.take())
            return b"".join(parts)
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


class Upstream:
    """One connection pool per worker process, used from the worker's event loop."""

    def __init__(self) -> None:
        self._pool = Pool()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.close()

    def retire(self) -> None:
        """A new generation is in: close idle connections; ones still in use close when released."""
        old, self._pool = self._pool, Pool()
        old.close()

    async def send(self, request: UpstreamRequest, *, connect_timeout: float, timeout: float) -> Reply:
        """Send and wait for the response headers. Every failure is an UpstreamError.

        A request written to a reused keep-alive connection that the server had already closed
        (nothing came back) is sent once more on a new connection: the server never saw it."""
        try:
            origin, target = split_url(request.url)
            head = request_head(request.method, target, origin, request.headers, len(request.body))
        except Http1Error as exc:
            raise UpstreamConnectionError(f"cannot send: {exc}") from exc
        for attempt in (1, 2):
            conn = self._pool.checkout(origin)
            if conn is None:
                where = f"{origin.host}:{origin.port}"
                try:
                    conn = await self._pool.connect(origin, connect_timeout)
                except TimeoutError:
                    raise UpstreamTimeout(f"timed out connecting to {where} after {connect_timeout:g}s") from None
                except ssl_errors() as exc:
                    raise UpstreamConnectionError(f"cannot connect to {where} (TLS: {exc.__class__.__name__})") from exc
                except OSError as exc:
                    raise UpstreamConnectionError(f"cannot connect to {where} ({exc.strerror or exc.__class__.__name__})") from exc
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
                raise UpstreamProtocolError(
                    f"upstream answered {conn.status} redirect to {conn.headers.get('location', '?')!r}; redirects are not followed"
                )
            return Reply(conn, self._pool, timeout)
        raise AssertionError("unreachable")


async def paced(events: tuple[bytes, ...], delay: float) -> AsyncIterator[bytes]:
    """A locally produced stream, one event at a time, ``delay`` seconds apart."""
    for i, event in enumerate(events):
        if delay and i:
            await asyncio.sleep(delay)
        yield event
