"""The fake OpenAI upstream's Responses API (``POST /v1/responses``) checked against the official
openai SDK: every JSON body validates as ``openai.types.responses.Response`` and every streamed
event as ``ResponseStreamEvent`` (pydantic, with no field the SDK does not know but OpenAI's
``obfuscation`` padding and ``store`` echo), the event order is OpenAI's, and ``OpenAI(base_url=fake).responses``
parses plain and streamed replies. Real HTTP on loopback; no gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.fakes import openai_responses_wire as wire
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_wire import Behaviour, errors

# Sent by OpenAI and not declared by the SDK's types: the per-delta padding, and a response's `store` echo
KNOWN_EXTRAS = {"obfuscation", "store"}
# OpenAI's API reference (its OpenAPI spec) has the function's `name` in this event; the Python SDK's type does not
EVENT_EXTRAS = {"response.function_call_arguments.done": [".name"]}
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALLS = [
    {"id": "call_A1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
    {"id": "call_B2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
]
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def unknown_fields(model: Any, path: str = "") -> list[str]:
    """Paths of the fields a parsed SDK object holds that its type does not declare."""
    found: list[str] = []
    if isinstance(model, pydantic.BaseModel):
        found += [f"{path}.{k}" for k in (model.model_extra or {}) if k not in KNOWN_EXTRAS]
        for name in type(model).model_fields:
            found += unknown_fields(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += unknown_fields(item, f"{path}[{i}]")
    return found


def sdk_response(body: Any) -> Response:
    """``body`` as the SDK's Response type, strictly: it validates, with no undeclared field."""
    parsed = Response.model_validate(body)
    assert unknown_fields(parsed) == [], unknown_fields(parsed)
    return parsed


def sdk_event(name: str, data: Any) -> Any:
    """One streamed event as the SDK's ResponseStreamEvent: it validates, names its own type in
    ``event:``, and holds no undeclared field."""
    parsed = EVENTS.validate_python(data)
    assert parsed.type == data["type"] == name, (name, data)
    unknown = [f for f in unknown_fields(parsed) if f not in EVENT_EXTRAS.get(name, [])]
    assert unknown == [], unknown
    return parsed


def sdk_stream(raw: bytes) -> list[Any]:
    """Every event of a Responses stream, checked by :func:`sdk_event`, numbered 0, 1, 2…, and
    every lifecycle event (created, in_progress, completed, failed, incomplete) about the same
    response id (the SDK's stream helper raises on a change)."""
    events = [sdk_event(name, data) for name, data in wire.parse_stream(raw)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) <= 1, ids
    return events


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(upstream: FakeOpenAI) -> FakeOpenAI:
    upstream.clear()
    return upstream


