"""A loopback OpenAI upstream and a client that move in lockstep, so the gateway between them
reads every request and every reply in the same pieces on every run.

How bytes are split into reads decides how many Python calls a request costs (each read is a
callback, a wake-up, a relay step), and that split depends on scheduling whenever a writer may
write twice before the reader reads once. Here nothing is ever written before the gateway has
passed on the previous piece: the client sends each request, head and body, in one write
(``OneWrite``); the upstream answers a plain request with headers and body in one
write, and a stream with its headers, then each SSE event, then the chunked end, each in one write
and each only after the client has received what the gateway made of the previous one (the
usage-only event, which the gateway hides from a client that did not ask for it, goes with
``[DONE]``). A single small write on loopback reaches the reader in one piece.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Any

import orjson

from tests.fakes import openai_wire as wire

WAIT = 30.0  # seconds either side waits for the other before giving up (a broken run, not a slow one)


class LockstepUpstream:
    """An OpenAI-compatible upstream on 127.0.0.1 that writes a stream's pieces only when released."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self.go = threading.Semaphore(0)  # one release per piece the upstream may write
        self.chunks = 5  # content events per stream
        self.target = b""  # the path of the request being answered
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True, name="lockstep-upstream").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.target = head.split(b" ", 2)[1]  # the request's path: a Gemini or Bedrock stream is named there
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                self._answer(conn, orjson.loads(body))

    def _answer(self, conn: socket.socket, payload: dict[str, Any]) -> None:
        text = wire.DEFAULT_REPLY
        usage = wire.default_usage(payload, text)
        if payload.get("stream") is not True:
            body = orjson.dumps(wire.completion(payload, True, text, usage))
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)  # one write: headers and body
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in pieces(wire.stream_events(payload, self.chunks, True, text, usage)):
            if not self.go.acquire(timeout=WAIT):
                raise TimeoutError("the lockstep client stopped releasing the upstream")
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"0\r\n\r\n")


def pieces(events: list[bytes]) -> list[bytes]:
    """What the upstream writes one at a time: every event, the usage-only event together with the
    ``[DONE]`` after it, and b'' for the chunked end."""
    out: list[bytes] = []
    for event in events:
        if out and b'"choices":[]' in out[-1] and event == b"data: [DONE]\n\n":
            out[-1] += event
        else:
            out.append(event)
    return [*out, b""]


def visible_events(body: dict[str, Any], chunks: int) -> int:
    """SSE events the client receives per stream: role, content, finish (usage if it asked), [DONE]."""
    return len(pieces(wire.stream_events(body, chunks, True, wire.DEFAULT_REPLY, {}))) - 1


class OneWrite(http.client.HTTPConnection):
    """``http.client`` that writes a request's head and body in one write (as it did before 3.11
    split them): the gateway then reads every request in one piece."""

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        self._buffer.extend((b"", b""))  # type: ignore[attr-defined]
        head = b"\r\n".join(self._buffer)  # type: ignore[attr-defined]
        del self._buffer[:]  # type: ignore[attr-defined]
        self.send(head + (message_body or b""))


def in_step(response: http.client.HTTPResponse, upstream: LockstepUpstream, units: int) -> int:
    """Read a stream of ``units`` SSE events, releasing the upstream's next write as each one
    arrives (so the gateway reads every upstream write in one piece); the response's status."""
    upstream.go.release()
    seen = b""
    for k in range(1, units + 1):
        while seen.count(b"\n\n") < k:
            data = response.read1(65536)
            if not data:
                raise ConnectionError(f"the stream ended before event {k} of {units}")
            seen += data
        upstream.go.release()  # the gateway passed on event k: the upstream may write the next
    response.read()
    return response.status


def send(conn: http.client.HTTPConnection, upstream: LockstepUpstream, body: dict[str, Any], headers: dict[str, str]) -> int:
    """One request. For a stream, each SSE event the client receives releases the next piece."""
    conn.request("POST", "/v1/chat/completions", body=orjson.dumps(body), headers={**headers, "content-type": "application/json"})
    response = conn.getresponse()  # the gateway has the upstream's headers
    if body.get("stream") is not True:
        response.read()
        return response.status
    return in_step(response, upstream, visible_events(body, upstream.chunks))
