"""OpenTelemetry traces (``observability.otlp``): one SERVER span per request, one CLIENT span per
upstream attempt, with the GenAI semantic conventions' attributes and faregate's own (``faregate.*``).

Off by default, and then nothing here runs: ``Gateway.tracer`` is None and every hook is behind one
``is not None`` test (no call on the hot path). opentelemetry is imported only when a ``Tracer`` is
built, i.e. when ``observability.otlp`` is set, so an untraced gateway never loads it.

When on: a client's W3C ``traceparent`` / ``tracestate`` make the request span its child; every
attempt sends the attempt span's context upstream in ``traceparent`` (and the client's
``tracestate``); spans are batched by the SDK's BatchSpanProcessor in its own thread and exported
with the official OTLP/HTTP protobuf exporter, never on the event loop. Sampling is parent-based
(a sampled or unsampled parent decides; a root is kept with ``sample_ratio``). Prompts and
completions are recorded only with ``record_content: true`` (``tracing_content``, bounded).

A reload that changes ``observability.otlp`` applies to requests that start after it (``swap``):
the previous exporter is flushed and shut down once its last request has finished.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol
from urllib.parse import urlsplit

from faregate import __version__
from faregate.errors import UpstreamError
from faregate.generation import Credential, Deployment, Generation, Otlp
from faregate.observability.tracing_content import Attributes, Reply, input_messages, request_params
from faregate.types import Endpoint, Secret, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("faregate.tracing")
CLOSE_SECONDS = 5.0  # the most a shutdown waits for the last export (a collector that is down does not hold stop longer)
EXPORT_TIMEOUT = 5.0  # seconds per export request, retries included (the exporter's own backoff)

# gen_ai.provider.name, as the conventions name each provider type (mock: a custom value)
PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mock": "faregate.mock",
}
# gen_ai.operation.name per endpoint: the conventions' values where one applies, else the endpoint's name
OPERATIONS = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "images_generations": "generate_content",
}
CONVERSATIONS = frozenset({"chat", "messages", "responses", "completions"})


class Exchange(Protocol):
    """What a trace reads of a request (``faregate.pipeline.Exchange``)."""

    request_id: str
    endpoint: Endpoint
    started: float
    model: str
    stream: bool
    generation: Generation | None
    deployment: Deployment | None
    credential: Credential | None
    fallback_from: str | None
    status: int
    usage: Usage | None
    error_code: str | None
    attempts: int
    cost: float | None
    key_id: str | None
    team_id: str | None
    user_id: str | None
    format: str
    upstream_request_id: str | None
    cache: str | None
    saved_cost: float | None


class Answered(Protocol):
    """The answer about to be sent (``faregate.pipeline.Answer``)."""

    body: bytes
    stream: AsyncIterator[bytes] | None


class Tracer:
    """One exporter and its span processor, for one ``observability.otlp`` setting."""

    def __init__(self, settings: Otlp) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.settings = settings
        headers = {name: value.reveal() if isinstance(value, Secret) else value for name, value in settings.headers}
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=headers, timeout=EXPORT_TIMEOUT)
        resource = Resource.create({"service.name": "faregate", "service.version": __version__})
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        self.processor = BatchSpanProcessor(exporter)  # OTEL_BSP_* variables tune it (schedule delay, queue size)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("faregate", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self.in_context = trace.set_span_in_context
        self.server, self.client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self.error = trace.StatusCode.ERROR
        self.record = settings.record_content
        self.open = 0  # traces begun and not finished
        self.retired = False  # a reload replaced it: shut down when ``open`` reaches 0
        self._closed = False

    def begin(self, ex: Exchange, headers: Iterable[tuple[bytes, bytes]], method: str, path: str) -> Trace | None:
        """The request span, started at the request's arrival, child of the client's traceparent if any
        (None, said once in the log, if that fails: the request goes on untraced)."""
        try:
            carrier: dict[str, str] = {}
            for name, value in headers:
                if name == b"traceparent" and "traceparent" not in carrier:
                    carrier["traceparent"] = value.decode("latin-1")
                elif name == b"tracestate":  # several lines are one list (W3C trace context 3.3.1.1)
                    text = value.decode("latin-1")
                    carrier["tracestate"] = carrier["tracestate"] + "," + text if "tracestate" in carrier else text
            parent = self.propagator.extract(carrier) if carrier else None
            start = time.time_ns() - int((time.perf_counter() - ex.started) * 1e9)
            operation = OPERATIONS.get(ex.endpoint, ex.endpoint)
            attributes: Attributes = {
                "gen_ai.operation.name": operation,
                "http.request.method": method,
                "url.path": path,
                "faregate.request_id": ex.request_id,
            }
            span = self.tracer.start_span(operation, context=parent, kind=self.server, attributes=attributes, start_time=start)
        except Exception as exc:
            if "begin" not in _FAILED:
                _FAILED.add("begin")
                log.warning(f"tracing could not start a request span ({type(exc).__name__}): requests go on untraced", exc_info=True)
            return None
        self.open += 1
        return Trace(self, span, operation)

    def done(self) -> None:
        self.open -= 1
        if self.retired and self.open == 0:
            self.close_soon()

    def close_soon(self) -> None:
        """Flush and shut down in a thread of its own: an export never holds the event loop."""
        threading.Thread(target=self.close, name="faregate-otlp-close", daemon=True).start()

    def close(self) -> None:
        """Export what is queued (at most ``CLOSE_SECONDS``) and stop the processor's thread."""
        if self._closed:
            return
        self._closed = True
        # BatchSpanProcessor.shutdown() waits up to 30 s for its thread; its BatchProcessor takes a bound
        inner = getattr(self.processor, "_batch_processor", None)
        if inner is not None:
            inner.shutdown(timeout_millis=int(CLOSE_SECONDS * 1000))
        else:
            self.processor.shutdown()  # type: ignore[no-untyped-call]


