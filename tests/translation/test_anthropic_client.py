"""The official anthropic SDK through faregate to an OpenAI-compatible deployment (translated both
ways, real HTTP): plain and streamed replies, tool use and results (two parallel calls, streamed as
input_json_delta), images, JSON schema output, usage equal to the upstream's and the same cost
streamed or not, drop_params, thinking signatures dropped and disclosed, and a cut stream ending
with Anthropic's error event."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_upstream import errors as anthropic_errors
from tests.fakes.openai_upstream import Behaviour, errors
from tests.translation.conftest import World

# gpt-4o-mini's shipped rates (USD per million): in 0.15, cached in 0.075, out 0.6
UPSTREAM_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 40,
    "total_tokens": 1240,
    "prompt_tokens_details": {"cached_tokens": 1000},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
UPSTREAM_COST = (200 * 0.15 + 1000 * 0.075 + 40 * 0.6) / 1e6
HELLO: Any = [{"role": "user", "content": "Say hello"}]
TOOLS: Any = [
    {"name": "get_weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
]
PARALLEL = (
    {"id": "call_A", "name": "get_weather", "arguments": '{"city": "Paris"}'},
    {"id": "call_B", "name": "get_time", "arguments": '{"tz": "CET"}'},
)


def cost_of(w: World, request_id: str) -> float:
    return float(json.loads(w.access_line(request_id))["cost_usd"])


def test_plain_reply_with_usage_equal_to_the_upstream(w: World) -> None:
    w.openai_upstream.enqueue(Behaviour(reply_text="Hello there.", usage=UPSTREAM_USAGE))
    raw = w.anthropic().messages.with_raw_response.create(
        model="gpt", max_tokens=200, system="Be brief.", messages=HELLO, stop_sequences=["END"]
    )
    message = raw.parse()
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello there."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    # Anthropic's sense: input_tokens excludes the cache reads
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (200, 1000, 40)
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx(UPSTREAM_COST)
    sent = w.openai_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.api_key
    assert sent.json["messages"] == [{"role": "system", "content": "Be brief."}, *HELLO]
    assert sent.json["max_completion_tokens"] == 200 and sent.json["stop"] == ["END"]


def test_streamed_reply_has_anthropics_event_sequence_and_costs_the_same(w: World) -> None:
    w.openai_upstream.enqueue(Behaviour(reply_text="Hello there.", usage=UPSTREAM_USAGE, chunks=4))
    with w.anthropic().messages.stream(model="gpt", max_tokens=200, messages=HELLO) as stream:
        request_id = stream.response.headers["x-request-id"]
        names = [event.type for event in stream if event.type != "text"]
        final = stream.get_final_message()
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and names[-3] == "content_block_stop"
    assert set(names[2:-3]) == {"content_block_delta"}
    assert final.content[0].text == "Hello there." and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (200, 1000, 40)
    sent = w.openai_upstream.requests[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}  # asked, to price the stream
    assert cost_of(w, request_id) == pytest.approx(UPSTREAM_COST)


def test_parallel_tool_use_and_results_round_trip(w: World) -> None:
    client = w.anthropic()
    w.openai_upstream.enqueue(Behaviour(tool_calls=PARALLEL))
    message = client.messages.create(model="gpt", max_tokens=200, messages=HELLO, tools=TOOLS, tool_choice={"type": "auto"})
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(b.id, b.name, b.input) for b in uses] == [("call_A", "get_weather", {"city": "Paris"}), ("call_B", "get_time", {"tz": "CET"})]
    sent = w.openai_upstream.requests[-1].json
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    w.openai_upstream.enqueue(Behaviour(reply_text="Sunny, 14:00."))
    follow: Any = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_A", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_B", "content": [{"type": "text", "text": "14:00"}]},
            ],
        },
    ]
    answer = client.messages.create(model="gpt", max_tokens=200, messages=follow, tools=TOOLS)
    assert answer.content[0].text == "Sunny, 14:00."  # type: ignore[union-attr]
    turns = w.openai_upstream.requests[-1].json["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "tool", "tool"]
    calls = turns[1]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("call_A", "get_weather", {"city": "Paris"}),
        ("call_B", "get_time", {"tz": "CET"}),
    ]
    assert [(t["tool_call_id"], t["content"]) for t in turns[2:]] == [("call_A", "sunny"), ("call_B", "14:00")]


def test_a_failed_tool_result_reaches_an_openai_model_as_an_error_text_not_a_400(w: World) -> None:
    """Claude Code marks a failed tool call's result is_error; OpenAI has no such field. Under the
    default drop_params false it still goes through: the tool message says "Error: ...", and
    nothing is listed as dropped."""
    w.openai_upstream.enqueue(Behaviour(reply_text="The file is missing."))
    turns: Any = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_time", "input": {"tz": "CET"}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "is_error": True,
                    "content": "<tool_use_error>no such zone</tool_use_error>",
                }
            ],
        },
    ]
    raw = w.anthropic().messages.with_raw_response.create(model="gpt", max_tokens=100, messages=turns, tools=TOOLS)
    assert raw.parse().content[0].text == "The file is missing."  # type: ignore[union-attr]
    assert "x-faregate-dropped" not in raw.headers
    tool = w.openai_upstream.requests[-1].json["messages"][-1]
    assert tool == {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: <tool_use_error>no such zone</tool_use_error>"}


def test_streamed_tool_use_arrives_as_input_json_delta(w: World) -> None:
    w.openai_upstream.enqueue(Behaviour(tool_calls=PARALLEL))
    with w.anthropic().messages.stream(model="gpt", max_tokens=200, messages=HELLO, tools=TOOLS) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert set(deltas) == {"input_json_delta"}
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(b.id, b.name, b.input) for b in uses] == [("call_A", "get_weather", {"city": "Paris"}), ("call_B", "get_time", {"tz": "CET"})]


def test_images_base64_and_url(w: World) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    content: Any = [
        {"type": "text", "text": "What are these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    w.anthropic().messages.create(model="gpt", max_tokens=100, messages=[{"role": "user", "content": content}])
    parts = w.openai_upstream.requests[-1].json["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What are these?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}


def test_json_schema_output(w: World) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
    w.openai_upstream.enqueue(Behaviour(reply_text='{"city": "Paris"}'))
    message = w.anthropic().messages.create(
        model="gpt", max_tokens=100, messages=HELLO, extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    )
    assert json.loads(message.content[0].text) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = w.openai_upstream.requests[-1].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema


def test_an_unmappable_field_is_a_400_naming_it_unless_drop_params(w: World) -> None:
    client = w.anthropic()
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="gpt", max_tokens=100, messages=HELLO, extra_body={"top_k": 5})
    assert "top_k" in refused.value.message and "drop_params" in refused.value.message
    assert isinstance(refused.value.body, dict) and refused.value.body["error"]["type"] == "invalid_request_error"
    assert w.openai_upstream.requests == []
    raw = client.messages.with_raw_response.create(model="gpt-lax", max_tokens=100, messages=HELLO, extra_body={"top_k": 5})
    assert raw.parse().content
    assert raw.headers["x-faregate-dropped"] == "top_k"
    assert "top_k" not in w.openai_upstream.requests[-1].json


def test_thinking_signatures_are_dropped_and_disclosed_whatever_drop_params(w: World) -> None:
    turns: Any = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "The user wants a greeting.", "signature": "c2lnOmFiYw=="},
                {"type": "text", "text": "Hello!"},
            ],
        },
        {"role": "user", "content": "Again"},
    ]
    raw = w.anthropic().messages.with_raw_response.create(model="gpt", max_tokens=100, messages=turns)  # drop_params: false
    assert raw.parse().content
    assert raw.headers["x-faregate-dropped"] == "thinking"
    sent = w.openai_upstream.requests[-1].json
    assert "c2lnOmFiYw==" not in json.dumps(sent)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("stream", [False, True])
def test_failover_before_the_first_byte_to_another_format_drops_the_signature_and_says_so(w: World, stream: bool) -> None:
    w.anthropic_upstream.enqueue(anthropic_errors.overloaded())
    turns: Any = [
        *HELLO,
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "A greeting.", "signature": "c2lnOmFiYw=="}, {"type": "text", "text": "Hi"}],
        },
        {"role": "user", "content": "Again"},
    ]
    raw = w.anthropic().messages.with_raw_response.create(model="mixed", max_tokens=100, messages=turns, stream=stream)
    assert raw.headers["x-faregate-provider"] == "oa" and raw.headers["x-faregate-dropped"] == "thinking"
    body = raw.http_response.read()
    assert (b"event: message_stop" in body) if stream else (b"Hello from the fake upstream." in body)
    tried = w.anthropic_upstream.requests[-1].json  # the diagonal got the signature as sent
    assert tried["messages"][1]["content"][0]["signature"] == "c2lnOmFiYw=="
    assert "c2lnOmFiYw==" not in json.dumps(w.openai_upstream.requests[-1].json)


def test_an_upstream_400_reaches_the_client_in_its_own_format(w: World) -> None:
    w.openai_upstream.enqueue(errors.bad_request("Invalid 'messages[0].content': string too long.", param="messages[0].content"))
    with pytest.raises(anthropic.BadRequestError) as refused:
        w.anthropic().messages.create(model="gpt", max_tokens=100, messages=HELLO)
    assert "string too long" in refused.value.message and "oa/gpt-4o-mini" in refused.value.message
    assert isinstance(refused.value.body, dict) and refused.value.body["type"] == "error"


def test_a_stream_cut_after_the_first_byte_ends_with_anthropics_error_event(w: World) -> None:
    w.openai_upstream.enqueue(errors.drop_mid_stream(3))
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as cut,
        w.anthropic().messages.stream(model="gpt-cut", max_tokens=100, messages=HELLO) as stream,
    ):
        seen.extend(event.type for event in stream)
    assert seen[0] == "message_start" and "content_block_delta" in seen  # the reply had begun
    assert "interrupted" in cut.value.message and "gpt-4o-mini-2024-07-18" in cut.value.message
    assert isinstance(cut.value.body, dict) and cut.value.body["type"] == "error"
