"""Operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import orjson

from faregate.gateway import Gateway
from faregate.server.http import Receive, Scope, Send, send_bytes

JSON = b"application/json"


async def healthz(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await send_bytes(send, 200, b'{"status":"ok"}', JSON)


async def readyz(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    gen = gw.keyring.current.generation
    body = {"status": "ready", "generation": gen.id, "models": len(gen.models), "providers": len(gen.providers)}
    await send_bytes(send, 200, orjson.dumps(body), JSON)


async def metrics(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await send_bytes(send, 200, gw.render_metrics(), b"text/plain; version=0.0.4; charset=utf-8")
