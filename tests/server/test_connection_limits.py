"""Connection limits (faregate.server.protocol) against a real `faregate serve`, over raw sockets:
slow and idle clients are closed, oversized heads get 431, a worker caps its connections, and none
of it cuts a slow upload or a long stream.

No assertion is about time: tiny configured timeouts make the server act soon, and each socket
waits (up to READ_TIMEOUT, far above any of them) for what the server does. Where a test is slow
on purpose (a client pausing mid-body), the pause is the scenario, not a synchronisation.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO

import httpx
import pytest

from tests.support.procs import MASTER_KEY, GatewayProcess

Start = Callable[..., GatewayProcess]
READ_TIMEOUT = 30.0  # a socket waits this long for the server at most; without the limits it would wait forever
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}).encode()


def config(**server: object) -> str:
    extra = "".join(f"  {name}: {value}\n" for name, value in server.items())
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
{extra}providers:
  local: {{type: mock, chunk_delay: 0}}
  slow: {{type: mock, stream_chunks: 8, chunk_delay: 0.15}}
models:
  m:
    - {{provider: local, model: mock-small}}
  slow:
    - {{provider: slow, model: mock-small}}
"""


@contextmanager
def connect(gw: GatewayProcess) -> Iterator[tuple[socket.socket, BinaryIO]]:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=READ_TIMEOUT)
    try:
        yield sock, sock.makefile("rb")
    finally:
        sock.close()


def request(method: str, path: str, body: bytes = b"", headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: gateway", f"authorization: Bearer {MASTER_KEY}", *headers]
    if body or method == "POST":
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length framed, as every refusal and health answer is)."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def closed_by_server(stream: BinaryIO) -> bytes:
    """Everything the server still sends until it closes; a stalled server raises TimeoutError."""
    try:
        return stream.read()
    except ConnectionResetError:
        return b""


def error_of(body: bytes) -> dict[str, str]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


