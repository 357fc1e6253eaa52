"""OpenTelemetry traces end to end (issue 15, item 3): a real gateway process exports OTLP/HTTP
protobuf to a loopback receiver that decodes it with opentelemetry-proto; the openai and anthropic
SDKs ask through the gateway, fake upstreams answer and record the headers they were sent.

One SERVER span per request, one CLIENT span per upstream attempt, the GenAI conventions'
attributes and faregate's own; a client's traceparent is the request span's parent and each
attempt's span goes upstream in traceparent; content only with record_content; nothing exported
with tracing off; a collector that is down never affects a request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI, Recorded, errors
from tests.fakes.otlp_receiver import OtlpReceiver, Span
from tests.support.configs import UPSTREAM_KEY
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port

ANTHROPIC_KEY = "sk-ant-CANARY-tracing-5d1e9a7c3b2f4e60"
OTLP_TOKEN = "otlp-CANARY-token-8e2b6c4a1f3d5e79"
ENV = {
    "UPSTREAM_KEY": UPSTREAM_KEY,
    "ANTHROPIC_KEY": ANTHROPIC_KEY,
    "OTLP_TOKEN": OTLP_TOKEN,
    "OTEL_BSP_SCHEDULE_DELAY": "50",  # the SDK's batch delay (ms): spans reach the receiver soon, still batched
}
CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 10
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
  pair:
    - {{provider: up, model: broken-first, priority: 0}}
    - {{provider: up, model: gpt-4o-mini, priority: 1}}
  lonely:
    - {{provider: up, model: broken-lonely}}
  dead:
    - {{provider: up, model: broken-lonely}}
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
fallbacks:
  lonely: [m]
routing:
  retries: 2
  cooldown: {{failures: 1000, seconds: 1}}
  max_fallback_cost_ratio: null
{observability}"""
OTLP = """observability:
  otlp:
    endpoint: {endpoint}
    headers: {{x-collector-token: "${{OTLP_TOKEN}}"}}
    record_content: {record}
"""
HELLO = [{"role": "user", "content": "Say hello to the tracer"}]
CANARIES = (UPSTREAM_KEY, ANTHROPIC_KEY, MASTER_KEY)


