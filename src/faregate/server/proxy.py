"""One request's life, whatever the client's format: authenticate, read and check the body,
admit (model allowed, rate limits, budget reservation), run the pipeline, send the answer, then
settle, release and record, exactly once, also for refused, cut and abandoned requests.

What differs per client format is a ``Front``: how its body is checked, how its errors look, which
of its request headers a provider of the same format may receive. ``server/openai_api.py`` and
``server/anthropic_api.py`` only name their fronts and endpoints.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from faregate import costs, limits, ratelimit
from faregate.credentials.keyring import Snapshot
from faregate.credentials.virtual import VirtualKey
from faregate.errors import FaregateError, KeyStoreUnavailable, PermissionDenied
from faregate.gateway import Gateway
from faregate.pipeline import Answer, Exchange
from faregate.ratelimit import Limit
from faregate.server import cached, validate
from faregate.server.auth import authenticate
from faregate.server.http import ErrorEncoder, Headers, Receive, Scope, Send, header, read_body, send_bytes, send_error
from faregate.types import Endpoint

Handler = Callable[[Gateway, Scope, Receive, Send], Awaitable[None]]
# no-transform: no proxy or CDN may compress or rewrite a stream (RFC 9111 5.2.2.6); X-Accel-Buffering: nginx passes it on at once
STREAM_HEADERS: Headers = [(b"cache-control", b"no-cache, no-transform"), (b"x-accel-buffering", b"no")]


@dataclass(frozen=True, slots=True)
class Front:
    """A client format's side of the request life."""

    format: str  # the client codec's NAME (translate.CLIENT_CODECS): "openai_chat" | "anthropic" | "openai_responses"
    parse: Callable[[Endpoint, bytes], dict[str, Any]]  # bytes -> payload, or InvalidRequest (a precise 400)
    error: ErrorEncoder | None = None  # None: OpenAI's error body
    forward: frozenset[bytes] = frozenset()  # client headers a provider speaking this format may get (never auth)
    form: Callable[[bytes, bytes | None], dict[str, Any]] | None = None  # (body, Content-Type) -> payload: a multipart route
    request_id_headers: tuple[bytes, ...] = ()  # besides x-request-id: where this format's SDK reads the request id


OPENAI = Front("openai_chat", validate.parse)


def reply_headers(ex: Exchange, ids: tuple[bytes, ...] = ()) -> Headers:
    """x-request-id (what the OpenAI SDKs show as ``_request_id``; the Anthropic SDK reads
    request-id: the front's ``request_id_headers``, ``ids``) is faregate's request id, the one in
    x-faregate-request-id, the spend log and the log line; the upstream's own is beside it."""
    request_id = ex.request_id.encode()
    headers: Headers = [(b"x-request-id", request_id), (b"x-faregate-request-id", request_id), *ex.ratelimit_headers]
    for name in ids:
        headers.append((name, request_id))
    if ex.generation is not None:
        headers.append((b"x-faregate-generation", ex.generation.id.encode()))
    if ex.upstream_request_id is not None:
        headers.append((b"x-faregate-upstream-request-id", ex.upstream_request_id.encode()))
    dep = ex.deployment
    if dep is not None and ex.status < 300:
        headers.append((b"x-faregate-provider", dep.provider.name.encode()))
        headers.append((b"x-faregate-model", dep.model.encode()))
        if ex.credential is not None:
            headers.append((b"x-faregate-credential", ex.credential.label.encode()))
        if ex.fallback_from is not None:
            headers.append((b"x-faregate-fallback", f"{ex.fallback_from} -> {dep.public_model}".encode()))
        if ex.cost is not None:
            headers.append((b"x-faregate-cost-usd", f"{ex.cost:.8f}".encode()))
        if ex.processing_ms is not None:
            headers.append((b"openai-processing-ms", ex.processing_ms.encode()))
        if ex.estimated:
            headers.append((b"x-faregate-estimated", b"true"))
        if ex.dropped:  # translated: what the deployment's format could not carry (drop_params, thinking signatures)
            headers.append((b"x-faregate-dropped", ",".join(ex.dropped).encode()))
    if ex.cache is not None:  # the model's response cache is on
        headers.append((b"x-faregate-cache", b"hit" if ex.cache == "hit" else b"miss"))
    return headers


