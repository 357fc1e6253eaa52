"""The official openai SDK's Responses client (``client.responses.create``) through a real gateway
process: against the mock (translated for it as for a Chat provider), an OpenAI-compatible
upstream without ``responses: true`` (translated to Chat Completions) and an Anthropic upstream
(translated to Messages); plain and streamed, a tool call and its result by ``call_id``, usage
and its price, a cut stream ending with ``error`` and ``response.failed``, and the 400s for what
faregate cannot serve (previous_response_id, built-in tools). And the diagonal: a provider with
``responses: true`` gets the request at ``/v1/responses`` as sent (the model renamed), its reply
and stream come back as they are, priced from Responses' usage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakes.anthropic_upstream import Behaviour as AnthropicBehaviour
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_wire import tool_use, usage
from tests.fakes.openai_responses_wire import ResponsesBehaviour
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_wire import Behaviour
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  demo:
    type: mock
    stream_chunks: 3
  oa:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  oar:
    type: openai
    base_url: {openai}
    responses: true
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 10
models:
  demo-chat:
    - {{provider: demo, model: mock-chat}}
  demo-cut:
    - {{provider: demo, model: mock-stream-cut}}
  demo-error-400:
    - {{provider: demo, model: mock-error-400}}
  demo-error-429:
    - {{provider: demo, model: mock-error-429}}
  gpt:
    - {{provider: oa, model: gpt-4o-mini}}
  gpt-direct:
    - {{provider: oar, model: gpt-4o-mini}}
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
routing:
  retries: 0
"""
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOLS: Any = [WEATHER]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]]:
    tmp: Path = tmp_path_factory.mktemp("responses")
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        env = {**UPSTREAM_ENV, "ANTHROPIC_KEY": "sk-ant-test-0000", "FAREGATE_MASTER_KEY": MASTER_KEY}
        with GatewayProcess(tmp, CONFIG.format(openai=oa.url, anthropic=an.url), env=env).start() as gateway:
            yield gateway, oa, an


