"""A fake OpenTelemetry collector: OTLP/HTTP on loopback (``POST /v1/traces``, protobuf), decoding
each export with opentelemetry-proto's ``ExportTraceServiceRequest`` into plain spans a test can
assert on, and recording every export request's headers::

    with OtlpReceiver() as receiver:
        ...  # observability.otlp.endpoint: receiver.endpoint
        spans = receiver.wait_for(lambda spans: len(spans) >= 2)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.loopback import LoopbackServer

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class Span:
    """One span as the collector decoded it (ids in lower-case hex, as in a traceparent)."""

    name: str
    kind: str  # SERVER | CLIENT | ...
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status: str  # UNSET | OK | ERROR
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    trace_state: str = ""


@dataclass(frozen=True)
class Export:
    """One export request: its headers (lower-case names) and the spans it carried."""

    headers: dict[str, str]
    content_type: str
    spans: list[Span]


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind is not None else None


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        kind=KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={kv.key: value_of(kv.value) for kv in span.attributes},
                        status=STATUS.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        resource=resource,
                        trace_state=span.trace_state,
                    )
                )
    return spans


class OtlpReceiver(LoopbackServer):
    NAME = "fake OTLP receiver"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._exports: list[Export] = []

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    @property
    def exports(self) -> list[Export]:
        with self._lock:
            return list(self._exports)

    @property
    def spans(self) -> list[Span]:
        return [span for export in self.exports for span in export.spans]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/traces":
            return web.Response(status=404)
        body = await request.read()
        try:
            spans = decode(body)
        except Exception as exc:  # a body that is not an ExportTraceServiceRequest: the exporter's bug, said so
            return web.Response(status=400, text=f"not an ExportTraceServiceRequest: {exc}")
        export = Export({k.lower(): v for k, v in request.headers.items()}, request.content_type, spans)
        with self._arrived:
            self._exports.append(export)
            self._arrived.notify_all()
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def wait_for(self, done: Callable[[list[Span]], bool], timeout: float = 30.0) -> list[Span]:
        """The spans received so far, once ``done`` holds for them (or AssertionError after ``timeout``:
        a generous bound for a loaded machine, never a measure)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                spans = [span for export in self._exports for span in export.spans]
                if done(spans):
                    return spans
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"the receiver did not get the spans expected; it has {[s.name for s in spans]}"
                self._arrived.wait(remaining)

    def trace_of(self, request_id: str, attempts: int = 1, timeout: float = 30.0) -> tuple[Span, list[Span]]:
        """The request span whose faregate.request_id is ``request_id`` and its attempt spans, once
        the request span and at least ``attempts`` attempt spans arrived."""

        def found(spans: list[Span]) -> tuple[Span, list[Span]] | None:
            requests = [s for s in spans if s.kind == "SERVER" and s.attributes.get("faregate.request_id") == request_id]
            if not requests:
                return None
            root = requests[0]
            children = sorted((s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns)
            return (root, children) if len(children) >= attempts else None

        spans = self.wait_for(lambda spans: found(spans) is not None, timeout)
        result = found(spans)
        assert result is not None
        return result