def config(openai_url: str, anthropic_url: str, endpoint: str | None, record: bool = False) -> str:
    observability = OTLP.format(endpoint=endpoint, record=str(record).lower()) if endpoint is not None else ""
    return CONFIG.format(openai=openai_url, anthropic=anthropic_url, observability=observability)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        fake.set_rule("broken-first", errors.server_error())
        fake.set_rule("broken-lonely", errors.server_error())
        yield fake


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(
    receiver: OtlpReceiver, upstream: FakeOpenAI, claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    text = config(upstream.url, claude.url, receiver.endpoint)
    with GatewayProcess(tmp_path_factory.mktemp("traced"), text, env=ENV) as gateway:
        yield gateway


def sdk(gateway: GatewayProcess, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30, **kwargs)  # type: ignore[arg-type]


def sent_upstream(fake: FakeOpenAI | FakeAnthropic, trace_id: str) -> list[Recorded]:
    """What the upstream received in this trace (its traceparent names the trace)."""
    return [r for r in fake.requests if r.headers.get("traceparent", "").split("-")[1:2] == [trace_id]]  # type: ignore[misc]


def traceparent(span: Span) -> str:
    """The traceparent of ``span`` as sent on: version, trace id, span id, sampled (the SDK also sets
    trace context level 2's random-trace-id flag, 0x02, on the ids it made)."""
    return f"00-{span.trace_id}-{span.span_id}"


def context_of(header: str) -> str:
    """A traceparent without its flags, checking the sampled flag is set."""
    context, _, flags = header.rpartition("-")
    assert int(flags, 16) & 1, header
    return context


def no_secrets(*spans: Span) -> None:
    text = json.dumps([(s.name, s.attributes, s.resource, s.status_message) for s in spans])
    for canary in CANARIES:
        assert canary not in text


def test_a_plain_chat_request_is_a_server_span_with_one_client_span_per_attempt(
    gw: GatewayProcess, receiver: OtlpReceiver, upstream: FakeOpenAI
) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(model="m", messages=HELLO, max_tokens=50, temperature=0.3)  # type: ignore[arg-type]
    completion = raw.parse()
    request, attempts = receiver.trace_of(raw.headers["x-request-id"])
    assert len(attempts) == 1
    attempt = attempts[0]

    assert (request.kind, request.name, request.parent_span_id) == ("SERVER", "chat m", "")
    a = request.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "m"
    assert a["gen_ai.response.model"] == completion.model == "gpt-4o-mini"
    assert a["gen_ai.response.id"] == completion.id
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert completion.usage is not None
    assert a["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.3
    assert a["http.response.status_code"] == 200 and a["http.request.method"] == "POST" and a["url.path"] == "/v1/chat/completions"
    assert a["faregate.deployment"] == "up/gpt-4o-mini"
    assert a["faregate.credential"] == raw.headers["x-faregate-credential"]  # up/main:<fingerprint>
    assert a["faregate.generation"] == raw.headers["x-faregate-generation"]
    assert a["faregate.attempts"] == 1
    assert a["faregate.cost_usd"] == pytest.approx(float(raw.headers["x-faregate-cost-usd"]))
    assert "faregate.fallback_from" not in a and "error.type" not in a
    assert request.status == "UNSET"
    assert request.resource["service.name"] == "faregate"

    assert (attempt.kind, attempt.name, attempt.parent_span_id, attempt.trace_id) == (
        "CLIENT",
        "chat gpt-4o-mini",
        request.span_id,
        request.trace_id,
    )
    b = attempt.attributes
    assert b["gen_ai.provider.name"] == "openai" and b["gen_ai.request.model"] == "gpt-4o-mini"
    assert b["gen_ai.response.model"] == "gpt-4o-mini" and b["gen_ai.response.finish_reasons"] == ["stop"]
    assert b["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert b["server.address"] == "127.0.0.1" and b["server.port"] == upstream.port
    assert b["faregate.attempt"] == 1 and b["faregate.credential"] == a["faregate.credential"]
    assert request.start_ns <= attempt.start_ns <= attempt.end_ns <= request.end_ns

    # content is never recorded by default; no key anywhere; the collector got the configured header
    assert not [k for s in (request, attempt) for k in s.attributes if k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system"))]
    no_secrets(request, attempt)
    exports = receiver.exports
    assert all(e.content_type == "application/x-protobuf" and e.headers["x-collector-token"] == OTLP_TOKEN for e in exports)

    # the attempt's context went upstream
    (sent,) = sent_upstream(upstream, request.trace_id)
    assert context_of(sent.headers["traceparent"]) == traceparent(attempt)


def test_a_streamed_request_has_its_usage_model_and_finish_reason(gw: GatewayProcess, receiver: OtlpReceiver) -> None:
    with sdk(gw).chat.completions.with_streaming_response.create(model="m", messages=HELLO, stream=True) as streamed:  # type: ignore[arg-type]
        request_id = streamed.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text
    request, (attempt,) = receiver.trace_of(request_id)
    for span in (request, attempt):
        assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert span.attributes["gen_ai.usage.output_tokens"] > 0  # the usage faregate asked the upstream for
    assert request.attributes["faregate.stream"] is True
    assert request.name == "chat m" and attempt.name == "chat gpt-4o-mini"


def test_a_retry_on_the_next_deployment_is_two_attempt_spans_the_first_with_its_error(
    gw: GatewayProcess, receiver: OtlpReceiver, upstream: FakeOpenAI
) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(model="pair", messages=HELLO)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    request, attempts = receiver.trace_of(raw.headers["x-request-id"], attempts=2)
    failed, answered = attempts
    assert failed.name == "chat broken-first" and failed.status == "ERROR"
    assert failed.attributes["error.type"] == "UpstreamServerError"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["faregate.attempt"] == 1
    assert answered.name == "chat gpt-4o-mini" and answered.status == "UNSET" and "error.type" not in answered.attributes
    assert answered.attributes["faregate.attempt"] == 2
    assert request.attributes["faregate.attempts"] == 2 and "error.type" not in request.attributes
    # each attempt sent its own span's context
    sent = {r.json["model"]: context_of(r.headers["traceparent"]) for r in sent_upstream(upstream, request.trace_id) if r.json}
    assert sent == {"broken-first": traceparent(failed), "gpt-4o-mini": traceparent(answered)}


def test_a_fallback_to_another_model_names_the_model_it_fell_back_from(gw: GatewayProcess, receiver: OtlpReceiver) -> None:
    raw = sdk(gw).chat.completions.with_raw_response.create(model="lonely", messages=HELLO)  # type: ignore[arg-type]
    request, (failed, answered) = receiver.trace_of(raw.headers["x-request-id"], attempts=2)
    assert request.attributes["faregate.fallback_from"] == "lonely"
    assert request.attributes["gen_ai.request.model"] == "lonely" and request.name == "chat lonely"
    assert failed.attributes["error.type"] == "UpstreamServerError" and failed.attributes["faregate.deployment"] == "up/broken-lonely"
    assert answered.attributes["faregate.deployment"] == "up/gpt-4o-mini"


def test_a_request_nothing_could_answer_ends_with_its_error(gw: GatewayProcess, receiver: OtlpReceiver) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gw).chat.completions.create(model="dead", messages=HELLO)  # type: ignore[arg-type]
    request, (attempt,) = receiver.trace_of(caught.value.response.headers["x-request-id"])
    assert request.status == "ERROR" and request.attributes["error.type"] == "no_deployment_available"
    assert request.attributes["http.response.status_code"] == 503
    assert attempt.status == "ERROR" and attempt.attributes["error.type"] == "UpstreamServerError"
    assert "gen_ai.usage.input_tokens" not in request.attributes


def test_the_clients_traceparent_is_the_parent_and_the_trace_goes_upstream(
    gw: GatewayProcess, receiver: OtlpReceiver, upstream: FakeOpenAI
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01", "tracestate": "vendor=opaque-1"}
    raw = sdk(gw, default_headers=headers).chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    request, (attempt,) = receiver.trace_of(raw.headers["x-request-id"])
    assert request.trace_id == attempt.trace_id == trace_id
    assert request.parent_span_id == parent_id
    assert request.trace_state == "vendor=opaque-1"
    (sent,) = sent_upstream(upstream, trace_id)
    assert sent.headers["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"  # the client's flags kept
    assert sent.headers["tracestate"] == "vendor=opaque-1"


def test_an_unsampled_parent_is_not_exported_but_still_propagated(gw: GatewayProcess, receiver: OtlpReceiver, upstream: FakeOpenAI) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-00"}  # sampled flag off: parent-based sampling drops it
    raw = sdk(gw, default_headers=headers).chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    (sent,) = sent_upstream(upstream, trace_id)
    assert sent.headers["traceparent"].endswith("-00")  # the trace goes on, unsampled
    # a later sampled request is exported; the unsampled one never was (the exporter sends in order)
    later = sdk(gw).chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    receiver.trace_of(later.headers["x-request-id"])
    assert not [
        s for s in receiver.spans if s.trace_id == trace_id or s.attributes.get("faregate.request_id") == raw.headers["x-request-id"]
    ]


def test_an_anthropic_request_is_traced_with_anthropics_provider_name(
    gw: GatewayProcess, receiver: OtlpReceiver, claude: FakeAnthropic
) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
    message = raw.parse()
    request, (attempt,) = receiver.trace_of(raw.headers["x-request-id"])
    assert request.name == "chat claude" and attempt.name == "chat claude-sonnet-4-5"
    for span in (request, attempt):
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
        assert span.attributes["gen_ai.response.finish_reasons"] == [message.stop_reason]
        assert span.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert request.attributes["gen_ai.request.max_tokens"] == 64 and request.attributes["faregate.format"] == "anthropic"
    assert [r for r in claude.requests if context_of(r.headers.get("traceparent", "00-0-0-01")) == traceparent(attempt)]
    no_secrets(request, attempt)


def reload(gateway: GatewayProcess, text: str) -> None:
    gateway.config_path.write_text(text)
    r = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {MASTER_KEY}"}, json={"timeout": 20}, timeout=30)
    assert r.status_code == 200, r.text


def test_a_reload_applies_to_new_requests_and_content_is_recorded_only_with_record_content(
    gw: GatewayProcess, receiver: OtlpReceiver, upstream: FakeOpenAI, claude: FakeAnthropic
) -> None:
    client = sdk(gw)
    before = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    reload(gw, config(upstream.url, claude.url, receiver.endpoint, record=True))
    try:
        completion = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        reply = completion.parse().choices[0].message.content
        with client.chat.completions.with_streaming_response.create(model="m", messages=HELLO, stream=True) as streamed:  # type: ignore[arg-type]
            stream_id = streamed.headers["x-request-id"]
            streamed_text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        system = "You are terse."
        messages = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30).messages
        message = messages.with_raw_response.create(
            model="claude", max_tokens=64, system=system, messages=[{"role": "user", "content": "Hi"}]
        )
        for request_id, answer in ((completion.headers["x-request-id"], reply), (stream_id, streamed_text)):
            request, _ = receiver.trace_of(request_id)
            inputs = json.loads(request.attributes["gen_ai.input.messages"])
            assert inputs == [{"role": "user", "parts": [{"type": "text", "content": HELLO[0]["content"]}]}]
            outputs = json.loads(request.attributes["gen_ai.output.messages"])
            assert outputs[0]["role"] == "assistant" and outputs[0]["finish_reason"] == "stop"
            assert outputs[0]["parts"] == [{"type": "text", "content": answer}]
        request, _ = receiver.trace_of(message.headers["x-request-id"])
        assert json.loads(request.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": system}]
        assert json.loads(request.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == message.parse().content[0].text  # type: ignore[union-attr]
        # the request before the reload was traced without content (the setting it started under)
        earlier, _ = receiver.trace_of(before.headers["x-request-id"])
        assert "gen_ai.input.messages" not in earlier.attributes
    finally:
        reload(gw, config(upstream.url, claude.url, receiver.endpoint))
    after = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    request, _ = receiver.trace_of(after.headers["x-request-id"])
    assert "gen_ai.input.messages" not in request.attributes and "gen_ai.output.messages" not in request.attributes


def test_nothing_is_exported_with_tracing_off(receiver: OtlpReceiver, upstream: FakeOpenAI, claude: FakeAnthropic, tmp_path: Path) -> None:
    # even the SDK's own variables pointing at the receiver start nothing: only observability.otlp does
    env = {**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
    before = len(receiver.exports)
    gateway = GatewayProcess(tmp_path, config(upstream.url, claude.url, None), env=env).start()
    try:
        trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
        headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        raw = sdk(gateway, default_headers=headers).chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        with sdk(gateway).chat.completions.with_streaming_response.create(model="m", messages=HELLO, stream=True) as streamed:  # type: ignore[arg-type]
            assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    finally:
        gateway.stop()  # a traced gateway flushes at stop: after it, everything it would have sent has been sent
    assert raw.http_response.status_code == 200
    assert len(receiver.exports) == before
    assert not [r for r in upstream.requests if trace_id in r.headers.get("traceparent", "")]  # nothing was passed on either


def test_a_collector_that_is_down_never_affects_requests(upstream: FakeOpenAI, claude: FakeAnthropic, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    gateway = GatewayProcess(tmp_path, config(upstream.url, claude.url, down), env=ENV).start()
    try:
        client = sdk(gateway)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)  # type: ignore[arg-type]
            assert raw.http_response.status_code == 200
            with client.chat.completions.with_streaming_response.create(model="m", messages=HELLO, stream=True) as streamed:  # type: ignore[arg-type]
                assert streamed.http_response.status_code == 200
                assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        assert httpx.get(gateway.url + "/healthz").status_code == 200
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert "Application shutdown complete" in logs  # stopped cleanly: the last flush gave up (tracing.CLOSE_SECONDS)
    assert "Traceback" not in logs and OTLP_TOKEN not in logs