def post(fake: FakeOpenAI, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(fake.url + "/responses", json=body, headers={"authorization": "Bearer sk-test"}, timeout=10)


def sdk(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=0, timeout=10)


def test_a_plain_reply_is_a_response_the_sdk_types_accept() -> None:
    body = {"model": "gpt-4o-mini", "input": "Say hello", "instructions": "Be brief.", "temperature": 0.5}
    whole = wire.reply(body, Behaviour(), "Hello there.", 1_741_000_000)
    parsed = sdk_response(whole)
    assert parsed.output_text == "Hello there." and parsed.status == "completed" and parsed.instructions == "Be brief."
    assert parsed.usage is not None and parsed.usage.output_tokens == 2 and parsed.usage.input_tokens_details.cached_tokens == 0
    assert parsed.id.startswith("resp_") and parsed.output[0].id.startswith("msg_")  # type: ignore[union-attr]
    assert wire.reply(body, Behaviour(), "Hello there.", 1_741_000_000) == whole  # deterministic: a test can rebuild it


@pytest.mark.parametrize(
    ("body", "behaviour", "kinds"),
    [
        ({"input": "hi"}, Behaviour(), ["message"]),
        ({"input": "hi", "tools": [WEATHER], "tool_choice": "required"}, Behaviour(tool_calls=CALLS), ["function_call", "function_call"]),
        ({"input": "hi", "reasoning": {"effort": "low"}}, Behaviour(), ["reasoning", "message"]),
        (
            {"input": "hi", "reasoning": {"effort": "high", "summary": "auto"}, "tools": [WEATHER]},
            Behaviour(tool_calls=CALLS[:1]),
            ["reasoning", "function_call"],
        ),
        (
            {"input": "hi", "text": {"format": {"type": "json_schema", "name": "place", "schema": {"type": "object"}, "strict": True}}},
            Behaviour(reply_text='{"a": 1}'),
            ["message"],
        ),
        ({"input": "hi", "max_output_tokens": 16}, Behaviour(reply_text=" ".join(["word"] * 20)), ["message"]),
    ],
    ids=["text", "parallel-calls", "reasoning", "reasoning-and-call", "json-schema", "incomplete"],
)
def test_every_reply_and_every_event_of_its_stream_match_the_sdk_types(
    body: dict[str, Any], behaviour: Behaviour, kinds: list[str]
) -> None:
    payload = {"model": "gpt-4o-mini", **body}
    assert wire.validate(True, payload) is None
    whole = wire.reply(payload, behaviour, "Hello there, friend.", 1_741_000_000)
    parsed = sdk_response(whole)
    assert [item.type for item in parsed.output] == kinds
    events = sdk_stream(b"".join(wire.stream_events(payload, whole, behaviour)))
    assert events[0].type == "response.created" and events[0].response.status == "in_progress" and events[0].response.usage is None
    assert events[1].type == "response.in_progress"
    final = events[-1]
    assert final.type == ("response.incomplete" if parsed.status == "incomplete" else "response.completed")
    assert final.response == parsed  # the last event carries the whole response, as stream=false gets it
    added = [e.item for e in events if e.type == "response.output_item.added"]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.id for i in added] == [i.id for i in done] == [i.id for i in parsed.output]
    assert done == parsed.output
    for call in (i for i in parsed.output if i.type == "function_call"):
        deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.item_id == call.id]
        (finished,) = [e for e in events if e.type == "response.function_call_arguments.done" and e.item_id == call.id]
        assert "".join(deltas) == finished.arguments == call.arguments
        assert (finished.model_extra or {}).get("name") == call.name
    if parsed.status == "incomplete":
        assert parsed.incomplete_details is not None and parsed.incomplete_details.reason == "max_output_tokens"
        assert parsed.output_text == " ".join(["word"] * 16)


def test_a_text_stream_goes_in_openais_order_with_usage_in_the_last_event(fake: FakeOpenAI) -> None:
    use = wire.usage(120, 30, cached=100, reasoning=10)
    fake.enqueue(Behaviour(reply_text="Hello there, friend.", usage=use))
    r = post(fake, {"model": "gpt-4o-mini", "input": "Say hello", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert b"[DONE]" not in r.content and r.content.startswith(b"event: response.created\ndata: {")
    events = sdk_stream(r.content)
    assert [e.type for e in events] == TEXT_EVENTS
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there, friend."
    assert all(e.obfuscation for e in events if e.type == "response.output_text.delta")  # type: ignore[attr-defined]
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (120, 30, 150)
    assert usage.input_tokens_details.cached_tokens == 100 and usage.output_tokens_details.reasoning_tokens == 10
    rec = fake.requests[-1]
    assert r.content == b"".join(
        wire.stream_events(rec.json, wire.reply(rec.json, Behaviour(usage=use), "Hello there, friend.", int(rec.time)), Behaviour())
    )


def test_obfuscation_is_left_out_when_the_request_says_so(fake: FakeOpenAI) -> None:
    r = post(fake, {"model": "gpt-4o-mini", "input": "hi", "stream": True, "stream_options": {"include_obfuscation": False}})
    assert [e for _, e in wire.parse_stream(r.content) if "obfuscation" in e] == []


@pytest.mark.parametrize("after", [4, 6])
def test_a_failed_stream_ends_with_response_failed(fake: FakeOpenAI, after: int) -> None:
    fake.enqueue(wire.ResponsesBehaviour(failed_after=after))
    events = sdk_stream(post(fake, {"model": "gpt-4o-mini", "input": "hi", "stream": True}).content)
    assert len(events) == after + 1 and events[-1].type == "response.failed"
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"


def test_an_error_event_ends_a_stream(fake: FakeOpenAI) -> None:
    fake.enqueue(wire.ResponsesBehaviour(error_event_after=5, failure={"code": "rate_limit_exceeded", "message": "Slow down"}))
    events = sdk_stream(post(fake, {"model": "gpt-4o-mini", "input": "hi", "stream": True}).content)
    assert events[-1].type == "error" and (events[-1].code, events[-1].message) == ("rate_limit_exceeded", "Slow down")


def test_the_sdk_parses_plain_and_streamed_replies_and_the_stream_helper(fake: FakeOpenAI) -> None:
    client = sdk(fake)
    reply = client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "Say hello"}], instructions="Be brief.")
    assert reply.output_text == "Hello from the fake upstream." and reply.status == "completed"
    types = [e.type for e in client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)]
    assert types == TEXT_EVENTS
    with client.responses.stream(model="gpt-4o-mini", input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the fake upstream."
    sent = fake.requests[-1]
    assert sent.path == "/v1/responses" and sent.json["stream"] is True and sent.api_key == "sk-test"


def test_tool_calls_and_their_results_round_trip_with_call_ids(fake: FakeOpenAI) -> None:
    client = sdk(fake)
    fake.enqueue(Behaviour(tool_calls=CALLS))
    reply = client.responses.create(model="gpt-4o-mini", input="Weather in Paris and Oslo?", tools=[WEATHER], tool_choice="auto")  # type: ignore[list-item]
    assert wire.calls_of([i.model_dump() for i in reply.output]) == [
        ("call_A1", "get_weather", {"city": "Paris"}),
        ("call_B2", "get_weather", {"city": "Oslo"}),
    ]
    follow: Any = [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        *[i.model_dump(exclude_none=True) for i in reply.output],
        {"type": "function_call_output", "call_id": "call_A1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_B2", "output": "rain"},
    ]
    assert client.responses.create(model="gpt-4o-mini", input=follow, tools=[WEATHER]).output_text  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError) as orphan:
        client.responses.create(model="gpt-4o-mini", input=[{"type": "function_call_output", "call_id": "call_zz", "output": "x"}])
    assert "call_zz" in orphan.value.message