def proxy(endpoint: Endpoint, front: Front = OPENAI) -> Handler:
    """The handler of one proxied route. ``count_tokens`` and ``moderations`` cost nothing upstream:
    they count against a key's requests per minute and parallel requests, not its tokens per minute
    or budget."""
    parse, encode, fmt, forward, form, ids = front.parse, front.error, front.format, front.forward, front.form, front.request_id_headers
    free = endpoint == "count_tokens" or endpoint == "moderations"

    async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange(request_id=secrets.token_hex(12), endpoint=endpoint, started=time.perf_counter(), format=fmt)
        waiter = gw.turns.admit()
        if waiter is not None:  # a burst: start in a later loop turn, after the running streams' frames (faregate.turns)
            await waiter
        if free:
            ex.tokens = 0
        if gw.tracer is not None:  # observability.otlp: the request span, child of the client's traceparent
            ex.trace = gw.tracer.begin(ex, scope["headers"], scope["method"], scope["path"])
        if forward:
            ex.client_headers = _forwarded(scope["headers"], forward)
        if gw.control.stale():  # this worker was paused or starved: apply pending reloads first
            await gw.control.catch_up()
        snap = gw.keyring.current
        ex.generation = snap.generation
        gw.metrics.in_flight += 1
        reservation: limits.Reservation | None = None
        pending: cached.Pending | None = None
        hit: Answer | None = None
        try:
            try:
                principal = await authenticate(gw, snap, scope)
                if principal is not None:  # before the body: a refused body is still this key's request
                    ex.key_id, ex.team_id, ex.user_id = principal.id, principal.team_id, principal.user_id
                body = await read_body(scope, receive, snap.generation.server.max_body_bytes)
                payload = parse(endpoint, body) if form is None else form(body, header(scope, b"content-type"))
                del body  # the payload has what is needed: the bytes would stay allocated as long as the request (bench.allocations)
                ex.model, ex.stream = payload["model"], payload.get("stream") is True
                if principal is not None and not principal.allows(ex.model):
                    raise PermissionDenied(f"this API key may not use the model '{ex.model}'", param="model")
                route = snap.generation.models.get(ex.model)
                if route is not None and route.cache_ttl is not None:  # the response cache (server/cached.py)
                    pending, hit = await cached.lookup(gw, ex, payload, scope, route.cache_ttl)
                if principal is not None:
                    await _rate_limit(gw, principal, ex, payload)  # a hit counts as a request, with 0 tokens
                    if not free and hit is None:
                        reservation = await _admit(gw, principal, snap, ex.model, payload)
                answer = hit or await gw.pipeline.run(snap, ex, payload)
                if free and answer.status < 300:
                    ex.cost = 0.0  # counting tokens and moderating are free
            except FaregateError as err:
                ex.status, ex.error_code = err.status, err.code
                await send_error(send, err, reply_headers(ex, ids), encode)
                return
            ex.status = answer.status
            if ex.trace is not None:
                ex.trace.answer(fmt, answer)
            if answer.stream is None:
                await send_bytes(send, answer.status, answer.body, answer.content_type, reply_headers(ex, ids))
                if pending is not None:
                    await cached.keep(gw, pending, ex, answer)
            elif pending is None:
                await stream(answer, ex, receive, send, ids)
            else:  # a miss to keep: captured as it is relayed, kept if it ended cleanly
                capture = cached.Capture()
                await stream(capture.around(answer), ex, receive, send, ids)
                await cached.keep_stream(gw, pending, ex, capture)
        finally:
            gw.metrics.in_flight -= 1
            if ex.usage is not None and ex.usage.anomaly is not None:  # invalid counts: the usage is unknown from here on
                gw.usage_anomaly(ex)
            if reservation is not None and gw.engine is not None:  # settled in the background: a cancelled request still settles
                answered = 200 <= ex.status < 300 or ex.ttfb is not None  # a stream cut or abandoned midway used tokens
                gw.spawn(limits.settle(gw.engine, reservation, ex.cost, answered))
            if ex.tickets:
                _release(gw, ex)
            gw.finish(ex, time.perf_counter())

    return handle


