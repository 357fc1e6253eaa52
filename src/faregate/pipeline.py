"""THE hot path, top to bottom: model -> plan -> credential -> adapter -> upstream -> answer.

The caller (server) has authenticated and parsed the request and hands over the snapshot it
captured; everything here uses only that snapshot. Failures of single attempts are collected and,
when nothing could answer, raised as one NoDeploymentAvailable that names every deployment's reason.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from faregate import costs, media
from faregate.credentials import minted
from faregate.credentials.keyring import Snapshot
from faregate.errors import (
    CredentialRejected,
    ModelNotFound,
    NoDeploymentAvailable,
    RateLimitExceeded,
    UpstreamError,
    UpstreamLimited,
    UpstreamModelMissing,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from faregate.generation import Credential, Deployment, Generation, Policy
from faregate.health import Health
from faregate.observability.tracing import Trace
from faregate.outcomes import Outcomes, closest, misconfigured, unknown_model_message
from faregate.providers import BY_MODEL, CONVERSATION, LOCAL, SPEAKERS, SUPPORTED, TRANSPORTS, endpoint_for, mock, native, openai, sse
from faregate.providers.base import Framing, StreamWatch, Transport
from faregate.ratelimit import Limit, Limiter, Refused, Ticket
from faregate.routing import plan, targets
from faregate.translate import CLIENT_CODECS, Translator, cut_event, passthrough_body
from faregate.types import Endpoint, Usage
from faregate.upstream import HEARTBEAT, Upstream, paced


@dataclass(slots=True)
class Exchange:
    """What one request did; filled in as it goes, read for headers, metrics and the log line."""

    request_id: str
    endpoint: Endpoint
    started: float  # perf_counter at arrival
    model: str = ""
    stream: bool = False
    generation: Generation | None = None
    deployment: Deployment | None = None
    credential: Credential | None = None
    fallback_from: str | None = None
    status: int = 0
    usage: Usage | None = None
    ttfb: float | None = None
    error_code: str | None = None
    attempts: int = 0
    cost: float | None = None
    key_id: str | None = None  # the virtual key that made the request (None: the master key)
    team_id: str | None = None  # that key's team
    user_id: str | None = None  # that key's user
    failures: list[tuple[str, str]] = field(default_factory=list)  # (deployment label, error class)
    tokens: int | None = None  # the estimate charged against tpm limits (computed when one applies)
    tickets: list[Ticket] = field(default_factory=list)  # rate-limit admissions to release at the end
    ratelimit_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # x-ratelimit-* of the key's tightest limits
    upstream_request_id: str | None = None  # the upstream's x-request-id of the last reply (scrubbed, printable ASCII)
    processing_ms: str | None = None  # the upstream's openai-processing-ms of the last reply (digits only)
    format: str = "openai_chat"  # the client's wire format (translate.CLIENT_CODECS): openai_chat | anthropic | openai_responses
    client_headers: Mapping[str, str] | None = None  # client headers a provider of the client's format may get (lower case)
    estimated: bool = False  # the answer is faregate's estimate, not the upstream's (count_tokens): x-faregate-estimated
    dropped: tuple[str, ...] = ()  # request fields the answering deployment's format could not carry: x-faregate-dropped
    translator: Translator | None = None  # off the diagonal: the client's request, decoded once (translate.py)
    translated: bool = False  # the answering attempt went through the neutral model (the access log's "translated")
    trace: Trace | None = None  # observability.otlp on: this request's spans (observability/tracing.py)
    cache: str | None = None  # response cache (server/cached.py): hit | miss | no_cache | no_store | uncacheable; None: off
    saved_cost: float | None = None  # a cache hit: what the cached answer cost when it was fetched (this request cost 0)


@dataclass(slots=True)
class Answer:
    status: int
    content_type: bytes
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class Pipeline:
    def __init__(
        self, health: Health, upstream: Upstream, current: Callable[[], Snapshot], limiter: Limiter, rng: random.Random | None = None
    ) -> None:
        self.health = health
        self.upstream = upstream
        self.current = current
        self.limiter = limiter
        self.rng = rng or random.Random()

    async def run(self, snap: Snapshot, ex: Exchange, payload: dict[str, Any]) -> Answer:
        gen = snap.generation
        ex.generation = gen
        route = gen.models.get(ex.model)
        if route is None:
            raise ModelNotFound(unknown_model_message(ex.model, gen), param="model")
        failures: list[str] = []
        outcomes = Outcomes()
        now = time.time()

        def blocked(label: str) -> str | None:
            return self.health.blocked(label, now)

        for target, refusal in targets(gen, route):
            if refusal is not None:
                failures.append(refusal)
                continue
            prefix = "" if target is route else f"fallback {target.name} -> "
            the_plan = plan(target, gen, blocked, self.rng)
            for dep in the_plan.candidates:
                if ex.endpoint not in SUPPORTED[dep.provider.type]:
                    failures.append(f"{prefix}{dep.label}: provider type {dep.provider.type} has no {ex.endpoint} endpoint")
                    continue
                answer, snap = await self._on_deployment(snap, ex, dep, payload, prefix, failures, outcomes)
                if answer is None:
                    continue
                if target is not route:
                    ex.fallback_from = route.name
                return answer
            for dep, reason in the_plan.skipped:
                if not outcomes.skipped(prefix, dep, self.health, now):
                    failures.append(f"{prefix}{dep.label}: {reason}")
            if not the_plan.candidates and not the_plan.skipped:
                failures.append(f"{prefix}{target.name}: no deployments")
        unserved = media.unservable(gen, route, ex.endpoint)  # no deployment could ever serve it: a 400 naming the route
        if unserved is not None:
            raise unserved
        if outcomes.misnamed:  # named apart, with the closest names: the operator has a config to fix
            raise misconfigured(ex.model, outcomes.misnamed, self.health, failures)
        waits = [self.health.cooldown_remaining(d.label, now) for d in route.deployments]
        retry_after = min(waits) if waits and all(w > 0 for w in waits) else None
        code = outcomes.limited_code()
        if code == "rate_limit_exceeded":  # our own deployment limits, and nothing else, stood in the way
            waits = [r.retry_after for r in outcomes.ours.values() if r.retry_after is not None]
            raise RateLimitExceeded(
                f"every deployment for model '{ex.model}' is at its configured rate limit: " + "; ".join(failures),
                retry_after=min(waits) if waits else None,
            )
        if code is not None:  # the providers' limits, not an outage and not ours: say so
            raise UpstreamLimited(
                f"every deployment for model '{ex.model}' is limited by its provider: " + "; ".join(failures),
                retry_after=retry_after,
                code=code,
            )
        raise NoDeploymentAvailable(f"no deployment available for model '{ex.model}': " + "; ".join(failures), retry_after=retry_after)

    async def _on_deployment(
        self,
        snap: Snapshot,
        ex: Exchange,
        dep: Deployment,
        payload: dict[str, Any],
        prefix: str,
        failures: list[str],
        outcomes: Outcomes,
    ) -> tuple[Answer | None, Snapshot]:
        """Try one deployment. A failure that concerns only the credential (401/403, or 429 on one key
        of several) is retried here with the next credential, taken from the current generation, so
        a reload that brought a new key is used at once. (None, snapshot) when the deployment failed
        or is at its own rpm/tpm limit."""
        if dep.rpm is not None or dep.tpm is not None:
            if ex.tokens is None:
                ex.tokens = costs.estimate_tokens(payload)
            try:
                ticket = await self.limiter.acquire((Limit("deployment:" + dep.label, dep.rpm, dep.tpm),), ex.tokens)
            except Refused as refused:
                failures.append(f"{prefix}{dep.label}: {refused.message}")
                outcomes.ours[dep.label] = refused
                self.health.at_limit(dep.label, time.time() + (refused.retry_after if refused.retry_after is not None else 1.0))
                return None, snap
            ex.tickets.append(ticket)
        for _ in range(1 + len(dep.provider.credentials)):
            try:
                return await self._attempt(snap, ex, dep, payload), snap
            except UpstreamError as err:
                ex.failures.append((dep.label, type(err).__name__))
                if ex.trace is not None:
                    ex.trace.attempt_failed(err)
                if isinstance(err, UpstreamModelMissing):  # misconfigured (_attempt): the client's error names it apart
                    outcomes.misnamed[dep.label] = (prefix, dep)
                    return None, snap
                failures.append(f"{prefix}{dep.label}: {err.reason}")
                if not err.credential_scoped:
                    outcomes.failed(dep.label, err)
                    return None, snap
                current = self.current()
                if current is not snap:
                    snap = current
                    ex.generation = snap.generation
        return None, snap

    async def _attempt(self, snap: Snapshot, ex: Exchange, dep: Deployment, payload: dict[str, Any]) -> Answer:
        provider = snap.generation.providers.get(dep.provider.name, dep.provider)
        pool = snap.pools.get(provider.name)
        if pool is None:
            raise CredentialRejected(f"provider {provider.name} was removed by a reload")
        if provider is not dep.provider:  # retrying on a newer generation: its base URL, headers, keys
            dep = replace(dep, provider=provider)
        now = time.time()
        credential = pool.choose(now)
        if credential is None:
            limited = pool.limit_code(now)
            if limited is not None:  # every key of this provider is resting after a 429
                raise UpstreamRateLimited(pool.unusable_reason(now), code=limited)
            raise CredentialRejected(pool.unusable_reason(now))
        ex.deployment, ex.credential = dep, credential
        ex.attempts += 1
        if ex.trace is not None:
            ex.trace.attempt_started(ex, dep, credential, payload)
        gen = snap.generation
        policy = gen.policy
        latency: float | None = None  # seconds from sending to the reply's headers, for health
        try:
            try:
                if provider.type in LOCAL:
                    return self._local(ex, dep, payload, policy)
                transport = TRANSPORTS[provider.type] if provider.type not in BY_MODEL else BY_MODEL[provider.type](dep.model)
                if transport.format != ex.format:  # a provider may speak the client's format itself (openai with responses: true)
                    transport = native(provider, ex.format) or transport
                if ex.endpoint == "count_tokens" and "count_tokens" not in transport.endpoints:
                    return self._local(ex, dep, payload, policy)  # nothing upstream counts: faregate's estimate (as the mock's)
                endpoint, translator, ex.dropped, ex.translated = ex.endpoint, None, (), False
                # off the diagonal: the request in the deployment's format (a conversation; another endpoint a transport
                # serves is taken in the client's format, as Gemini's embeddings)
                if transport.format != ex.format and ex.endpoint in CONVERSATION:
                    translator = ex.translator = ex.translator or Translator(ex.format, payload)
                    payload, ex.dropped = translator.prepare(transport.format, dep)
                    ex.translated = True
                    endpoint = endpoint_for(transport, ex.endpoint) or ex.endpoint
                injected = ex.stream and provider.stream_usage and ex.endpoint not in media.NO_STREAM_USAGE
                if injected:
                    payload, injected = transport.with_stream_usage(payload)
                if credential.minted is not None:  # a token minted from the key (vertex): there at once, else waited for once
                    await minted.ready(credential, gen, min(provider.timeout, minted.WAIT_SECONDS))
                request = transport.build(endpoint, dep, credential, payload, ex.client_headers)
                if ex.trace is not None:  # the attempt span's traceparent upstream
                    ex.trace.inject(request.headers)
                sent = time.perf_counter()
                reply = await self.upstream.send(request, connect_timeout=provider.connect_timeout, timeout=provider.timeout)
                latency = time.perf_counter() - sent
                headers = reply.headers
                upstream_id, ms = headers.get(transport.request_id_header), headers.get("openai-processing-ms")
                # kept for the reply headers and the log line: printable ASCII, scrubbed like any upstream text; digits only
                ex.upstream_request_id = (
                    gen.scrub(upstream_id) if upstream_id is not None and _PRINTABLE_ID.fullmatch(upstream_id) else None
                )
                ex.processing_ms = ms if ms is not None and _MILLISECONDS.fullmatch(ms) else None
                if reply.status >= 300:
                    body = await reply.read(gen.server.max_reply_bytes)
                    raise transport.classify_error(reply.status, headers, body, reply.content_type, time.time())
                if ex.endpoint in media.ENDPOINTS:  # moderations, images, audio: the reply as sent (media.py)
                    body, relayed = await media.relay(ex, dep, reply, transport, gen)
                    self.health.success(dep.label, latency)
                    return Answer(reply.status, reply.content_type, body, relayed)
                if ex.stream:
                    if reply.content_type.startswith(b"application/json"):  # not a stream: an error object, or unreadable
                        body = await reply.read(gen.server.max_reply_bytes)
                        self._not_a_stream(transport, reply.status, headers, body, reply.content_type)
                    self.health.success(dep.label, latency)
                    heartbeat = gen.server.stream_heartbeat
                    if translator is not None:  # the client's events, from the upstream's
                        translated = translator.stream(transport, dep.model, ex.request_id)
                        stream = self._relay(ex, dep, reply.chunks(heartbeat), policy, translated, transport.framing)
                        return Answer(reply.status, b"text/event-stream", stream=stream)
                    watch = transport.stream_events(strip=injected)
                    stream = self._relay(ex, dep, reply.chunks(heartbeat), policy, watch, transport.framing)
                    return Answer(reply.status, reply.content_type, stream=stream)
                body = await reply.read(gen.server.max_reply_bytes)
                if translator is not None:  # the client's reply, priced from the upstream's usage as on the diagonal
                    body, ex.usage = translator.reply(transport, body, headers, reply.content_type, dep.model, ex.request_id)
                    ex.cost = costs.cost(ex.usage, dep.price)
                    self.health.success(dep.label, latency)
                    return Answer(reply.status, b"application/json", body)
                self._account(ex, dep, body, headers, reply.content_type, transport)
                self.health.success(dep.label, latency)
                if request.reshape is not None:  # served in the client's format over the provider's own wire (Gemini embeddings)
                    return Answer(reply.status, b"application/json", request.reshape(body))
                return Answer(reply.status, reply.content_type, body)
            except UpstreamError as err:
                err.redact(gen.scrub)  # THE boundary: no upstream text is used before this
                raise
        except UpstreamRejected as err:
            self.health.success(dep.label, latency)
            return _passthrough(snap.generation, dep, err, ex.format)
        except UpstreamModelMissing as err:  # no traffic until a reload or a probe that succeeds
            known = self.health.misconfigured(dep.label)
            self.health.misconfigure(dep.label, err.reason, closest(dep.model, known[1] if known else (), gen), time.time())
            raise
        except CredentialRejected as err:
            pool.reject(credential, err.reason)
            err.credential_scoped = True
            raise
        except UpstreamRateLimited as err:
            if len(pool.states) > 1:  # one account of several is limited: rest that key, not the deployment
                rest = err.retry_after if err.retry_after is not None else policy.cooldown_seconds
                pool.cool(credential, time.time() + rest, err.reason, err.code)
                err.credential_scoped = True
            else:
                self.health.failure(dep.label, err, time.time(), policy)
            raise
        except UpstreamError as err:
            self.health.failure(dep.label, err, time.time(), policy)
            raise

    def _local(self, ex: Exchange, dep: Deployment, payload: dict[str, Any], policy: Policy) -> Answer:
        if ex.format not in mock.FORMATS:  # a format the mock does not speak: translated for it, as for a provider
            return self._local_translated(ex, dep, payload, policy)
        ex.translated = False
        reply = mock.answer(ex.endpoint, dep, payload)
        if reply.status >= 300:  # the mock's error is in the client's format: read it as that format's provider would
            raise SPEAKERS[ex.format].classify_error(reply.status, {}, reply.body, reply.content_type, time.time())
        self.health.success(dep.label)
        if reply.events:
            ex.usage = reply.usage
            heartbeat = ex.generation.server.stream_heartbeat if ex.generation is not None else None
            watch = SPEAKERS[ex.format].stream_events(strip=False)  # the client's format, which the mock speaks (mock.FORMATS)
            stream = self._relay(ex, dep, paced(reply.events, dep.provider.chunk_delay, heartbeat), policy, watch)
            return Answer(reply.status, reply.content_type, stream=stream)
        if reply.usage is not None:  # an Anthropic-format reply: the mock says what it cost
            ex.usage, ex.cost = reply.usage, costs.cost(reply.usage, dep.price)
        else:
            self._account(ex, dep, reply.body)
        ex.estimated = ex.endpoint == "count_tokens"  # the mock counts no tokens: it estimates them
        return Answer(reply.status, reply.content_type, reply.body)

    def _local_translated(self, ex: Exchange, dep: Deployment, payload: dict[str, Any], policy: Policy) -> Answer:
        """The mock as a provider of OpenAI Chat (``mock.FORMAT``): the request translated for it,
        its reply translated back, exactly as a remote provider's."""
        speaker = SPEAKERS[mock.FORMAT]
        translator = ex.translator = ex.translator or Translator(ex.format, payload)
        request, ex.dropped = translator.prepare(mock.FORMAT, dep)
        ex.translated = True
        if ex.stream:
            request, _ = speaker.with_stream_usage(request)
        reply = mock.answer(endpoint_for(speaker, ex.endpoint) or ex.endpoint, dep, request)
        if reply.status >= 300:
            raise speaker.classify_error(reply.status, {}, reply.body, reply.content_type, time.time())
        self.health.success(dep.label)
        if reply.events:
            heartbeat = ex.generation.server.stream_heartbeat if ex.generation is not None else None
            watch = translator.stream(speaker, dep.model, ex.request_id)
            stream = self._relay(ex, dep, paced(reply.events, dep.provider.chunk_delay, heartbeat), policy, watch)
            return Answer(reply.status, b"text/event-stream", stream=stream)
        body, ex.usage = translator.reply(speaker, reply.body, {}, reply.content_type, dep.model, ex.request_id)
        ex.cost = costs.cost(ex.usage, dep.price)
        return Answer(reply.status, b"application/json", body)

    @staticmethod
    def _account(
        ex: Exchange,
        dep: Deployment,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: bytes = b"",
        transport: Transport = openai,
    ) -> None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("reply is not valid JSON") from exc
        if type(data) is dict and "error" in data:
            failure = transport.error_in_reply(data, headers or {}, body, content_type, time.time())
            if failure is not None:
                raise failure
        ex.usage = transport.usage_of(data)
        ex.cost = costs.cost(ex.usage, dep.price)

    @staticmethod
    def _not_a_stream(transport: Transport, status: int, headers: Mapping[str, str], body: bytes, content_type: bytes) -> None:
        """A stream request answered with one JSON body: an error object is the upstream error it
        names; anything else cannot be relayed as a stream."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        failure = transport.error_in_reply(data, headers, body, content_type, time.time())
        raise failure or UpstreamProtocolError(f"answered a stream request with {content_type.decode('latin-1')}, not text/event-stream")

    async def _relay(
        self,
        ex: Exchange,
        dep: Deployment,
        chunks: AsyncIterator[bytes],
        policy: Policy,
        stripper: StreamWatch | None = None,
        framing: Callable[[int], Framing] = sse.Splitter,
    ) -> AsyncIterator[bytes]:
        """Pass upstream SSE events through as they complete, byte for byte; end a cut or broken
        stream with an explicit error event. An incomplete event is held back until its end arrives
        (``sse.Splitter``, at most ``server.max_event_bytes``), so what was written always ends on an
        event boundary: a heartbeat never lands inside an event, and a client never gets half of one.
        With a stripper (usage was requested for the client's sake), the usage-only event is kept for
        pricing and removed from what the client sees."""
        gen = ex.generation
        events = framing(gen.server.max_event_bytes if gen is not None else sse.MAX_EVENT_BYTES)  # SSE, or the upstream's own
        heartbeat = CLIENT_CODECS[ex.format].HEARTBEAT  # the client's, between events
        watch = stripper if stripper is not None else openai.StreamEvents()
        try:
            try:
                async for data in chunks:
                    if data is HEARTBEAT or not data:
                        yield heartbeat  # between events: nothing of an incomplete one has been written
                        continue
                    if ex.ttfb is None:
                        ex.ttfb = time.perf_counter() - ex.started
                    complete = events.feed(data)
                    if complete:
                        data = watch.feed(complete)
                        if data:
                            yield data
                rest = events.close()
                if rest:  # the last event lacks its empty line: it ends here all the same
                    data = watch.feed([sse.terminated(rest)]) if rest.strip(b"\r\n") else rest
                    if data:
                        yield data
            finally:
                ex.usage = watch.usage or ex.usage
        except UpstreamError as err:
            if ex.generation is not None:
                err.redact(ex.generation.scrub)  # the same boundary as in _attempt, for what fails mid-stream
            ex.failures.append((dep.label, type(err).__name__))
            close = getattr(chunks, "aclose", None)
            if close is not None:  # a broken event: stop reading now (the connection is not reused)
                await close()
            if err.before:  # complete events read together with the bad one: they are the client's
                yield err.before
            code = err.code if err.code in _EVENT_CODES else "stream_interrupted"
            yield _cut(ex, dep, err.reason, code, overloaded=err.upstream_status == 529 or err.code == "overloaded_error", watch=watch)
            self.health.failure(dep.label, err, time.time(), policy)
            return
        if not watch.done:
            yield _cut(ex, dep, f"upstream closed the stream before {watch.end}", watch=watch)
            return
        ex.cost = costs.cost(ex.usage, dep.price) if ex.usage else None


_EVENT_CODES = frozenset({"upstream_event_too_large", "upstream_malformed_event"})  # precise codes for a broken event


def _cut(
    ex: Exchange, dep: Deployment, reason: str, code: str = "stream_interrupted", *, overloaded: bool = False, watch: object = None
) -> bytes:
    """The error event that ends a stream the upstream did not finish; what was written before it
    ends on an event boundary (see ``_relay``). An upstream that cut it as overloaded (Anthropic's
    529 ``overloaded_error``) is said so to an Anthropic client, whose SDKs and Claude Code tell it
    from an api_error (overloaded: retry later)."""
    ex.error_code, ex.status = code, 502
    message = f"the upstream stream from {dep.label} was interrupted: {reason}; the reply is incomplete"
    return cut_event(ex.format, message, code, overloaded=overloaded, watch=watch)  # the client's format (translate.cut_event)


def _passthrough(gen: Generation, dep: Deployment, err: UpstreamRejected, fmt: str = "openai_chat") -> Answer:
    """An upstream 4xx about the request: the provider's status and message, naming the deployment,
    in the client's error shape (``translate.passthrough_body``)."""
    status = err.upstream_status or 400
    body = passthrough_body(err.body, f" (upstream {dep.label} answered {err.upstream_status})", status, fmt)
    return Answer(status, b"application/json", gen.scrub(body))


_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,200}")
_MILLISECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
