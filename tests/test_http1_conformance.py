"""RFC 9112 conformance of faregate's own HTTP/1.1 client (``faregate.http1`` behind
``faregate.upstream``), against loopback servers that write exact bytes.

Each case is what a server writes in answer to request 1; then request 2 is sent and must get its
own answer (``SECOND``), on a new connection wherever the first one must not be reused. The same
cases run against aiohttp, a maintained client, to show what one does; where it legitimately
differs (``Case.aiohttp``), the case says what it does instead. Every faregate case asserts the
right behaviour; both clients must always give request 2 its own answer.

Last, the regression of issue 9 item 16 end to end: an upstream that sends ``103 Early Hints``
before its 200 made the gateway answer with the 103, put the connection back out of step, and give
the next caller the previous caller's reply.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
import httpx
import pytest

from faregate.errors import UpstreamConnectionError, UpstreamError
from faregate.http1 import MAX_HEADER_BYTES, MAX_HEADERS
from faregate.providers.base import UpstreamRequest
from faregate.proxies import NONE
from faregate.upstream import Upstream
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.raw_http import RawServer, read_request

BODY = b'{"model": "m", "messages": []}'
LIMIT = 32 * 1024 * 1024
SECOND_BODY = b'{"second":2}'
SECOND = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n" + SECOND_BODY
FIRST_BODY = b'{"first":1}'
FIRST = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + FIRST_BODY
STRAY = b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"stray":666}'
HINTS = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\nlink: </app.js>; rel=preload\r\n\r\n"

Outcome = tuple[int, bytes, dict[str, str]] | BaseException


@dataclass(frozen=True)
class Case:
    id: str
    writes: tuple[bytes, ...]  # the reply to request 1, each written (and drained) separately
    expect: tuple[int, bytes] | str  # faregate's (status, body), or a phrase of its error
    reuse: bool | None  # may request 2 use the same connection? (None: no claim)
    close: bool = False  # the server closes the connection after the writes
    absent: str | None = None  # a header that must not be in the reply (1xx headers, trailers)
    aiohttp: tuple[int, bytes] | str | None = None  # what aiohttp gives, where it legitimately differs


def _many_headers(n: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(n)) + b"content-length: 2\r\n\r\n{}"


CASES = [
    Case("plain", (FIRST,), (200, FIRST_BODY), reuse=True),
    Case("100-continue", (b"HTTP/1.1 100 Continue\r\n\r\n" + FIRST,), (200, FIRST_BODY), reuse=True),
    Case("103-early-hints", (HINTS, FIRST), (200, FIRST_BODY), reuse=True, absent="link"),
    Case("several-1xx", (b"HTTP/1.1 100 Continue\r\n\r\n", HINTS, HINTS + FIRST), (200, FIRST_BODY), reuse=True, absent="link"),
    Case("204-no-body", (b"HTTP/1.1 204 No Content\r\n\r\n",), (204, b""), reuse=True),
    Case("204-with-content-length", (b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",), (204, b""), reuse=True),
    Case(
        "304-no-body",
        (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",),
        "answered 304",  # faregate sent no conditional request: an error, but found without waiting for a body
        reuse=None,
        aiohttp=(304, b""),
    ),
    Case(
        "chunked-extensions-trailers",
        (b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a=1;b="x y"\r\nhello\r\n6\r\n world\r\n0;end\r\nx-checksum: 1f\r\n\r\n',),
        (200, b"hello world"),
        reuse=True,
        absent="x-checksum",
    ),
    Case(
        "content-length-and-transfer-encoding",
        (b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",),
        "Transfer-Encoding can't be present with Content-Length",
        reuse=False,
    ),
    Case("connection-close", (FIRST.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"),), (200, FIRST_BODY), reuse=False),
    Case("http-1.0", (FIRST.replace(b"HTTP/1.1", b"HTTP/1.0"),), (200, FIRST_BODY), reuse=False),
    Case("close-delimited", (b"HTTP/1.1 200 OK\r\n\r\nuntil the end",), (200, b"until the end"), reuse=False, close=True),
    Case("reply-after-the-reply", (FIRST + STRAY,), (200, FIRST_BODY), reuse=False),
    # aiohttp fails request 1 too ("Bad status line"): stricter, also safe
    Case("garbage-after-the-reply", (FIRST + b"garbage\r\n\r\n",), (200, FIRST_BODY), reuse=False, aiohttp="error"),
    # aiohttp hands a 101 to its caller, who may have asked for an upgrade; faregate never does
    Case(
        "101-unasked",
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",),
        "101",
        reuse=False,
        aiohttp=(101, b""),
    ),
    # aiohttp limits each field's size (8190 bytes), not their number
    Case(
        "too-many-headers", (_many_headers(MAX_HEADERS + 1),), f"more than {MAX_HEADERS} header fields", reuse=False, aiohttp=(200, b"{}")
    ),
    Case(
        "header-bytes",
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEADER_BYTES + b"\r\ncontent-length: 2\r\n\r\n{}",),
        f"exceed the {MAX_HEADER_BYTES} byte limit",
        reuse=False,
    ),
    Case(
        "endless-head",  # one header that never ends: refused at the limit, not buffered until a timeout
        (b"HTTP/1.1 200 OK\r\nx-big: ", *[b"a" * 8192] * (MAX_HEADER_BYTES // 8192 + 2)),
        f"{MAX_HEADER_BYTES} byte limit without ending",
        reuse=False,
    ),
    Case(
        "endless-1xx",  # interim replies count towards the head's limits
        (b"HTTP/1.1 103 Early Hints\r\n\r\n" * (MAX_HEADERS + 1) + FIRST,),
        f"more than {MAX_HEADERS} header fields and interim replies",
        reuse=False,
        aiohttp=(200, FIRST_BODY),  # aiohttp skips any number of them
    ),
]


def _handler(case: Case) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            for data in case.writes:
                writer.write(data)
                await writer.drain()
            if case.close:
                return
        else:
            writer.write(SECOND)
            await writer.drain()
        while True:  # answer whatever else comes on this connection
            await read_request(reader)
            writer.write(SECOND)
            await writer.drain()

    return handle


def _request(url: str, method: str = "POST", body: bytes = BODY) -> UpstreamRequest:
    return UpstreamRequest(method, url, {"content-type": "application/json"}, body)


async def _faregate(url: str, body: bytes = BODY) -> tuple[Outcome, Outcome]:
    up = Upstream(proxies=NONE)
    try:
        outcomes: list[Outcome] = []
        for payload in (body, BODY):
            try:
                reply = await up.send(_request(url, body=payload), connect_timeout=5, timeout=5)
                outcomes.append((reply.status, await reply.read(LIMIT), dict(reply.headers)))
            except UpstreamError as err:
                outcomes.append(err)
        return outcomes[0], outcomes[1]
    finally:
        await up.close()


async def _aiohttp(url: str, body: bytes = BODY) -> tuple[Outcome, Outcome]:
    outcomes: list[Outcome] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for payload in (body, BODY):
            try:
                async with session.post(url, data=payload, headers={"content-type": "application/json"}) as r:
                    outcomes.append((r.status, await r.read(), {k.lower(): v for k, v in r.headers.items()}))
            except (aiohttp.ClientError, TimeoutError) as err:
                outcomes.append(err)
    return outcomes[0], outcomes[1]


def _check(case: Case, expect: tuple[int, bytes] | str, first: Outcome, second: Outcome, connections: int, *, faregate: bool) -> None:
    reuse = case.reuse if faregate or case.aiohttp is None else None  # where aiohttp differs, its reuse is its own affair
    if isinstance(expect, str):
        assert isinstance(first, BaseException), f"expected an error, got {first!r}"
        if faregate:
            assert expect in str(first), first
    else:
        assert not isinstance(first, BaseException), f"expected {expect!r}, got {first!r}"
        assert first[:2] == expect
        if case.absent is not None:
            assert case.absent not in first[2]
    assert not isinstance(second, BaseException), f"request 2 failed: {second!r}"
    assert second[:2] == (200, SECOND_BODY), "request 2 was not given its own answer"
    if reuse is False:
        assert connections == 2, "a connection that must not be reused was reused"
    elif reuse is True and faregate:
        assert connections == 1, "a clean keep-alive connection was not reused"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_faregate_client(case: Case) -> None:
    with RawServer(_handler(case)) as server:
        first, second = asyncio.run(_faregate(server.url))
        _check(case, case.expect, first, second, server.connections, faregate=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_aiohttp_for_comparison(case: Case) -> None:
    with RawServer(_handler(case)) as server:
        first, second = asyncio.run(_aiohttp(server.url))
        _check(case, case.aiohttp or case.expect, first, second, server.connections, faregate=False)


def test_head_is_refused_before_sending() -> None:
    """The client only POSTs (and could GET); the parser cannot know that a HEAD reply has no body."""

    async def go() -> None:
        await Upstream(proxies=NONE).send(_request("http://127.0.0.1:9/v1/x", method="HEAD"), connect_timeout=1, timeout=1)

    with pytest.raises(UpstreamConnectionError, match="HEAD requests are not supported"):
        asyncio.run(go())


def _early_reply_handler() -> Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        if n == 1:  # refuse at the head, then drain the body as a polite server does
            writer.write(b'HTTP/1.1 413 Payload Too Large\r\ncontent-length: 15\r\n\r\n{"error":"big"}')
            await writer.drain()
            await reader.readexactly(length)
        else:
            await reader.readexactly(length)
            writer.write(SECOND)
        await writer.drain()
        while True:
            await read_request(reader)
            writer.write(SECOND)
            await writer.drain()

    return handle


# Larger than the loopback socket buffers can hold (tcp_wmem + tcp_rmem maxima), so that the reply
# arrives while most of the body still waits in the client's own buffer.
BIG = b"x" * (48 * 1024 * 1024)


@pytest.mark.parametrize("client", ["faregate", "aiohttp"])
def test_a_reply_before_the_body_was_sent_is_read_and_the_connection_dropped(client: str) -> None:
    with RawServer(_early_reply_handler()) as server:
        first, second = asyncio.run((_faregate if client == "faregate" else _aiohttp)(server.url, BIG))
        assert not isinstance(first, BaseException), first
        assert first[:2] == (413, b'{"error":"big"}')
        assert not isinstance(second, BaseException), second
        assert second[:2] == (200, SECOND_BODY)
        if client == "faregate":  # the server might take the rest of the body for a request: never reuse
            assert server.connections == 2


async def _acknowledged(writer: asyncio.StreamWriter) -> None:
    """Until the peer's TCP has acknowledged every byte written (nothing left in the send queue)."""
    fd = writer.get_extra_info("socket").fileno()
    for _ in range(10_000):
        if struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0] == 0:
            return
        await asyncio.sleep(0.001)  # a kernel condition: there is no event to await
    raise AssertionError("the client never acknowledged the bytes")


