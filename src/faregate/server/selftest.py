"""Doctor's live routes (master key): a timed SSE stream that calls no provider, and the gateway's
dependencies (database, control bus, Redis) each checked once with a bounded timeout.

``GET /admin/selftest/stream?events=N&interval=S`` sends the headers every proxied stream sends
(``proxy.STREAM_HEADERS``), then N ``tick`` events ``interval`` seconds apart, each with its
sequence number and the time since the first one *as this process sent it*, then one ``end``
event. A client that sees the events arrive far closer together than they were sent is behind
something that buffers: ``faregate doctor --live`` compares the two spreads.

``GET /admin/status?timeout=S`` answers 200 with one entry per dependency: ``ok``, what kind it
is, where it is (host, port and database name; never a user or a password), the latency, and the
error's class and message when it failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from sqlalchemy import text

from faregate.errors import FaregateError, InvalidRequest
from faregate.gateway import Gateway
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, send_bytes, send_error
from faregate.server.proxy import STREAM_HEADERS

EVENTS = (5, 1, 50)  # default, least, most
INTERVAL = (0.5, 0.05, 5.0)  # seconds
MAX_SPAN = 60.0  # events x interval
TIMEOUT = (2.0, 0.1, 10.0)  # /admin/status, per dependency


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def _number(query: dict[str, str], name: str, bounds: tuple[float, float, float], integer: bool = False) -> float:
    default, least, most = bounds
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        value = float("nan")
    if not least <= value <= most:  # also NaN
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(f"{name} must be {kind} from {least:g} to {most:g}", param=name)
    return value


async def stream(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        authenticate_admin(gw.keyring.current, scope)
        query = _query(scope)
        events = int(_number(query, "events", EVENTS, integer=True))
        interval = _number(query, "interval", INTERVAL)
        if events * interval > MAX_SPAN:
            raise InvalidRequest(f"events x interval must be at most {MAX_SPAN:g} seconds", param="events")
    except FaregateError as err:
        await send_error(send, err)
        return
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), *STREAM_HEADERS]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    gone = asyncio.ensure_future(_disconnected(receive))
    start = time.perf_counter()
    try:
        for seq in range(events):
            delay = start + seq * interval - time.perf_counter()  # on a fixed schedule: a late event does not delay the rest
            if delay > 0:
                await asyncio.wait([gone], timeout=delay)
            if gone.done():
                return
            await send(
                {"type": "http.response.body", "body": _event("tick", {"seq": seq, "of": events, **_sent(start)}), "more_body": True}
            )
        end = _event("end", {"events": events, "interval": interval, **_sent(start)})
        await send({"type": "http.response.body", "body": end, "more_body": False})
    finally:
        gone.cancel()


def _sent(start: float) -> dict[str, float]:
    return {"sent_ms": round((time.perf_counter() - start) * 1000, 3)}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def status(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        authenticate_admin(gw.keyring.current, scope)
        timeout = _number(_query(scope), "timeout", TIMEOUT)
    except FaregateError as err:
        await send_error(send, err)
        return
    gen = gw.keyring.current.generation
    state = gen.state
    hidden = [p for p in (_password(state.database), _password(state.redis)) if p]
    database = _check("postgresql" if state.database.startswith("postgres") else "sqlite", _where(state.database), _select(gw), timeout)
    bus_where = _where(state.redis) if state.redis else str(getattr(gw.control.bus, "path", "control.db"))
    bus = _check("redis" if state.redis else "sqlite", bus_where, gw.control.bus.head(), timeout)
    checks: list[Awaitable[dict[str, Any]]] = [database, bus]
    if state.redis:
        checks.append(_check("redis", _where(state.redis), _ping(state.redis, timeout), timeout))
    results = await asyncio.gather(*checks)
    results[1]["status"] = gw.control.bus_status  # this worker's own view of the bus (degraded: why)
    body: dict[str, Any] = {
        "generation": gen.id,
        "worker": gw.control.worker_id,
        "database": results[0],
        "bus": results[1],
        "redis": results[2] if state.redis else None,
        "limiter": {"kind": "redis" if state.redis else "local", "degraded": gw.limiter.degraded},
    }
    raw = orjson.dumps(body)
    for secret in hidden:  # an error text that quoted a URL: its password goes, whatever the driver wrote
        raw = raw.replace(secret.encode(), b"***")
    await send_bytes(send, 200, gen.scrub(raw), b"application/json")


async def _check(kind: str, where: str, probe: Awaitable[Any], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(probe, timeout)
    except TimeoutError:
        error = f"no answer within {timeout:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is what this route reports
        error = _describe(exc)
    latency = round((time.perf_counter() - started) * 1000, 1)
    return {"ok": error is None, "kind": kind, "where": where, "latency_ms": latency, "error": error}


async def _select(gw: Gateway) -> None:
    if gw.engine is None:
        raise RuntimeError("the database engine is not started")
    async with gw.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _ping(url: str, timeout: float) -> None:
    import redis.asyncio as aioredis  # only a gateway with state.redis gets here (redis costs ~8 MiB)

    client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _describe(exc: BaseException) -> str:
    """The error's class and the driver's own message (SQLAlchemy's wrapper adds the statement and
    a link: its ``orig`` is the driver's error), first line, bounded."""
    cause = getattr(exc, "orig", None) or exc
    message = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else ""
    return f"{cause.__class__.__name__}: {message}" if message else cause.__class__.__name__


def _where(url: str | None) -> str:
    """host:port/database of a URL, or a SQLite file's path: never its user or password."""
    if not url:
        return ""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{host}{port}{parts.path}"


def _password(url: str | None) -> str | None:
    if not url or url.startswith("sqlite"):
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None