def swap(current: Tracer | None, settings: Otlp | None) -> Tracer | None:
    """The tracer for ``settings`` after a (re)load: the current one when they did not change; else a
    new one (None: tracing off), the current one retired (shut down once its requests finished)."""
    if (current.settings if current is not None else None) == settings:
        return current
    replacement: Tracer | None = None
    if settings is not None:
        try:
            replacement = Tracer(settings)
        except Exception as exc:  # noqa: BLE001 - the SDK refused the settings: requests go on untraced; the class only (no header value)
            log.error(f"observability.otlp: tracing is off, the exporter could not be set up ({type(exc).__name__})")
    if current is not None:
        current.retired = True
        if current.open == 0:
            current.close_soon()
    return replacement


P = ParamSpec("P")


def _guarded(hook: Callable[P, None]) -> Callable[P, None]:
    """A hook that fails is said once in the log and never fails the request it traces."""

    @functools.wraps(hook)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            hook(*args, **kwargs)
        except Exception as exc:  # a bug here must cost a span, never a request, its metrics or its spend row
            if hook.__name__ not in _FAILED:
                _FAILED.add(hook.__name__)
                log.warning(f"tracing hook {hook.__name__} failed ({type(exc).__name__}): spans may be incomplete", exc_info=True)

    return run


_FAILED: set[str] = set()