@pytest.mark.parametrize("idle", ["blocked", "yielding"])
def test_bytes_sent_after_the_reply_are_never_taken_for_the_next_reply(idle: str) -> None:
    """The server writes a second, unasked-for response after the first one. ``blocked``: the
    client's loop does not run before request 2 (so only the idle check at checkout can see the
    bytes); ``yielding``: the loop runs, so the connection may see them while idle."""
    sent = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(FIRST if n == 1 else SECOND)
        await writer.drain()
        if n == 1:
            writer.write(STRAY)
            await writer.drain()
            await _acknowledged(writer)  # the client's kernel holds the stray bytes now
            sent.set()
        while True:
            await read_request(reader)
            writer.write(SECOND)
            await writer.drain()

    async def go(url: str) -> tuple[bytes, bytes]:
        up = Upstream(proxies=NONE)
        try:
            reply = await up.send(_request(url), connect_timeout=5, timeout=5)
            first = await reply.read(LIMIT)
            if idle == "blocked":
                assert sent.wait(10)  # deliberately blocks the loop: the stray bytes sit unread in the socket
            else:
                assert await asyncio.to_thread(sent.wait, 10)
            reply = await up.send(_request(url), connect_timeout=5, timeout=5)
            return first, await reply.read(LIMIT)
        finally:
            await up.close()

    with RawServer(handle) as server:
        assert asyncio.run(go(server.url)) == (FIRST_BODY, SECOND_BODY)
        assert server.connections == 2


