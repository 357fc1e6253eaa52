"""The official openai SDK through faregate to an Anthropic deployment (translated both ways, real
HTTP): plain and streamed replies, tool calls and their results (two parallel calls), images, JSON
schema output, usage equal to the upstream's and the same cost streamed or not, drop_params, and a
cut stream ending with an error in OpenAI's format."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.fakes.anthropic_upstream import Behaviour, errors
from tests.fakes.anthropic_wire import text, thinking, tool_use, usage
from tests.translation.conftest import World

# claude-sonnet-4-5's shipped rates (USD per million): in 3, out 15, cache read 0.3, 5m write 3.75, 1h write 6
CACHED_USAGE = usage(100, 50, cache_read=1000, cache_write_5m=200, cache_write_1h=300)
CACHED_COST = (100 * 3 + 1000 * 0.3 + 200 * 3.75 + 300 * 6 + 50 * 15) / 1e6
HELLO = [{"role": "user", "content": "Say hello"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
PARALLEL = [
    text("Checking both."),
    tool_use("get_weather", {"city": "Paris"}, id="toolu_01A"),
    tool_use("get_time", {"tz": "CET"}, id="toolu_01B"),
]


def cost_of(w: World, request_id: str) -> float:
    return float(json.loads(w.access_line(request_id))["cost_usd"])


def test_plain_reply_with_usage_equal_to_the_upstream_and_priced_per_cache_kind(w: World) -> None:
    w.anthropic_upstream.enqueue(Behaviour(reply_text="Hello there.", usage=CACHED_USAGE))
    raw = w.openai().chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, *HELLO], temperature=0.5
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello there." and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 50
    assert reply.usage.prompt_tokens == 100 + 1000 + 200 + 300  # OpenAI's sense: every prompt token
    assert reply.usage.prompt_tokens_details is not None and reply.usage.prompt_tokens_details.cached_tokens == 1000
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx(CACHED_COST)
    assert "x-faregate-dropped" not in raw.headers
    sent = w.anthropic_upstream.requests[-1]
    assert sent.path == "/v1/messages" and sent.api_key and sent.headers.get("anthropic-version")
    assert sent.json["system"] == "Be brief." and sent.json["messages"] == HELLO and sent.json["temperature"] == 0.5
    assert sent.json["max_tokens"] > 0  # required by Anthropic: faregate's documented default


def test_streamed_reply_costs_the_same_as_the_whole_one(w: World) -> None:
    w.anthropic_upstream.enqueue(Behaviour(reply_text="Hello there.", usage=CACHED_USAGE))
    with w.openai().chat.completions.with_streaming_response.create(
        model="claude", messages=HELLO, stream=True, stream_options={"include_usage": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (1600, 50)
    assert w.anthropic_upstream.requests[-1].json["stream"] is True
    assert cost_of(w, request_id) == pytest.approx(CACHED_COST)


def test_parallel_tool_calls_and_their_results_round_trip(w: World) -> None:
    client = w.openai()
    w.anthropic_upstream.enqueue(Behaviour(content=PARALLEL))
    reply = client.chat.completions.create(model="claude", messages=HELLO, tools=TOOLS, tool_choice="auto")
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls" and message.content == "Checking both."
    calls = message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_01A", "get_weather", {"city": "Paris"}),
        ("toolu_01B", "get_time", {"tz": "CET"}),
    ]
    sent = w.anthropic_upstream.requests[-1].json
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"] and sent["tools"][0]["input_schema"]["type"] == "object"
    w.anthropic_upstream.enqueue(Behaviour(reply_text="Sunny, 14:00."))
    follow = [
        *HELLO,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "14:00"},
    ]
    answer = client.chat.completions.create(model="claude", messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Sunny, 14:00."
    turns = w.anthropic_upstream.requests[-1].json["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]  # the two results grouped into one user turn
    uses = [b for b in turns[1]["content"] if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], b["input"]) for b in uses] == [
        ("toolu_01A", "get_weather", {"city": "Paris"}),
        ("toolu_01B", "get_time", {"tz": "CET"}),
    ]
    results = turns[2]["content"]
    assert [(b["type"], b["tool_use_id"]) for b in results] == [("tool_result", "toolu_01A"), ("tool_result", "toolu_01B")]


def test_streamed_parallel_tool_calls_keep_distinct_indices(w: World) -> None:
    w.anthropic_upstream.enqueue(Behaviour(content=PARALLEL, chunks=3))
    chunks = list(w.openai().chat.completions.create(model="claude", messages=HELLO, tools=TOOLS, stream=True))
    assert all(chunk.usage is None for chunk in chunks)  # the client did not ask for usage (faregate still priced it)
    calls: dict[int, dict[str, str]] = {}
    finish = []
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.id or ""
                slot["name"] += (call.function.name if call.function else None) or ""
                slot["arguments"] += (call.function.arguments if call.function else None) or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert finish == ["tool_calls"]
    assert sorted(calls) == [0, 1]
    assert [(calls[i]["id"], calls[i]["name"], json.loads(calls[i]["arguments"])) for i in (0, 1)] == [
        ("toolu_01A", "get_weather", {"city": "Paris"}),
        ("toolu_01B", "get_time", {"tz": "CET"}),
    ]


def test_images_by_data_url_and_by_url(w: World) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    content: Any = [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    w.openai().chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    blocks = w.anthropic_upstream.requests[-1].json["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What are these?"}
    assert blocks[1]["type"] == "image" and blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": png}
    assert blocks[2]["type"] == "image" and blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


def test_json_schema_output(w: World) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
    w.anthropic_upstream.enqueue(Behaviour(reply_text='{"city": "Paris"}'))
    reply = w.openai().chat.completions.create(
        model="claude",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
    )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "Paris"}
    sent = w.anthropic_upstream.requests[-1].json
    assert sent["output_config"]["format"] == {"type": "json_schema", "schema": schema}


def test_reasoning_effort_becomes_a_thinking_budget_and_thinking_comes_back_as_reasoning_content(w: World) -> None:
    w.anthropic_upstream.enqueue(Behaviour(content=[thinking("Greet them warmly."), text("Hello!")]))
    reply = w.openai().chat.completions.create(model="claude", messages=HELLO, reasoning_effort="low", max_completion_tokens=3000)
    message = reply.choices[0].message
    assert message.content == "Hello!" and (message.model_extra or {}).get("reasoning_content") == "Greet them warmly."
    sent = w.anthropic_upstream.requests[-1].json
    assert sent["thinking"]["type"] == "enabled" and 0 < sent["thinking"]["budget_tokens"] < sent["max_tokens"]
    w.anthropic_upstream.enqueue(Behaviour(content=[thinking("Greet them warmly."), text("Hello!")]))
    stream = w.openai().chat.completions.create(
        model="claude", messages=HELLO, reasoning_effort="low", max_completion_tokens=3000, stream=True
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == "Greet them warmly."
    assert "".join(d.content or "" for d in deltas) == "Hello!"


def test_an_unmappable_field_is_a_400_naming_it_unless_drop_params(w: World) -> None:
    client = w.openai()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="claude", messages=HELLO, seed=7)
    assert "seed" in refused.value.message and "drop_params" in refused.value.message
    assert isinstance(refused.value.body, dict) and refused.value.body.get("param") == "seed"
    assert w.anthropic_upstream.requests == []  # refused before anything was sent
    raw = client.chat.completions.with_raw_response.create(model="claude-lax", messages=HELLO, seed=7, logit_bias={"50256": -100})
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-faregate-dropped"] == "logit_bias,seed"
    sent = w.anthropic_upstream.requests[-1].json
    assert "seed" not in sent and "logit_bias" not in sent


def test_an_upstream_400_reaches_the_client_in_its_own_format(w: World) -> None:
    w.anthropic_upstream.enqueue(errors.bad_request("messages: roles must alternate between user and assistant"))
    with pytest.raises(openai.BadRequestError) as refused:
        w.openai().chat.completions.create(model="claude", messages=HELLO)
    assert "roles must alternate" in refused.value.message and "an/claude-sonnet-4-5" in refused.value.message
    assert isinstance(refused.value.body, dict) and "message" in refused.value.body


def test_a_stream_cut_after_the_first_byte_ends_with_an_openai_error_event(w: World) -> None:
    w.anthropic_upstream.enqueue(errors.drop_mid_stream("content_block_stop"))
    stream = w.openai().chat.completions.create(model="claude-cut", messages=HELLO, stream=True)
    got: list[str] = []

    def read() -> None:
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as cut:
        read()
    assert "".join(got)  # the text before the cut reached the client
    assert "interrupted" in cut.value.message and "claude-sonnet-4-5-20250929" in cut.value.message


def test_an_upstream_error_event_mid_stream_ends_with_an_openai_error_event(w: World) -> None:
    w.anthropic_upstream.enqueue(errors.error_mid_stream("content_block_stop"))
    stream = w.openai().chat.completions.create(model="claude-cut", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as cut:
        list(stream)
    assert "Overloaded" in cut.value.message