def test_previous_response_id_is_served_only_for_a_stored_response(fake: FakeOpenAI) -> None:
    client = sdk(fake)
    first = client.responses.create(model="gpt-4o-mini", input="Remember 7.")
    assert (
        client.responses.create(model="gpt-4o-mini", input="Which number?", previous_response_id=first.id).previous_response_id == first.id
    )
    unstored = client.responses.create(model="gpt-4o-mini", input="Forget this.", store=False)
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model="gpt-4o-mini", input="?", previous_response_id=unstored.id)
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "previous_response_not_found"
    assert missing.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi", "max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
        ({"input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort", "invalid_value"),
        ({"input": "hi", "tools": [{"type": "teleport"}]}, "tools[0].type", "invalid_value"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name", "missing_required_parameter"),
        ({}, "input", "missing_required_parameter"),
        ({"input": 7}, "input", "invalid_type"),
    ],
)
def test_bad_requests_get_openais_400(fake: FakeOpenAI, body: dict[str, Any], param: str, code: str) -> None:
    r = post(fake, {"model": "gpt-4o-mini", **body})
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error") and error["message"]


def test_error_behaviours_apply_as_for_chat(fake: FakeOpenAI) -> None:
    client = sdk(fake)
    fake.set_rule("gpt-limited", errors.rate_limited(retry_after=3))
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model="gpt-limited", input="hi")
    assert limited.value.response.headers["retry-after"] == "3" and limited.value.code == "rate_limit_exceeded"
    fake.enqueue(errors.invalid_api_key())
    with pytest.raises(openai.AuthenticationError) as rejected:
        client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    assert "sk-t" not in rejected.value.message.replace("sk-*", "")  # redacted, as OpenAI does
    fake.enqueue(errors.server_error())
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="gpt-4o-mini", input="hi")
    fake.enqueue(errors.drop_mid_stream(4))
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    fake.known_models = frozenset({"gpt-4o-mini"})
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-9", input="hi")


def test_the_checks_refuse_what_openai_would_not_send() -> None:
    payload = {"model": "gpt-4o-mini", "input": "hi"}
    whole = wire.reply(payload, Behaviour(), "Hello there.", 1_741_000_000)
    with pytest.raises(AssertionError):
        sdk_response({**whole, "output_texts": []})  # a field the SDK does not declare
    with pytest.raises(pydantic.ValidationError):
        sdk_response({**whole, "object": "chat.completion"})
    events = wire.stream_events(payload, whole, Behaviour())
    name, data = wire.parse_stream(events[2])[0]
    with pytest.raises(AssertionError):
        sdk_event("response.output_item.done", data)  # `event:` must name the data's own type
    with pytest.raises(AssertionError):
        sdk_event(name, {**data, "sequence": 2})
    with pytest.raises(AssertionError):
        sdk_stream(b"".join(events[:3] + events[4:]))  # a gap in the sequence numbers
    with pytest.raises(pydantic.ValidationError):
        sdk_event("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 4, "delta": "x"})