def test_early_hints_never_hand_one_callers_reply_to_another(gateways: Callable[..., GatewayProcess]) -> None:
    """Issue 9 item 16, through a real gateway: request 1's upstream sends 103 then (only once
    request 2 has reached the upstream) its 200; request 2, from another caller, must get its own."""
    release = threading.Event()
    with FakeOpenAI() as upstream:
        upstream.set_rule("hinted", Behaviour(early_hints=1, release=release, reply_text="answer one"))
        upstream.set_rule("plain", Behaviour(reply_text="answer two"))
        gw = gateways(
            config(provider("up", upstream.url), "\n  hinted: [{provider: up, model: hinted}]\n  plain: [{provider: up, model: plain}]"),
            env=UPSTREAM_ENV,
        )
        headers = {"authorization": f"Bearer {MASTER_KEY}"}

        def ask(model: str) -> httpx.Response:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)

        with ThreadPoolExecutor(2) as pool:
            one = pool.submit(ask, "hinted")
            assert upstream.wait_for_requests(1, timeout=20)  # request 1 is at the upstream, its 103 on the way
            two = pool.submit(ask, "plain")
            try:
                assert upstream.wait_for_requests(2, timeout=20)  # request 2 reached the upstream (on a connection of its own)
            finally:
                release.set()  # now request 1's 200 goes out
            first, second = one.result(), two.result()
        assert first.status_code == 200, first.text
        assert first.json()["choices"][0]["message"]["content"] == "answer one"
        assert second.status_code == 200, second.text
        assert second.json()["choices"][0]["message"]["content"] == "answer two"
        third = ask("plain")  # the pooled connections are in step
        assert third.json()["choices"][0]["message"]["content"] == "answer two"
