"""Operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import orjson

from faregate.gateway import Gateway
from faregate.server.http import Receive, Scope, Send, send_bytes

JSON = b"application/json"


async def healthz(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await _answer(scope, send, b'{"status":"ok"}')


async def readyz(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    gen = gw.keyring.current.generation
    body = {"status": "ready", "generation": gen.id, "models": len(gen.models), "providers": len(gen.providers)}
    await _answer(scope, send, orjson.dumps(body))


async def _answer(scope: Scope, send: Send, body: bytes) -> None:
    """GET: the body; HEAD: the same headers (Content-Length of the body GET would send), no body."""
    if scope["method"] != "HEAD":
        await send_bytes(send, 200, body, JSON)
        return
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def metrics(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await send_bytes(send, 200, gw.render_metrics(), b"text/plain; version=0.0.4; charset=utf-8")
