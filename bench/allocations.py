"""Deterministic memory cost of one request in flight: bytes Python allocates for it (tracemalloc).

The real gateway runs in a thread of this process (``bench.callcount.served``: uvicorn, uvloop, the
faregate app), between a client and an upstream that allocate nothing that tracemalloc sees while a
request is measured: the client writes a prebuilt request with ``sendall`` and reads the reply
into a preallocated buffer; the upstream reads the request into a preallocated buffer, holds it
until told to answer, and answers with prebuilt bytes. So what tracemalloc counts between the
request's first byte and the reply's last is the gateway's alone, and it counts bytes, not time:
the figures are the same on a loaded machine. Two figures per request of a known body size:
``held``, what stays allocated while the request waits for its upstream (what 1,500 requests in
flight multiply), and ``peak``, the most allocated at any moment of its life (held plus what is
copied and freed on the way). ``python -m bench.allocations`` prints them for the diagonal and for
a translated direction (tests/test_memory_budget.py asserts ceilings on them).
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import tracemalloc
from dataclasses import dataclass

import orjson

from bench import callcount
from tests.fakes import anthropic_wire, openai_wire

WAIT = 30.0
BUFFER = 4 << 20  # the upstream's and the client's receive buffers (a request or reply is smaller)


def _reply(kind: str) -> bytes:
    """The upstream's canned plain reply, in its kind's format, for a request of model ``m``."""
    if kind == "anthropic":
        content = [anthropic_wire.text("Hello")]
        payload = {"model": "claude-sonnet-4-5", "messages": []}
        behaviour = anthropic_wire.Behaviour()
        data = anthropic_wire.message(payload, content, behaviour, anthropic_wire.reply_usage(payload, content, behaviour))
    else:
        payload = {"model": "gpt-4o-mini", "messages": []}
        data = openai_wire.completion(payload, True, "Hello", {"prompt_tokens": 40000, "completion_tokens": 1, "total_tokens": 40001})
    body = orjson.dumps(data)
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


class HeldUpstream:
    """A loopback upstream that reads each request whole into one preallocated buffer, signals
    ``received``, waits for ``release`` and answers with ``reply``: it allocates (almost) nothing."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.received = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True, name="held-upstream").start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                filled = 0
                end = -1
                while end < 0:
                    n = conn.recv_into(self._view[filled:])
                    if not n:
                        return
                    filled += n
                    end = self._buffer.find(b"\r\n\r\n", 0, filled)
                start = self._buffer.find(b"content-length:", 0, end)
                stop = self._buffer.find(b"\r\n", start, end + 2)
                length = int(self._buffer[start + 15 : stop])
                while filled < end + 4 + length:
                    n = conn.recv_into(self._view[filled:])
                    if not n:
                        return
                    filled += n
                self.received.release()
                if not self.release.acquire(timeout=WAIT):
                    return
                conn.sendall(self.reply)


@dataclass
class Allocated:
    body: int  # bytes of the request body
    held: int  # bytes allocated (and not freed) while the request waited for its upstream
    peak: int  # the most bytes allocated at once during the request, over what was allocated before it

    @property
    def held_ratio(self) -> float:
        return self.held / self.body

    @property
    def peak_ratio(self) -> float:
        return self.peak / self.body


def request_bytes(client: str, size: int) -> tuple[bytes, int]:
    """A prebuilt HTTP request of the client's format whose one user message is ``size`` bytes of text."""
    text = "x" * size
    messages = [{"role": "user", "content": text}]
    headers = f"authorization: Bearer {callcount.MASTER_KEY}\r\ncontent-type: application/json\r\n"
    if client == "anthropic":
        path, data = "/v1/messages", {"model": "m", "max_tokens": 256, "messages": messages}
        headers += "anthropic-version: 2023-06-01\r\n"
    else:
        path, data = "/v1/chat/completions", {"model": "m", "messages": messages}
    body = orjson.dumps(data)
    head = f"POST {path} HTTP/1.1\r\nhost: gateway\r\n{headers}content-length: {len(body)}\r\n\r\n"
    return head.encode() + body, len(body)


def _exchange(sock: socket.socket, request: bytes, upstream: HeldUpstream, view: memoryview, hold: dict[str, int] | None) -> None:
    sock.sendall(request)
    if not upstream.received.acquire(timeout=WAIT):
        raise TimeoutError("the gateway did not pass the request on")
    if hold is not None:
        gc.collect()
        hold["held"] = tracemalloc.get_traced_memory()[0]
    upstream.release.release()
    filled = 0
    while True:
        n = sock.recv_into(view[filled:])
        if not n:
            raise ConnectionError("the gateway closed the connection")
        filled += n
        head = bytes(view[: min(filled, 2048)])
        if b"\r\n\r\n" in head:
            top, _, _ = head.partition(b"\r\n\r\n")
            length = int(top.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if filled >= len(top) + 4 + length:
                if not top.startswith(b"HTTP/1.1 200"):
                    raise AssertionError(bytes(view[:filled]).decode(errors="replace"))
                return


def measure(size: int = 150_000, *, kind: str = "openai", client: str | None = None, warm: int = 5, repeat: int = 3) -> Allocated:
    """What one request of ``size`` bytes of prompt allocates in the gateway (see the module's docstring);
    ``kind``: the upstream (``openai``, ``anthropic``); ``client``: the client's format (the same by default).
    The least of ``repeat`` requests: a background loop of the gateway (a spend-log or access-log flush) that
    happens to run during one only adds to it."""
    upstream = HeldUpstream(_reply(kind))
    base = f"http://127.0.0.1:{upstream.port}" + ("/v1" if kind == "openai" else "")
    request, length = request_bytes(client or kind, size)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    try:
        with callcount.served(base, log=True, kind=kind) as (url, _, _):
            host, _, port = url.removeprefix("http://").partition(":")
            sock = socket.create_connection((host, int(port)), timeout=WAIT)
            try:
                tracemalloc.start()
                for _ in range(warm):  # lazy imports, caches, the spend log's first batch
                    _exchange(sock, request, upstream, view, None)
                held, peak = [], []
                for _ in range(repeat):
                    gc.collect()
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    hold: dict[str, int] = {}
                    _exchange(sock, request, upstream, view, hold)
                    peak.append(tracemalloc.get_traced_memory()[1] - before)
                    held.append(hold["held"] - before)
            finally:
                tracemalloc.stop()
                sock.close()
    finally:
        upstream.close()
    return Allocated(body=length, held=min(held), peak=min(peak))


def main() -> None:
    size = int(os.environ.get("BODY_BYTES", "150000"))  # noqa: TID251 - a bench knob
    for kind, client in (("openai", "openai"), ("anthropic", "anthropic"), ("anthropic", "openai"), ("openai", "anthropic")):
        got = measure(size, kind=kind, client=client)
        print(
            f"{client:>9} client -> {kind:<9} upstream: body {got.body} B, held {got.held} B ({got.held_ratio:.2f}x), "
            f"peak {got.peak} B ({got.peak_ratio:.2f}x)"
        )


if __name__ == "__main__":
    main()
