"""The worker's one pooled HTTP client. The only module that knows aiohttp's exceptions: each is
mapped to the most specific ``faregate.errors.UpstreamError`` here, raised ``from`` the original.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp

from faregate.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from faregate.providers.base import UpstreamRequest

HEARTBEAT = b""  # yielded by ``Reply.chunks`` when the upstream was silent for a heartbeat interval


@contextmanager
def _mapped(what: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except UpstreamError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamTimeout(f"timed out connecting ({exc})") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"timed out {what} after {timeout:g}s") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamConnectionError(f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise UpstreamConnectionError(f"connection closed by upstream {what}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamProtocolError(f"reply cut off {what} (connection dropped)") from exc
    except aiohttp.ClientResponseError as exc:
        raise UpstreamProtocolError(f"unreadable reply {what}: {exc.message}") from exc
    except aiohttp.InvalidURL as exc:
        raise UpstreamConnectionError(f"invalid upstream URL {exc.url}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamConnectionError(f"connection error {what}: {type(exc).__name__}") from exc


class Reply:
    """An upstream response whose headers have arrived. Read it once, then it is released."""

    __slots__ = ("_response", "_timeout", "content_type", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self._response = response
        self._timeout = timeout
        self.status = response.status
        self.headers = response.headers
        self.content_type = response.headers.get("content-type", "application/json").encode("latin-1")

    async def read(self) -> bytes:
        try:
            with _mapped("while reading the reply", self._timeout):
                return await self._response.read()
        finally:
            self._response.release()

    async def chunks(self, heartbeat: float) -> AsyncIterator[bytes]:
        """Upstream bytes as they arrive; ``HEARTBEAT`` after each ``heartbeat`` seconds of silence.
        Raises UpstreamTimeout after ``timeout`` seconds without a byte."""
        content = self._response.content
        silent = 0.0
        try:
            while True:
                wait = min(heartbeat, self._timeout - silent)
                try:
                    async with asyncio.timeout(wait):
                        with _mapped("waiting for the next event", self._timeout):
                            data = await content.readany()
                except TimeoutError:  # our heartbeat timer, not the upstream's idle timeout
                    silent += wait
                    if silent >= self._timeout - 1e-6:
                        raise UpstreamTimeout(f"timed out waiting for the next event after {self._timeout:g}s") from None
                    yield HEARTBEAT
                    continue
                if not data:
                    return
                silent = 0.0
                yield data
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection (used when the client went away or the stream failed)."""
        if not self._response.closed:
            self._response.close()


class Upstream:
    """One aiohttp session per worker process, created inside the worker's event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60, family=socket.AF_UNSPEC, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: UpstreamRequest, *, connect_timeout: float, timeout: float) -> Reply:
        """Send and wait for the response headers. Every failure is an UpstreamError."""
        assert self._session is not None, "Upstream.start() was not awaited"
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout, sock_read=timeout)
        with _mapped("waiting for the reply", timeout):
            response = await self._session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=client_timeout,
                allow_redirects=False,
            )
        return Reply(response, timeout)


async def paced(events: tuple[bytes, ...], delay: float) -> AsyncIterator[bytes]:
    """A locally produced stream, one event at a time, ``delay`` seconds apart."""
    for i, event in enumerate(events):
        if delay and i:
            await asyncio.sleep(delay)
        yield event