class Trace:
    """One request's spans: the request span and the attempt span in flight."""

    __slots__ = ("_tracer", "attempt", "operation", "params", "payload", "reply", "span")

    def __init__(self, tracer: Tracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self.span = span
        self.operation = operation
        self.attempt: Span | None = None
        self.params: Attributes | None = None  # the request's sampling parameters, read at the first attempt
        self.payload: dict[str, Any] | None = None  # kept for its messages when recording content
        self.reply: Reply | None = None

    # hooks, in the order a request meets them ---------------------------------------------------
    @_guarded
    def attempt_started(self, ex: Exchange, dep: Deployment, credential: Credential, payload: dict[str, Any]) -> None:
        """An upstream attempt (pipeline._attempt): a CLIENT span, child of the request span."""
        tracer = self._tracer
        if self.attempt is not None:  # not ended by a failure nor by finish: cannot happen, but never leak a span
            self.attempt.end()
        if self.params is None:
            self.params = request_params(payload) if self.span.is_recording() else {}
            if self.params:
                self.span.set_attributes(self.params)
            if tracer.record and ex.endpoint in CONVERSATIONS:
                self.payload = payload
        provider = dep.provider
        attributes: Attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": PROVIDERS.get(provider.type, provider.type),
            "gen_ai.request.model": dep.model,
            "faregate.deployment": dep.label,
            "faregate.provider": provider.name,
            "faregate.credential": credential.label,  # provider/id:fingerprint, never the key
            "faregate.attempt": ex.attempts,
            **self.params,
        }
        address = _server(provider.base_url)
        if address is not None:
            attributes["server.address"], attributes["server.port"] = address
        self.attempt = tracer.tracer.start_span(
            f"{self.operation} {dep.model}", context=tracer.in_context(self.span), kind=tracer.client, attributes=attributes
        )

    @_guarded
    def inject(self, headers: dict[str, str]) -> None:
        """The attempt span's context into the upstream request's headers (traceparent, tracestate)."""
        if self.attempt is not None:
            self._tracer.propagator.inject(headers, context=self._tracer.in_context(self.attempt))

    @_guarded
    def attempt_failed(self, err: UpstreamError) -> None:
        """The attempt raised (already scrubbed by the pipeline): its span ends with error.type."""
        span = self.attempt
        if span is None:  # refused before it was sent (no usable credential): no attempt span
            return
        self.attempt = None
        span.set_attribute("error.type", type(err).__name__)
        if err.upstream_status is not None:
            span.set_attribute("http.response.status_code", err.upstream_status)
        span.set_status(self._tracer.error, err.reason)
        span.end()

    @_guarded
    def answer(self, fmt: str, answer: Answered) -> None:
        """The answer about to be sent: its model, id and finish reasons are read (a stream as it passes)."""
        if not self.span.is_recording():
            return
        reply = self.reply = Reply(fmt, self._tracer.record)
        if answer.stream is None:
            reply.read(answer.body)
        else:
            answer.stream = _tap(answer.stream, reply)

    @_guarded
    def finish(self, ex: Exchange) -> None:
        """The request was recorded (Gateway.finish): end the attempt span and the request span."""
        tracer = self._tracer
        try:
            failed = ex.status >= 400 or ex.status == 0 or ex.error_code is not None
            error = (ex.error_code or str(ex.status)) if failed else None
            common: Attributes = {}
            if self.reply is not None:
                common.update(self.reply.attributes())
            common.update(_usage(ex.usage))
            attempt, self.attempt = self.attempt, None
            if attempt is not None:
                attempt.set_attributes(common)
                if ex.upstream_request_id is not None:
                    attempt.set_attribute("faregate.upstream_request_id", ex.upstream_request_id)
                if error is not None:
                    attempt.set_attribute("error.type", error)
                    attempt.set_status(tracer.error, error)
                attempt.end()
            span = self.span
            if not span.is_recording():
                return
            if ex.model:
                span.update_name(f"{self.operation} {ex.model}")
            span.set_attributes(common)
            span.set_attributes(_request(ex))
            if tracer.record:
                if self.payload is not None:
                    span.set_attributes(input_messages(ex.format, self.payload))
                if self.reply is not None:
                    span.set_attributes(self.reply.content())
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(tracer.error, error)
            span.end()
        finally:
            tracer.done()


async def _tap(chunks: AsyncIterator[bytes], reply: Reply) -> AsyncIterator[bytes]:
    """The stream as relayed, each chunk read by ``reply`` on its way to the client."""
    try:
        async for data in chunks:
            reply.feed(data)
            yield data
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def _usage(usage: Usage | None) -> Attributes:
    if usage is None:
        return {}
    found: Attributes = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,  # every prompt token, cache reads and writes included
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cached_tokens:
        found["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.cache_write_5m or usage.cache_write_1h:
        found["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_5m + usage.cache_write_1h
    if usage.reasoning_tokens:
        found["faregate.usage.reasoning_tokens"] = usage.reasoning_tokens
    return found


def _request(ex: Exchange) -> Attributes:
    """The request span's attributes known once it finished (None values left out)."""
    dep = ex.deployment
    values: Mapping[str, str | bool | int | float | None] = {
        "gen_ai.request.model": ex.model or None,
        "gen_ai.provider.name": PROVIDERS.get(dep.provider.type, dep.provider.type) if dep is not None else None,
        "http.response.status_code": ex.status or None,
        "faregate.endpoint": ex.endpoint,
        "faregate.format": ex.format,
        "faregate.stream": ex.stream,
        "faregate.deployment": dep.label if dep is not None else None,
        "faregate.upstream_model": dep.model if dep is not None else None,
        "faregate.credential": ex.credential.label if ex.credential is not None else None,
        "faregate.generation": ex.generation.id if ex.generation is not None else None,
        "faregate.key_id": ex.key_id,
        "faregate.team_id": ex.team_id,
        "faregate.user_id": ex.user_id,
        "faregate.fallback_from": ex.fallback_from,
        "faregate.attempts": ex.attempts,
        "faregate.cost_usd": ex.cost,
        "faregate.upstream_request_id": ex.upstream_request_id,
        "faregate.error_code": ex.error_code,
        "faregate.cache": ex.cache,  # hit | miss | no_cache | no_store | uncacheable (the model's response cache)
        "faregate.saved_cost_usd": ex.saved_cost,
    }
    return {name: value for name, value in values.items() if value is not None}


def _server(base_url: str) -> tuple[str, int] | None:
    """server.address and server.port of a provider's base URL (None for the mock's mock://)."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or parts.scheme not in ("http", "https"):
        return None
    return parts.hostname, port if port is not None else (443 if parts.scheme == "https" else 80)