def send_while_reading(gw: GatewayProcess, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a large request from a thread (the server may refuse it and close midway) and read the answer."""
    with connect(gw) as (sock, stream):

        def send() -> None:
            with suppress(OSError):  # the server closed after answering
                sock.sendall(data)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            return read_response(stream)
        finally:
            with suppress(OSError):  # stops the sender; the server may have reset the connection already
                sock.shutdown(socket.SHUT_RDWR)
            sender.join(READ_TIMEOUT)


# ---- slow and idle clients ------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(gateways: Start) -> None:
    gw = gateways(config(header_timeout=0.3))
    with connect(gw) as (_, stream):
        assert closed_by_server(stream) == b""  # quietly: a 408 could pass for the answer to a request sent later


def test_slow_headers_are_answered_408_and_closed(gateways: Start) -> None:
    gw = gateways(config(header_timeout=0.3, keep_alive_timeout=60))
    with connect(gw) as (sock, stream):
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-half")  # and stall
        reply = closed_by_server(stream)
        # the timer runs from connecting: on a loaded machine it may fire before these bytes are read
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408 ")
    with connect(gw) as (sock, stream):
        sock.sendall(request("GET", "/healthz"))
        assert read_response(stream)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gat")  # the next request's head stalls: its timer starts with these bytes
        status, headers, body = read_response(stream)
        assert status == 408 and headers["connection"] == "close"
        error = error_of(body)
        assert error["code"] == "request_timeout" and "server.header_timeout" in error["message"]
        assert closed_by_server(stream) == b""


def test_an_idle_keep_alive_connection_is_closed(gateways: Start) -> None:
    gw = gateways(config(keep_alive_timeout=0.3, header_timeout=0.3))
    with connect(gw) as (sock, stream):
        sock.sendall(request("GET", "/healthz"))
        assert read_response(stream)[0] == 200
        assert closed_by_server(stream) == b""
    with connect(gw) as (sock, stream):  # a byte that starts no request must not stop the clock (uvicorn's alone did)
        sock.sendall(request("GET", "/healthz"))
        assert read_response(stream)[0] == 200
        sock.sendall(b"\r\n")
        assert closed_by_server(stream) == b""


def test_attackers_at_the_connection_cap_cannot_lock_out_health_checks(gateways: Start) -> None:
    gw = gateways(config(header_timeout=0.5, max_connections=10))
    attackers = [socket.create_connection(("127.0.0.1", gw.port), timeout=READ_TIMEOUT) for _ in range(10)]
    try:
        for i, sock in enumerate(attackers[:5]):
            sock.sendall(f"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow-{i}: ".encode())  # the other five send nothing
        deadline = time.monotonic() + READ_TIMEOUT
        while True:  # each try is answered at once: 503 while the attackers fill the cap, then 200
            with connect(gw) as (sock, stream):
                sock.sendall(request("GET", "/healthz"))
                try:
                    status, _, body = read_response(stream)
                except (AssertionError, ConnectionError):
                    status, body = 0, b""  # closed before the answer could be read
            if status == 200:
                break
            if status == 503:
                assert error_of(body)["code"] == "too_many_connections"
            assert time.monotonic() < deadline, "health checks stayed locked out"
        for sock in attackers:
            reply = closed_by_server(sock.makefile("rb"))
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in attackers:
            sock.close()


# ---- the connection cap -------------------------------------------------------------------------


def test_connections_beyond_the_cap_get_503_until_one_closes(gateways: Start) -> None:
    gw = gateways(config(max_connections=3, header_timeout=60, keep_alive_timeout=60))
    held = [socket.create_connection(("127.0.0.1", gw.port), timeout=READ_TIMEOUT) for _ in range(3)]
    try:
        for sock in held:  # a full exchange on each: the server has certainly counted it
            sock.sendall(request("GET", "/healthz"))
            assert read_response(sock.makefile("rb"))[0] == 200
        with connect(gw) as (sock, stream):
            sock.sendall(request("GET", "/healthz"))
            status, headers, body = read_response(stream)
            assert status == 503 and headers["connection"] == "close"
            error = error_of(body)
            assert error["code"] == "too_many_connections" and "server.max_connections" in error["message"]
            assert error["type"] == "service_unavailable"
            assert closed_by_server(stream) == b""
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + READ_TIMEOUT
    while True:  # the server notices the closes on its own time
        with httpx.Client(base_url=gw.url, timeout=READ_TIMEOUT) as http:
            if http.get("/healthz").status_code == 200:
                break
        assert time.monotonic() < deadline


# ---- head size ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("limits"), config()) as gw:
        yield gw


@pytest.mark.parametrize(
    ("head", "setting"),
    [
        (b"x-huge: " + b"a" * (16 * 1024 * 1024) + b"\r\n", "server.max_header_bytes"),
        (b"".join(b"x-h%d: v\r\n" % i for i in range(20_000)), "server.max_headers"),
        (b"x-big: " + b"a" * (70 * 1024) + b"\r\n", "server.max_header_bytes"),
        (b"".join(b"x-h%d: v\r\n" % i for i in range(99)), "server.max_headers"),  # 101 with host and authorization
    ],
    ids=["16MiB-header", "20000-headers", "70KiB-header", "101-headers"],
)
def test_oversized_heads_get_431(default_gateway: GatewayProcess, head: bytes, setting: str) -> None:
    gw = default_gateway
    data = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer " + MASTER_KEY.encode() + b"\r\n" + head + b"\r\n"
    status, headers, body = send_while_reading(gw, data)
    assert status == 431 and headers["connection"] == "close" and headers["content-type"] == "application/json"
    error = error_of(body)
    assert error["code"] == "request_headers_too_large" and setting in error["message"]


def test_a_refusal_on_an_anthropic_route_is_in_anthropic_shape(default_gateway: GatewayProcess) -> None:
    """The connection-level refusals are written without the app, yet an Anthropic client (whose
    SDK reads {"type": "error", "error": {...}}) gets its own shape once the request line named the route."""
    head = b"x-big: " + b"a" * (70 * 1024) + b"\r\n"
    for path in (b"/v1/messages", b"/v1/messages/count_tokens?beta=true"):
        data = b"POST " + path + b" HTTP/1.1\r\nhost: gateway\r\nx-api-key: " + MASTER_KEY.encode() + b"\r\n" + head + b"\r\n"
        status, headers, body = send_while_reading(default_gateway, data)
        assert status == 431 and headers["connection"] == "close", (path, status)
        parsed = json.loads(body)
        assert parsed["type"] == "error" and parsed["error"]["type"] == "invalid_request_error", parsed
        assert "server.max_header_bytes" in parsed["error"]["message"]
    data = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n" + head + b"\r\n"
    status, _, body = send_while_reading(default_gateway, data)
    assert status == 431 and error_of(body)["code"] == "request_headers_too_large"  # OpenAI's shape elsewhere


def test_heads_just_under_the_limits_are_served(default_gateway: GatewayProcess) -> None:
    gw = default_gateway  # max_header_bytes 65536, max_headers 100
    many = tuple(f"x-h{i}: v" for i in range(98))  # 100 headers with host and authorization
    big = ("x-big: " + "a" * (62 * 1024),)
    with connect(gw) as (sock, stream):
        for headers in (many, big):
            sock.sendall(request("GET", "/healthz", headers=headers))
            assert read_response(stream)[0] == 200
        sock.sendall(request("POST", "/v1/chat/completions", CHAT, big))
        status, _, body = read_response(stream)
        assert status == 200, body
        # the protocol reads headers itself: Expect: 100-continue must still be honoured
        head, body = request("POST", "/v1/chat/completions", CHAT, ("expect: 100-continue",)).split(b"\r\n\r\n", 1)
        sock.sendall(head + b"\r\n\r\n")
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        sock.sendall(body)
        assert read_response(stream)[0] == 200


def test_limits_reach_every_worker_process(gateways: Start) -> None:
    """With --workers, each worker is a process of its own that loads the config: whichever accepts, it refuses."""
    gw = gateways(config(max_header_bytes=2048), workers=2)
    for _ in range(6):
        status, _, body = send_while_reading(gw, request("GET", "/healthz", headers=("x-big: " + "a" * 4096,)))
        assert status == 431 and "2048 bytes" in error_of(body)["message"]


def test_a_reload_says_the_limits_wait_for_a_restart(gateways: Start) -> None:
    gw = gateways(config(max_header_bytes=2048))
    gw.config_path.write_text(config(max_header_bytes=65536))
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=READ_TIMEOUT) as http:
        answer = http.post("/admin/reload").json()
    assert answer["ok"], answer
    assert any("server.max_header_bytes" in w and "restart" in w for w in answer["warnings"]), answer["warnings"]
    status, _, _ = send_while_reading(gw, request("GET", "/healthz", headers=("x-big: " + "a" * 4096,)))
    assert status == 431  # still the limit the worker started with


# ---- what the timers must not cut ---------------------------------------------------------------


def test_a_stream_longer_than_every_timeout_is_not_cut(gateways: Start) -> None:
    gw = gateways(config(header_timeout=0.1, keep_alive_timeout=0.1, body_timeout=0.1))
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=READ_TIMEOUT
    ) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 9  # 8 chunks (1.2 s at least) and [DONE]


def test_a_slow_body_upload_is_not_cut_but_a_stalled_one_is(gateways: Start) -> None:
    gw = gateways(config(header_timeout=0.2, body_timeout=30))
    with connect(gw) as (sock, stream):
        head, body = request("POST", "/v1/chat/completions", CHAT).split(b"\r\n\r\n", 1)
        sock.sendall(head + b"\r\n\r\n")
        for i in range(0, len(body), len(body) // 3):
            time.sleep(0.5)  # a slow client: each pause outlasts header_timeout
            sock.sendall(body[i : i + len(body) // 3])
        status, _, reply = read_response(stream)
        assert status == 200, reply
    gw = gateways(config(body_timeout=0.3))
    with connect(gw) as (sock, stream):
        data = request("POST", "/v1/chat/completions", CHAT)
        sock.sendall(data[: len(data) - 10])  # and stall
        status, _, reply = read_response(stream)
        assert status == 408
        error = error_of(reply)
        assert error["code"] == "request_timeout" and "server.body_timeout" in error["message"]
        assert closed_by_server(stream) == b""