def _forwarded(headers: Iterable[tuple[bytes, bytes]], forward: frozenset[bytes]) -> dict[str, str]:
    """The client headers named in ``forward``, lower-case names; a header sent several times is
    one comma-separated list in the order sent (RFC 9110 5.3: ``anthropic-beta: a`` and
    ``anthropic-beta: b`` mean ``anthropic-beta: a, b``), so no line of it is lost."""
    kept: dict[str, str] = {}
    for name, value in headers:
        if name in forward:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            kept[key] = kept[key] + ", " + text if key in kept else text
    return kept


def key_limits(key: VirtualKey) -> tuple[Limit, ...]:
    """The rate limits a virtual key's requests count against: its own, and its team's."""
    scopes: tuple[Limit, ...] = ()
    if key.rpm is not None or key.tpm is not None or key.max_parallel is not None:
        scopes = (Limit("key:" + key.id, key.rpm, key.tpm, key.max_parallel),)
    if key.team_id is not None and (key.team_rpm is not None or key.team_tpm is not None or key.team_max_parallel is not None):
        scopes += (Limit("team:" + key.team_id, key.team_rpm, key.team_tpm, key.team_max_parallel),)
    return scopes


async def _rate_limit(gw: Gateway, key: VirtualKey, ex: Exchange, payload: dict[str, Any]) -> None:
    """Admit the request against its key's and team's limits (all or nothing), or raise Refused
    (429 rate_limit_exceeded with Retry-After and x-ratelimit-* headers)."""
    scopes = key_limits(key)
    if not scopes:
        return
    if ex.tokens is None:  # count_tokens set 0
        ex.tokens = costs.estimate_tokens(payload)
    ticket = await gw.limiter.acquire(scopes, ex.tokens)
    ex.tickets.append(ticket)
    ex.ratelimit_headers = ratelimit.headers(ticket.window)


def _release(gw: Gateway, ex: Exchange) -> None:
    """Free parallel slots and replace token estimates by the real usage: a request that was not
    answered used no tokens, nor did a deployment that failed before another one answered."""
    answered = 200 <= ex.status < 300 or ex.ttfb is not None
    used = ex.usage.prompt_tokens + ex.usage.completion_tokens if ex.usage is not None else None
    served = "deployment:" + ex.deployment.label if ex.deployment is not None else ""
    for ticket in ex.tickets:
        scope = ticket.limits[0].scope if ticket.limits else ""
        tokens = (used if answered else 0) if not scope.startswith("deployment:") or scope == served else 0
        gw.spawn(gw.limiter.release(ticket, tokens))


async def _admit(gw: Gateway, key: VirtualKey, snap: Snapshot, model: str, payload: dict[str, Any]) -> limits.Reservation | None:
    if (key.budget_usd is None and key.team_budget_usd is None) or gw.engine is None:
        return None
    route = snap.generation.models.get(model)
    if route is None:
        return None  # the pipeline answers 404 for it
    try:
        return await limits.admit(gw.engine, key, model, route.price, payload)
    except SQLAlchemyError as exc:
        raise KeyStoreUnavailable(f"the budget store is unreachable ({exc.__class__.__name__}); retry shortly") from None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pump(chunks: AsyncIterator[bytes], watcher: asyncio.Future[None], ex: Exchange, send: Send) -> None:
    """The frames of one stream, in a task of its own: an upstream read then resumes only this short
    chain (pump, relay, reply, connection), not the whole ASGI stack above the handler (uvicorn's
    cycle, its proxy-headers middleware, the error guard, the router, the handler): 16 Python calls
    per SSE event instead of 20 (``python -m bench.callcount``)."""
    async for data in chunks:
        if watcher.done():
            ex.status, ex.error_code = 499, "client_disconnected"
            break
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def stream(answer: Answer, ex: Exchange, receive: Receive, send: Send, ids: tuple[bytes, ...] = ()) -> None:
    """Send SSE bytes as they come: each upstream read is one ASGI send, written at once."""
    assert answer.stream is not None
    headers = [(b"content-type", answer.content_type), *STREAM_HEADERS, *reply_headers(ex, ids)]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    watcher = asyncio.ensure_future(_disconnected(receive))
    chunks = answer.stream
    try:
        # cancelling this request cancels the pump, and resumes here only once the pump has ended
        await asyncio.ensure_future(_pump(chunks, watcher, ex, send))
    finally:
        watcher.cancel()
        await chunks.aclose()  # type: ignore[attr-defined]
        if ex.error_code == "stream_interrupted":
            ex.status = 502
