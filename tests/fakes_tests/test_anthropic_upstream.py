"""Checks that the fake Anthropic upstream speaks the wire format the official SDK expects."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from tests.fakes import anthropic_wire as wire
from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic, errors

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-api03-test-abcd1234wxyz"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"name": "get_time", "description": "Time in a zone", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]
TWO_CALLS = [
    wire.text("Let me check both."),
    wire.tool_use("get_weather", {"city": "Paris"}, id="toolu_01weather"),
    wire.tool_use("get_time", {"tz": "Europe/Paris"}, id="toolu_01time"),
]
HEADERS = {"content-type": "application/json", "x-api-key": KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> FakeAnthropic:
    server.clear()
    return server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key=KEY, max_retries=0, timeout=5) as sdk:
        yield sdk


def raw_post(fake: FakeAnthropic, path: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("POST", path, body, HEADERS if headers is None else headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": MESSAGES, **extra}


def test_plain_message_and_recording(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    reply = client.messages.with_raw_response.create(**ask(), extra_headers={"anthropic-beta": "a-2025-01-01, b-2025-02-02"})
    message = reply.parse()
    assert [type(b) for b in message.content] == [anthropic.types.TextBlock]
    assert message.content[0].text == wire.DEFAULT_REPLY
    assert (message.role, message.model, message.stop_reason, message.stop_sequence) == ("assistant", MODEL, "end_turn", None)
    assert message.id.startswith("msg_01") and message._request_id == reply.headers["request-id"]
    assert reply.headers["content-type"] == "application/json" and reply.headers["request-id"].startswith("req_01")
    [rec] = fake.requests
    assert (
        message.usage.input_tokens == wire.count_input_tokens(rec.json) == len(json.dumps([None, MESSAGES, None]).replace(" ", "")) // 4 + 1
    )
    assert message.usage.output_tokens == len(wire.DEFAULT_REPLY.split())
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens, message.usage.service_tier) == (
        0,
        0,
        "standard",
    )
    assert (rec.method, rec.path, rec.model, rec.api_key) == ("POST", "/v1/messages", MODEL, KEY)
    assert (rec.bearer, rec.x_api_key) == (KEY, None)  # the SDK (2.x) sends its api_key as a Bearer token
    assert rec.version == client.default_headers["anthropic-version"] and rec.betas == ["a-2025-01-01", "b-2025-02-02"]
    assert rec.json == ask() and not rec.stream
    assert fake.count(MODEL) == 1 and fake.count(path="/v1/messages/count_tokens") == 0


def test_stream_has_the_exact_event_sequence(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    text = "one two three four"
    fake.set_rule(MODEL, Behaviour(reply_text=text, chunks=2))
    with client.messages.stream(**ask()) as stream:
        assert "".join(stream.text_stream) == "one two three four"
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert final.usage.input_tokens == wire.count_input_tokens(fake.requests[0].json)

    status, headers, body = raw_post(fake, "/v1/messages", ask(stream=True))
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8" and b"[DONE]" not in body
    events = wire.parse_stream(body)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(data["type"] == name for name, data in events)
    started = events[0][1]["message"]
    assert (started["content"], started["stop_reason"], started["usage"]["output_tokens"]) == ([], None, wire.START_OUTPUT_TOKENS)
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [d["delta"] for _, d in events[3:5]] == [
        {"type": "text_delta", "text": "one two t"},
        {"type": "text_delta", "text": "hree four"},
    ]
    delta = events[6][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": started["usage"]["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }


def test_tool_use_not_streamed_then_results_accepted(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.enqueue(Behaviour(content=TWO_CALLS))
    message = client.messages.create(**ask(tools=TOOLS))
    assert message.stop_reason == "tool_use"
    text, weather, clock = message.content
    assert isinstance(text, anthropic.types.TextBlock) and isinstance(weather, anthropic.types.ToolUseBlock)
    assert (weather.id, weather.name, weather.input) == ("toolu_01weather", "get_weather", {"city": "Paris"})
    assert isinstance(clock, anthropic.types.ToolUseBlock) and clock.input == {"tz": "Europe/Paris"}
    assert message.usage.output_tokens == wire.count_output_tokens(TWO_CALLS)
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_01weather", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_01time", "content": [{"type": "text", "text": "10:00"}]},
    ]
    turn = [*MESSAGES, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]}]
    assert client.messages.create(**ask(messages=[*turn, {"role": "user", "content": results}], tools=TOOLS)).content


@pytest.mark.parametrize(
    ("follow_up", "message"),
    [
        (  # the results of one turn split over two user messages: the first lacks one
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01weather", "content": "18C"}]}],
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01time.",
        ),
        (
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc", "content": "18C"}]}],
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01weather, toolu_01time.",
        ),
    ],
)
def test_unpaired_tool_results_are_refused(client: anthropic.Anthropic, follow_up: list[Any], message: str) -> None:
    turn = [*MESSAGES, {"role": "assistant", "content": TWO_CALLS}, *follow_up]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**ask(messages=turn, tools=TOOLS))
    assert info.value.api_message is not None and info.value.api_message.startswith(message)
    stray = [*MESSAGES, {"role": "assistant", "content": "hi"}, *follow_up]
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id` found in `tool_result` blocks"):
        client.messages.create(**ask(messages=stray))


def test_tool_use_streamed_two_parallel_blocks(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.set_rule(MODEL, Behaviour(content=TWO_CALLS, chunks=3))
    with client.messages.stream(**ask(tools=TOOLS)) as stream:
        fragments: dict[int, list[str]] = {}
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.setdefault(event.index, []).append(event.delta.partial_json)
        final = stream.get_final_message()
    assert sorted(fragments) == [1, 2] and all(parts[0] == "" and len(parts) == 4 for parts in fragments.values())
    assert json.loads("".join(fragments[1])) == {"city": "Paris"} and json.loads("".join(fragments[2])) == {"tz": "Europe/Paris"}
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in final.content] == [
        ("text", None, None),
        ("tool_use", "toolu_01weather", {"city": "Paris"}),
        ("tool_use", "toolu_01time", {"tz": "Europe/Paris"}),
    ]
    _, _, body = raw_post(fake, "/v1/messages", ask(stream=True, tools=TOOLS))
    starts = [d for n, d in wire.parse_stream(body) if n == "content_block_start"]
    assert [s["content_block"] for s in starts[1:]] == [
        {"type": "tool_use", "id": "toolu_01weather", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "toolu_01time", "name": "get_time", "input": {}},
    ]


def test_thinking_with_signature(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    config: Any = {"type": "enabled", "budget_tokens": 1024}
    message = client.messages.create(**ask(max_tokens=2048, thinking=config))
    block, answer = message.content
    assert isinstance(block, anthropic.types.ThinkingBlock) and isinstance(answer, anthropic.types.TextBlock)
    assert (block.thinking, block.signature) == (wire.DEFAULT_THINKING, wire.signature_for(wire.DEFAULT_THINKING))
    with client.messages.stream(**ask(max_tokens=2048, thinking=config)) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert kinds == ["thinking_delta"] * 3 + ["signature_delta"] + ["text_delta"] * 3
    assert final.content[0] == block  # the signature arrives whole in its signature_delta
    # the thinking block (with its signature) goes back in the next turn, as Anthropic requires
    turn = [*MESSAGES, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]}]
    assert client.messages.create(**ask(max_tokens=2048, thinking=config, messages=[*turn, {"role": "user", "content": "more"}]))
    fake.enqueue(Behaviour(content=[wire.redacted_thinking(), wire.text("ok")]))
    redacted = client.messages.create(**ask(max_tokens=2048, thinking=config)).content[0]
    assert isinstance(redacted, anthropic.types.RedactedThinkingBlock) and redacted.data == wire.redacted_thinking()["data"]


def _call(input: Any, id: str = "toolu_01x") -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": "get_weather", "input": input}


def _image(source: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": "What is this?"}]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"max_tokens": 1024, "thinking": {"type": "enabled", "budget_tokens": 1024}},
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 100}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"max_tokens": 4096, "temperature": 0.2, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "`temperature` may only be set to 1",
        ),
        (
            {"max_tokens": 4096, "tools": TOOLS, "tool_choice": {"type": "any"}, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
        ({"messages": [{"role": "system", "content": "be brief"}, *MESSAGES]}, "messages.0.role: Input should be 'user' or 'assistant'"),
        ({"max_tokens": None}, "max_tokens: Field required"),
        # OpenAI fields leaking into an Anthropic body, and the shapes a translation gets wrong
        ({"stream_options": {"include_usage": True}}, "stream_options: Extra inputs are not permitted"),
        ({"stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "messages: text content blocks must be non-empty"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0: all messages must have non-empty content"),
        (
            {"messages": [*MESSAGES, {"role": "assistant", "content": [_call('{"city": "Paris"}')]}]},
            "messages.1.content.0.tool_use.input: Input should be",
        ),
        (
            {"messages": [*MESSAGES, {"role": "assistant", "content": [_call({}, "call:1")]}]},
            "messages.1.content.0.tool_use.id: String should match",
        ),
        (
            {"messages": [*MESSAGES, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]}]},
            "messages.1.content.0.thinking.signature",
        ),
        (
            {"messages": [_image({"type": "base64", "media_type": "image/bmp", "data": "AAAA"})]},
            "messages.0.content.0.image.source.base64.media_type",
        ),
        (
            {"messages": [_image({"type": "base64", "media_type": "image/png", "data": "data:image/png;base64,AAAA"})]},
            "messages.0.content.0.image.source.base64.data",
        ),
        (
            {"messages": [_image({"type": "image_url", "url": "https://x/y.png"})]},
            "messages.0.content.0.image.source: Input tag 'image_url'",
        ),
        ({"tools": [{"name": "f", "parameters": {"type": "object"}}]}, "tools.0.custom.input_schema: Field required"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "name": "get_time"}}, "tool_choice: Input tag 'function' found"),
        ({"tools": TOOLS, "tool_choice": {"type": "tool"}}, "tool_choice.tool.name: Field required"),
    ],
)
def test_requests_the_api_refuses(fake: FakeAnthropic, extra: dict[str, Any], message: str) -> None:
    payload = {k: v for k, v in ask(**extra).items() if v is not None}
    status, _, body = raw_post(fake, "/v1/messages", payload)
    error = json.loads(body)["error"]
    assert (status, error["type"]) == (400, "invalid_request_error") and error["message"].startswith(message)


def test_valid_images_and_relaxed_checks(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    png = _image({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    linked = _image({"type": "url", "url": "https://example.com/cat.png"})
    assert client.messages.create(**ask(messages=[png, {"role": "assistant", "content": "A cat."}, linked])).content
    prefill = [*MESSAGES, {"role": "assistant", "content": ""}]  # only the final assistant turn may be empty
    assert raw_post(fake, "/v1/messages", ask(messages=prefill))[0] == 200
    fake.strict_fields = False
    assert raw_post(fake, "/v1/messages", ask(future_field=1))[0] == 200
    assert raw_post(fake, "/v1/messages/count_tokens", {"model": MODEL, "messages": MESSAGES, "max_tokens": 5})[0] == 200
    fake.clear()
    assert raw_post(fake, "/v1/messages/count_tokens", {"model": MODEL, "messages": MESSAGES, "max_tokens": 5})[0] == 400


def test_cache_usage_fields(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    cached = wire.usage(7, 5, cache_read=1000, cache_write_5m=200, cache_write_1h=30)
    fake.set_rule(MODEL, Behaviour(usage=cached))
    usage = client.messages.create(**ask()).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (7, 5, 1000, 230)
    assert usage.cache_creation is not None
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (200, 30)
    with client.messages.stream(**ask()) as stream:
        streamed = stream.get_final_message().usage
    assert streamed == usage
    # the older API's message_delta held output_tokens only: the input counts come from message_start
    fake.set_rule(MODEL, Behaviour(usage=cached, legacy_delta_usage=True))
    _, _, body = raw_post(fake, "/v1/messages", ask(stream=True))
    assert [d["usage"] for n, d in wire.parse_stream(body) if n == "message_delta"] == [{"output_tokens": 5}]
    with client.messages.stream(**ask()) as stream:
        assert stream.get_final_message().usage == usage
    # a partial override merges over the counted usage
    fake.set_rule(MODEL, Behaviour(usage={"cache_read_input_tokens": 9}))
    partial = client.messages.create(**ask()).usage
    assert (partial.cache_read_input_tokens, partial.input_tokens) == (9, wire.count_input_tokens(ask()))


def test_count_tokens_matches_the_reply_usage(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES, system=system, tools=TOOLS)
    assert counted.input_tokens == wire.count_input_tokens({"system": system, "messages": MESSAGES, "tools": TOOLS})
    assert counted.input_tokens == client.messages.create(**ask(system=system, tools=TOOLS)).usage.input_tokens
    assert fake.count(path="/v1/messages/count_tokens") == 1
    assert "max_tokens" not in fake.requests[0].json  # count_tokens needs none
    fake.enqueue(Behaviour(usage={"input_tokens": 4242}))
    assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == 4242
    status, _, body = raw_post(fake, "/v1/messages/count_tokens", {"model": MODEL})
    assert status == 400 and json.loads(body)["error"]["message"] == "messages: Field required"


ERROR_CASES = [
    (errors.bad_request("messages: text content blocks must be non-empty"), anthropic.BadRequestError, 400, "invalid_request_error"),
    (errors.invalid_api_key(), anthropic.AuthenticationError, 401, "authentication_error"),
    (errors.permission_denied(), anthropic.PermissionDeniedError, 403, "permission_error"),
    (errors.model_not_found("claude-nope"), anthropic.NotFoundError, 404, "not_found_error"),
    (errors.too_large(), anthropic.ContentTooLargeError, 413, "request_too_large"),
    (errors.rate_limited(retry_after=7), anthropic.RateLimitError, 429, "rate_limit_error"),
    (errors.api_error(), anthropic.InternalServerError, 500, "api_error"),
    (errors.overloaded(), anthropic.OverloadedError, 529, "overloaded_error"),
]


@pytest.mark.parametrize(("behaviour", "exc_type", "status", "kind"), ERROR_CASES)
def test_error_classes_surface_as_sdk_exceptions(
    fake: FakeAnthropic, client: anthropic.Anthropic, behaviour: Behaviour, exc_type: type[anthropic.APIStatusError], status: int, kind: str
) -> None:
    fake.enqueue(behaviour)
    with pytest.raises(exc_type) as info:
        client.messages.create(**ask())
    error = info.value
    assert (error.status_code, error.type) == (status, kind)
    assert behaviour.error is not None and error.api_message == behaviour.error["message"]
    assert isinstance(error.body, dict) and error.body["type"] == "error" and error.body["request_id"] == error.request_id
    assert error.request_id is not None and error.request_id.startswith("req_01")
    # the queue is FIFO and one-shot: the next request succeeds, streamed too
    fake.enqueue(behaviour)
    with pytest.raises(exc_type), client.messages.stream(**ask()) as stream:
        stream.get_final_message()
    assert client.messages.create(**ask()).content


def test_retry_after_header_and_model_rules(fake: FakeAnthropic) -> None:
    fake.set_rule("claude-busy", errors.rate_limited(retry_after=7))
    status, headers, body = raw_post(fake, "/v1/messages", ask(model="claude-busy"))
    assert (status, headers["retry-after"], headers["anthropic-ratelimit-requests-remaining"]) == (429, "7", "0")
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    fake.set_rule("claude-down", errors.overloaded())
    assert raw_post(fake, "/v1/messages", ask(model="claude-down"))[0] == 529
    assert raw_post(fake, "/v1/messages", ask())[0] == 200  # other models behave
    assert (fake.count("claude-busy"), fake.count("claude-down"), fake.count(MODEL)) == (1, 1, 1)


def test_version_and_key_are_required(fake: FakeAnthropic) -> None:
    no_version = {k: v for k, v in HEADERS.items() if k != "anthropic-version"}
    status, _, body = raw_post(fake, "/v1/messages", ask(), no_version)
    assert status == 400 and json.loads(body)["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    no_key = {k: v for k, v in HEADERS.items() if k != "x-api-key"}
    status, _, body = raw_post(fake, "/v1/messages", ask(), no_key)
    assert status == 401 and json.loads(body)["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    status, _, body = raw_post(fake, "/v1/nope", ask())
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    status, _, body = raw_post(fake, "/v1/messages", b"{not json")
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    fake.require_version = False
    assert raw_post(fake, "/v1/messages", ask(), no_version)[0] == 200
    with anthropic.Anthropic(base_url=fake.url, auth_token="oauth-token-1", max_retries=0, timeout=5) as bearer:
        assert bearer.messages.create(**ask()).content
    assert (fake.requests[-1].bearer, fake.requests[-1].api_key, fake.requests[-1].x_api_key) == ("oauth-token-1", "oauth-token-1", None)
    assert (fake.requests[0].x_api_key, fake.requests[0].api_key, fake.requests[0].bearer) == (KEY, KEY, None)  # raw_post sends x-api-key
    fake.max_body = 100
    status, _, body = raw_post(fake, "/v1/messages", ask(messages=[{"role": "user", "content": "x" * 200}]))
    assert status == 413 and json.loads(body)["error"]["type"] == "request_too_large"


def test_error_event_mid_stream(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.enqueue(errors.error_mid_stream("content_block_stop"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(**ask()) as stream:
        seen.extend(e.type for e in stream)
    assert (info.value.status_code, info.value.type, info.value.api_message) == (200, "overloaded_error", "Overloaded")
    assert seen[:2] == ["message_start", "content_block_start"] and "content_block_stop" not in seen
    fake.enqueue(errors.error_mid_stream(3, "api_error", "Internal server error"))
    _, _, body = raw_post(fake, "/v1/messages", ask(stream=True))
    events = wire.parse_stream(body)
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert events[-1][1]["error"] == {"type": "api_error", "message": "Internal server error"}


def test_dropped_stream(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.enqueue(errors.drop_mid_stream(4))  # message_start, content_block_start, ping, one text delta
    seen: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError), client.messages.stream(**ask()) as stream:
        seen.extend(e.type for e in stream)  # keeps the events that arrived before the connection died
    assert seen == ["message_start", "content_block_start", "content_block_delta", "text"]
    fake.enqueue(errors.drop_mid_body(10))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/v1/messages", json.dumps(ask()).encode(), HEADERS)
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == 10
    conn.close()


def test_paused_stream_resumes_when_told(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    resume = threading.Event()
    fake.enqueue(Behaviour(pause_before_event="message_delta", resume=resume))
    with client.messages.stream(**ask()) as stream:
        before = []
        for event in stream:
            before.append(event.type)
            if event.type == "content_block_stop":
                break  # everything up to the pause has arrived while the fake waits
        resume.set()
        assert stream.get_final_message().stop_reason == "end_turn"
    assert before[-1] == "content_block_stop" and before.count("text") == 3


def test_held_reply_is_recorded_first_and_sent_on_release(fake: FakeAnthropic) -> None:
    release = threading.Event()
    fake.enqueue(Behaviour(release=release))
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(raw_post(fake, "/v1/messages?beta=true", ask())[0]))
    worker.start()
    assert fake.wait_for_requests(1, timeout=10) and answers == []  # recorded while the reply is held
    release.set()
    worker.join(10)
    assert answers == [200] and fake.requests[0].path == "/v1/messages?beta=true"  # Claude Code's query string is kept


def test_injected_events_and_key_echo(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    unknown = wire.sse("content_block_future", {"type": "content_block_future", "index": 0})
    fake.enqueue(Behaviour(inject={2: unknown, 9: b": trailing comment\n\n"}))
    _, _, body = raw_post(fake, "/v1/messages", ask(stream=True))
    assert [n for n, _ in wire.parse_stream(body)][1:4] == ["content_block_start", "content_block_future", "ping"]
    assert body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n: trailing comment\n\n')
    fake.enqueue(errors.echo_key())
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(**ask())
    assert info.value.api_message == f"invalid x-api-key {KEY} for this workspace"  # the raw key, echoed
    fake.enqueue(Behaviour(bad_json=True))
    status, headers, body = raw_post(fake, "/v1/messages", ask())
    assert status == 200 and headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)


def test_models_listing(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    assert [m.id for m in client.models.list()] == [m for m, _, _ in wire.MODELS]
    assert client.models.retrieve(MODEL).display_name == "Claude Sonnet 4.6"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")
