"""The upstream client against real loopback servers: keep-alive reuse, a stale pooled connection,
chunked and close-delimited replies, early closes, redirects, timeouts, the reply size cap.
(RFC 9112 cases: tests/test_http1_conformance.py; proxies: tests/test_upstream_proxy.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator

import pytest

from faregate.errors import UpstreamConnectionError, UpstreamProtocolError, UpstreamReplyTooLarge, UpstreamTimeout
from faregate.providers.base import UpstreamRequest
from faregate.upstream import HEARTBEAT, Upstream
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.raw_http import RawServer, read_request

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}]}'
LIMIT = 32 * 1024 * 1024


def request(url: str) -> UpstreamRequest:
    return UpstreamRequest("POST", url, {"content-type": "application/json", "authorization": "Bearer sk-x"}, BODY)


def run(coro: Awaitable[object]) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def fake_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def test_keep_alive_connections_are_reused(fake_upstream: FakeOpenAI) -> None:
    async def go() -> None:
        up = Upstream()
        for _ in range(20):
            reply = await up.send(request(fake_upstream.url + "/chat/completions"), connect_timeout=2, timeout=5)
            assert reply.status == 200
            assert b"chat.completion" in await reply.read(LIMIT)
        await up.close()

    run(go())
    assert len({r.peer for r in fake_upstream.requests}) == 1
    assert fake_upstream.requests[0].headers["accept-encoding"] == "identity"
    assert fake_upstream.requests[0].headers["host"] == f"127.0.0.1:{fake_upstream.port}"


def test_a_pooled_connection_closed_by_the_server_is_retried_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        if n == 1:
            await reader.readuntil(b"\r\n\r\n")  # the second request arrives on the kept-alive connection...
            return  # ...and the server closes it without an answer, as an idle-timeout race does

    async def go(url: str) -> list[bytes]:
        up = Upstream()
        bodies = []
        for _ in range(2):
            reply = await up.send(request(url), connect_timeout=2, timeout=5)
            bodies.append(await reply.read(LIMIT))
        await up.close()
        return bodies

    with RawServer(handler) as server:
        assert run(go(server.url)) == [b"{}", b"{}"]
        assert server.connections == 2


def test_chunked_and_close_delimited_replies() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async def go(url: str) -> list[bytes]:
        up = Upstream()
        out = []
        for _ in range(2):
            reply = await up.send(request(url), connect_timeout=2, timeout=5)
            out.append(b"".join([c async for c in reply.chunks(heartbeat=5) if c is not HEARTBEAT]))
        await up.close()
        return out

    with RawServer(handler) as server:
        assert run(go(server.url)) == [b"hello world", b"until the end"]


@pytest.mark.parametrize(
    ("reply", "error", "needle"),
    [
        (b"", UpstreamConnectionError, "connection closed by upstream"),
        (b"HTTP/1.1 200 OK\r\ncontent-len", UpstreamProtocolError, "before the headers ended"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{}", UpstreamProtocolError, "in the middle of the reply body"),
        (b"NOT HTTP AT ALL\r\n\r\n", UpstreamProtocolError, "malformed HTTP reply"),
        (
            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n",
            UpstreamProtocolError,
            "redirects are not followed",
        ),
    ],
)
def test_broken_replies_are_upstream_errors(reply: bytes, error: type[Exception], needle: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def go(url: str) -> None:
        up = Upstream()
        try:
            reply = await up.send(request(url), connect_timeout=2, timeout=5)
            await reply.read(LIMIT)
        finally:
            await up.close()

    with RawServer(handler) as server, pytest.raises(error, match=needle):
        run(go(server.url))


def test_timeouts_and_heartbeats(fake_upstream: FakeOpenAI) -> None:
    fake_upstream.set_rule("stall", Behaviour(stall=2))
    fake_upstream.set_rule("slow", Behaviour(chunks=1, chunk_delay=0.5))

    async def go() -> list[bytes]:
        up = Upstream()
        stalled = UpstreamRequest("POST", fake_upstream.url + "/chat/completions", {}, b'{"model": "stall", "messages": []}')
        with pytest.raises(UpstreamTimeout, match=r"timed out waiting for the reply after 0\.3s"):
            await up.send(stalled, connect_timeout=2, timeout=0.3)
        slow = UpstreamRequest("POST", fake_upstream.url + "/chat/completions", {}, b'{"model": "slow", "stream": true, "messages": []}')
        reply = await up.send(slow, connect_timeout=2, timeout=5)
        chunks = [c async for c in reply.chunks(heartbeat=0.2)]
        await up.close()
        return chunks

    chunks = run(go())
    assert isinstance(chunks, list)
    assert chunks.count(HEARTBEAT) >= 4
    assert b"".join(chunks).rstrip().endswith(b"data: [DONE]")


def test_header_injection_is_refused() -> None:
    async def go() -> None:
        up = Upstream()
        bad = UpstreamRequest("POST", "http://127.0.0.1:9/v1/x", {"x-evil": "a\r\nhost: b"}, b"{}")
        await up.send(bad, connect_timeout=1, timeout=1)

    with pytest.raises(UpstreamConnectionError, match="line break"):
        run(go())


def test_a_reply_over_the_cap_stops_being_read_at_the_cap() -> None:
    """server.max_reply_bytes (issue 9 item 21): a declared length over the cap is refused before
    reading; an undeclared (chunked) one is read only up to it and the connection dropped, so the
    server cannot get its whole reply out: memory stays bounded by the cap, not by the reply."""
    total = 128 * 1024 * 1024
    written = {"bytes": 0}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        while written["bytes"] < total:
            writer.write(chunk)
            await writer.drain()  # raises once the client has dropped the connection
            written["bytes"] += 0x10000
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def go(url: str) -> list[str]:
        up = Upstream()
        messages = []
        for _ in range(2):
            reply = await up.send(request(url), connect_timeout=2, timeout=5)
            with pytest.raises(UpstreamReplyTooLarge) as caught:
                await reply.read(1024 * 1024)
            messages.append(caught.value.message)
        await up.close()
        return messages

    with RawServer(handler) as server:
        declared, passed = run(go(server.url))  # type: ignore[misc]
    assert "declares 2000000 bytes, over the limit of 1048576 bytes (server.max_reply_bytes)" in declared
    assert "passed 1048576 bytes" in passed
    assert written["bytes"] < total // 2  # the socket buffers hold tens of MiB at most; the rest was never read
    assert UpstreamReplyTooLarge.status == 502 and UpstreamReplyTooLarge.code == "upstream_reply_too_large"
