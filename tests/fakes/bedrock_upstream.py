"""A fake Amazon Bedrock runtime: a real HTTP server on loopback speaking Converse and
ConverseStream (binary event-stream frames), checking every request's SigV4 signature with botocore
for the test keys (tests/fakes/bedrock_wire.py), recording what it received::

    with FakeBedrock() as fake:
        fake.enqueue(Script(error=("ThrottlingException", "Too many requests")))
        ...  # point a bedrock provider at fake.url (region bedrock_wire.REGION)
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from tests.fakes import bedrock_wire as wire
from tests.fakes.bedrock_wire import Script
from tests.fakes.loopback import LoopbackServer

__all__ = ["FakeBedrock", "Script"]
_PATH = re.compile(r"/model/([^/?]+)/(converse|converse-stream)")


@dataclass(frozen=True)
class Recorded:
    path: str
    model: str
    stream: bool
    headers: dict[str, str]
    body: bytes
    json: Any
    access_key_id: str | None
    session_token: str | None


class FakeBedrock(LoopbackServer):
    NAME = "fake Bedrock"

    def __init__(self) -> None:
        super().__init__()
        self.known_models: frozenset[str] | None = None  # None: any model id is served
        self.default = Script()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._queue: deque[Script] = deque()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def enqueue(self, *scripts: Script) -> None:
        with self._lock:
            self._queue.extend(scripts)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self.known_models = None
            self.default = Script()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = _PATH.fullmatch(request.raw_path)
        if request.method != "POST" or match is None:
            return _error("UnknownOperationException", "Unknown operation", 404)
        verdict = wire.verify(request.method, headers.get("host", ""), request.raw_path, headers, body)
        model, stream = unquote(match.group(1)), match.group(2) == "converse-stream"
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        with self._lock:
            self._requests.append(
                Recorded(request.raw_path, model, stream, headers, body, payload, verdict.access_key_id, verdict.session_token)
            )
            script = self._queue.popleft() if self._queue else self.default
        if not verdict.ok:
            return _error(verdict.error, verdict.message)
        if self.known_models is not None and model not in self.known_models:
            return _error("ValidationException", wire.INVALID_MODEL)
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return _error("ValidationException", "1 validation error detected: Value null at 'messages' failed to satisfy constraint")
        if script.error is not None:
            return _error(*script.error)
        if not stream:
            return web.Response(status=200, body=orjson.dumps(wire.converse_reply(script)), headers=_headers("application/json"))
        resp = web.StreamResponse(status=200, headers=_headers("application/vnd.amazon.eventstream"))
        await resp.prepare(request)
        for i, frame in enumerate(wire.stream_frames(script)):
            if script.cut_after is not None and i >= script.cut_after:
                transport = request.transport
                for _ in range(200):  # what was written goes out first (bounded: a stuck peer cannot hang the fake)
                    if transport is None or transport.get_write_buffer_size() == 0:
                        break
                    await asyncio.sleep(0.005)
                if transport is not None:
                    transport.abort()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp


def _headers(content_type: str) -> dict[str, str]:
    return {"content-type": content_type, "x-amzn-requestid": "4b6f3c2e-fake-bedrock-request"}


def _error(name: str, message: str, status: int | None = None) -> web.Response:
    code, headers, body = wire.error_reply(name, message)
    headers["x-amzn-requestid"] = "4b6f3c2e-fake-bedrock-error"
    return web.Response(status=status or code, body=body, headers=headers)