@pytest.fixture
def client(world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]) -> openai.OpenAI:
    world[1].clear()
    world[2].clear()
    return openai.OpenAI(base_url=world[0].url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def test_the_mock_answers_a_responses_client_plain_and_streamed(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="demo-chat", input="Say hello", instructions="Be brief.")
    assert reply.status == "completed" and reply.output_text.startswith("This is the faregate mock provider answering: Say hello")
    assert reply.usage is not None and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    events = list(client.responses.create(model="demo-chat", input="Say hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == reply.output_text
    done = events[-1]
    assert done.type == "response.completed" and done.response.usage is not None and done.response.usage.output_tokens > 0
    assert done.response.output_text == text


def test_a_cut_stream_ends_with_error_and_response_failed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="demo-cut", input="Say hello", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    error, failed = events[-2], events[-1]
    assert error.type == "error" and error.code == "stream_interrupted" and "incomplete" in error.message
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.completed" not in [e.type for e in events]


def test_translated_to_chat_with_a_tool_result_by_call_id(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    oa = world[1]
    oa.enqueue(Behaviour(reply_text="It is sunny.", usage={"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}))
    items: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_7", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_7", "output": "sunny, 21C"},
    ]
    raw = client.responses.with_raw_response.create(
        model="gpt", input=items, tools=TOOLS, instructions="Be brief.", max_output_tokens=64, store=False
    )
    reply = raw.parse()
    assert reply.output_text == "It is sunny." and reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (30, 4, 34)
    assert float(raw.headers["x-faregate-cost-usd"]) > 0
    sent = oa.requests[-1]
    assert sent.path == "/v1/chat/completions"
    messages = sent.json["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[2]["tool_calls"][0]["id"] == "call_7" and messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[3] == {"role": "tool", "tool_call_id": "call_7", "content": "sunny, 21C"}
    assert sent.json["max_completion_tokens"] == 64 and sent.json["tools"][0]["function"]["name"] == "get_weather"


def test_translated_to_anthropic_a_streamed_tool_call(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    an = world[2]
    an.enqueue(AnthropicBehaviour(content=[tool_use("get_weather", {"city": "Paris"}, id="toolu_01A")], usage=usage(20, 9)))
    with client.responses.with_streaming_response.create(model="claude", input="Weather in Paris?", tools=TOOLS, stream=True) as raw:
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    done = events[-1]
    assert done.type == "response.completed" and done.response.usage is not None
    assert (done.response.usage.input_tokens, done.response.usage.output_tokens) == (20, 9)
    call = done.response.output[0]
    assert call.type == "function_call" and call.call_id == "toolu_01A" and json.loads(call.arguments) == {"city": "Paris"}
    assert an.requests[-1].path == "/v1/messages" and an.requests[-1].json["tools"][0]["name"] == "get_weather"


def test_what_faregate_cannot_serve_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="demo-chat", input="hi", previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id" and caught.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt", input="hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert caught.value.param == "tools[0].type" and "web_search" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt", input=42)  # type: ignore[arg-type]
    assert caught.value.param == "input"


def test_the_diagonal_sends_the_request_as_sent_and_prices_the_reply(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    oa = world[1]
    usage = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 400}, "output_tokens": 50}
    oa.enqueue(
        Behaviour(reply_text="Hello there.", usage={**usage, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1050})
    )
    builtin: Any = [{"type": "web_search"}]  # an OpenAI built-in tool: served on the diagonal as sent
    raw = client.responses.with_raw_response.create(model="gpt-direct", input="Say hello", tools=builtin, store=True)
    reply = raw.parse()
    assert reply.output_text == "Hello there." and reply.usage is not None and reply.usage.input_tokens == 1000
    sent = oa.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.json == {"model": "gpt-4o-mini", "input": "Say hello", "tools": [{"type": "web_search"}], "store": True}
    # gpt-4o-mini's shipped rates: in 0.15, cached 0.075, out 0.6 per million
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx((600 * 0.15 + 400 * 0.075 + 50 * 0.6) / 1e6)


def test_the_diagonal_relays_the_stream_and_prices_it_from_response_completed(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    oa = world[1]
    use = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20}
    oa.enqueue(Behaviour(reply_text="Hello there.", usage={**use, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120}))
    with client.responses.with_streaming_response.create(model="gpt-direct", input="Say hello", stream=True) as raw:
        request_id = raw.headers["x-request-id"]
        events = list(raw.parse())
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Hello there."
    assert oa.requests[-1].path == "/v1/responses" and oa.requests[-1].json["stream"] is True
    line = json.loads(access_line(world[0], request_id))
    assert float(line["cost_usd"]) == pytest.approx((100 * 0.15 + 20 * 0.6) / 1e6)


def test_a_diagonal_stream_cut_midway_ends_with_an_error_event_going_on_from_its_sequence(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    world[1].enqueue(ResponsesBehaviour(reply_text="Hello there, how are you?", stream_drop_after=4))
    events = list(client.responses.create(model="gpt-direct", input="Say hello", stream=True))
    assert len(events) == 5 and events[-1].type == "error"
    assert [e.sequence_number for e in events] == list(range(5))
    assert events[-1].code == "stream_interrupted"


def access_line(gateway: GatewayProcess, request_id: str, timeout: float = 10.0) -> str:
    """The access log line of a request (written after the client saw its last byte: waited for)."""
    deadline = time.monotonic() + timeout
    needle = f'"request_id":"{request_id}"'
    while True:
        for line in gateway.logs().splitlines():
            if needle in line and '"logger":"faregate.access"' in line:
                return line
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.02)


def test_the_access_log_tells_the_diagonal_from_a_translation(
    client: openai.OpenAI, world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]
) -> None:
    """A provider that speaks Responses itself is a diagonal even though its type's own transport
    speaks Chat; the mock answers a Responses client translated."""
    world[1].enqueue(Behaviour(reply_text="Hi."))
    direct = client.responses.with_raw_response.create(model="gpt-direct", input="Say hello")
    world[1].enqueue(Behaviour(reply_text="Hi."))
    chat = client.responses.with_raw_response.create(model="gpt", input="Say hello")
    mocked = client.responses.with_raw_response.create(model="demo-chat", input="Say hello")
    seen = {
        name: json.loads(access_line(world[0], raw.headers["x-request-id"]))
        for name, raw in (("direct", direct), ("chat", chat), ("mock", mocked))
    }
    assert {name: (line["format"], line["translated"]) for name, line in seen.items()} == {
        "direct": ("openai_responses", False),
        "chat": ("openai_responses", True),
        "mock": ("openai_responses", True),
    }


def test_the_mocks_errors_reach_a_responses_client_in_openais_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as rejected:
        client.responses.create(model="demo-error-400", input="hi")
    assert rejected.value.code == "invalid_value" and "(upstream demo/mock-error-400 answered 400)" in rejected.value.message
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model="demo-error-429", input="hi")
    assert limited.value.code == "upstream_rate_limited"
