"""The Anthropic Messages codec: requests and whole replies, both directions (streams: test_anthropic_stream.py)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from faregate.errors import InvalidRequest, UpstreamProtocolError
from faregate.formats import anthropic, neutral
from faregate.formats.anthropic_reply import ERROR_TYPES

SIGNATURE = "EqQBCkgIARABGAIiQL2yX0kc3Jn5qTcPx8xHwYh9yPq1"


def every_kind() -> dict[str, Any]:
    """A request with every block kind the codec reads, each with its options."""
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Project context.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "They want the weather.", "signature": SIGNATURE},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "units": ["c"]}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [
                            {"type": "text", "text": "clock broken"},
                            {"type": "image", "source": {"type": "url", "url": "https://example.com/clock.png"}},
                        ],
                        "is_error": True,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather now",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            {"name": "get_time", "input_schema": {"type": "object"}, "strict": True, "cache_control": {"type": "ephemeral"}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user-42"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "service_tier": "auto",
    }


def test_decode_reads_every_block_kind() -> None:
    request = anthropic.decode_request(every_kind())
    assert request.model == "claude-sonnet-4-5" and request.max_tokens == 2048
    assert request.system == (neutral.Text("You are terse."), neutral.Text("Project context.", "1h"))
    user, assistant, results = request.messages
    assert user == neutral.Message(
        "user",
        (
            neutral.Text("Look:", "5m"),
            neutral.Image(media_type="image/png", data="iVBORw0KGgo="),
            neutral.Image(url="https://example.com/cat.jpg"),
        ),
    )
    assert assistant.parts == (
        neutral.Thinking("They want the weather.", SIGNATURE),
        neutral.Thinking(redacted="EmwKAhgBEgy3va3pzix/LafPsn4a"),
        neutral.Text("Checking."),
        neutral.ToolCall("toolu_01", "get_weather", '{"city":"Paris","units":["c"]}'),
        neutral.ToolCall("toolu_02", "get_time", "{}"),
    )
    assert results.parts == (
        neutral.ToolResult("toolu_01", (neutral.Text("18C"),)),
        neutral.ToolResult(
            "toolu_02", (neutral.Text("clock broken"), neutral.Image(url="https://example.com/clock.png")), is_error=True, cache="5m"
        ),
        neutral.Text("And?"),
    )
    assert request.tools == (
        neutral.Tool("get_weather", "Weather now", {"type": "object", "properties": {"city": {"type": "string"}}}),
        neutral.Tool("get_time", None, {"type": "object"}, strict=True, cache="5m"),
    )
    assert request.tool_choice == neutral.ToolChoice("required", None, parallel=False)
    assert (request.stop, request.temperature, request.top_p, request.top_k, request.stream) == (("\n\nHuman:",), 0.5, 0.9, 40, True)
    assert request.reasoning == neutral.Reasoning(budget_tokens=1024)
    assert request.user == "user-42" and request.metadata == {}
    assert request.response_format == neutral.ResponseFormat("json_schema", {"type": "object"})
    assert request.extra == {"service_tier": "auto"}


def test_encode_writes_every_block_kind_back_as_it_was() -> None:
    payload, dropped = anthropic.encode_request(anthropic.decode_request(every_kind()), "claude-sonnet-4-5")
    assert dropped == ()
    assert payload == every_kind()
    assert list(payload) == list(every_kind())  # the order Anthropic documents, kept


def test_string_content_and_string_system_are_shorthand() -> None:
    payload = {"model": "m", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}
    request = anthropic.decode_request(payload)
    assert request.system == (neutral.Text("Be brief."),)
    assert request.messages == (neutral.Message("user", (neutral.Text("Hi"),)),)
    assert anthropic.encode_request(request, "m") == (payload, ())


def base(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    payload.update(fields)
    return payload


def blocks(*content: Any, role: str = "user") -> dict[str, Any]:
    return base(messages=[{"role": role, "content": list(content)}])


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        ({"model": "m", "messages": []}, "max_tokens", "max_tokens: Field required"),
        ({"max_tokens": 1, "messages": []}, "model", "model: Field required"),
        ({"model": "m", "max_tokens": 1}, "messages", "messages: Field required"),
        (base(max_tokens="10"), "max_tokens", "max_tokens: Input should be a valid integer"),
        (base(max_tokens=True), "max_tokens", "max_tokens: Input should be a valid integer"),
        (base(max_tokens=-1), "max_tokens", "greater than or equal to 0"),
        (base(messages=[{"role": "system", "content": "x"}]), "messages.0.role", "'user' or 'assistant'"),
        (base(messages=[{"role": "user"}]), "messages.0.content", "Field required"),
        (blocks({"type": "document", "source": {"type": "text", "data": "x"}}), "messages.0.content.0.type", "'document'"),
        (blocks({"type": "search_result"}), "messages.0.content.0.type", "'search_result'"),
        (blocks({"type": "image", "source": {"type": "file", "file_id": "f"}}), "messages.0.content.0.source.type", "'file'"),
        (blocks({"type": "image", "source": {"type": "base64", "data": "x"}}), "messages.0.content.0.source.media_type", "Field required"),
        (
            blocks({"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}),
            "messages.0.content.0.cache_control.ttl",
            "'5m' or '1h'",
        ),
        (blocks({"type": "text", "text": "x", "citations": [{"type": "char_location"}]}), "messages.0.content.0.citations", "citations"),
        (blocks({"type": "tool_use", "id": "t", "name": "f", "input": "[]"}, role="assistant"), "messages.0.content.0.input", "dictionary"),
        (blocks({"type": "tool_result", "content": "x"}), "messages.0.content.0.tool_use_id", "Field required"),
        (
            blocks({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}),
            "messages.0.content.0.content.0.type",
            "'document'",
        ),
        (blocks({"type": "thinking", "signature": "s"}, role="assistant"), "messages.0.content.0.thinking", "Field required"),
        (base(system=[{"type": "image"}]), "system.0.type", "'text'"),
        (base(tools=[{"name": "f", "input_schema": {}, "input_examples": []}]), "tools.0.input_examples", "cannot be translated"),
        (base(tools=[{"name": "f"}]), "tools.0.input_schema", "Field required"),
        (base(tool_choice={"type": "function"}), "tool_choice.type", "'auto', 'any', 'tool' or 'none'"),
        (base(tool_choice={"type": "tool"}), "tool_choice.name", "Field required"),
        (base(stop_sequences=["a", 1]), "stop_sequences", "list of strings"),
        (base(thinking={"type": "enabled"}), "thinking.budget_tokens", "Field required"),
        (base(output_config={"format": {"type": "regex"}}), "output_config.format.type", "'json_schema'"),
        (base(temperature="hot"), "temperature", "a valid number"),
    ],
)
def test_an_unreadable_request_is_a_400_naming_the_field(payload: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        anthropic.decode_request(payload)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message.startswith(f"{param}: ")
    assert message in caught.value.message


def test_missing_max_tokens_reads_as_anthropic_says_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        anthropic.decode_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert (caught.value.message, caught.value.code, caught.value.type) == (
        "max_tokens: Field required",
        "missing_field",
        "invalid_request_error",
    )


def test_fields_without_a_neutral_counterpart_go_to_extra_and_come_back() -> None:
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    payload = base(
        tools=[{"name": "f", "input_schema": {"type": "object"}}, web_search],
        thinking={"type": "adaptive", "display": "omitted"},
        output_config={"effort": "max"},
        container="cntr_1",
        metadata={"user_id": "u", "trace": "t"},
    )
    request = anthropic.decode_request(payload)
    assert request.tools == (neutral.Tool("f", None, {"type": "object"}),)
    assert request.extra == {
        "tools": [web_search],
        "thinking": payload["thinking"],
        "output_config": {"effort": "max"},
        "container": "cntr_1",
    }
    assert request.reasoning is None and request.response_format is None
    assert request.metadata == {"trace": "t"} and request.user == "u"
    out, dropped = anthropic.encode_request(request, "m")
    assert out["tools"] == payload["tools"] and out["thinking"] == payload["thinking"]
    assert out["output_config"] == {"effort": "max"} and out["container"] == "cntr_1"
    assert out["metadata"] == {"user_id": "u"}
    assert dropped == ("metadata",)  # Anthropic's metadata has user_id only


def test_thinking_disabled_is_no_reasoning_and_tool_hints_are_accepted() -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}, "eager_input_streaming": True, "defer_loading": False}
    request = anthropic.decode_request(base(thinking={"type": "disabled"}, tools=[tool]))
    assert request.reasoning is None and request.extra == {}
    assert request.tools == (neutral.Tool("f", None, {"type": "object"}),)


def plain(*messages: neutral.Message, **fields: Any) -> neutral.Request:
    return neutral.Request(model="any", messages=messages, **fields)


def user(*parts: neutral.Part) -> neutral.Message:
    return neutral.Message("user", parts)


def assistant(*parts: neutral.Part) -> neutral.Message:
    return neutral.Message("assistant", parts)


def test_encode_defaults_max_tokens_and_maps_reasoning_effort_to_a_budget() -> None:
    payload, _ = anthropic.encode_request(plain(user(neutral.Text("hi"))), "claude-x")
    assert payload == {"model": "claude-x", "max_tokens": anthropic.DEFAULT_MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]}
    for effort, budget in (("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 24576)):
        payload, _ = anthropic.encode_request(plain(user(neutral.Text("hi")), reasoning=neutral.Reasoning(effort=effort)), "m")  # type: ignore[arg-type]
        assert payload["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert payload["max_tokens"] > budget  # Anthropic requires the budget below max_tokens
    payload, _ = anthropic.encode_request(
        plain(user(neutral.Text("hi")), max_tokens=30000, reasoning=neutral.Reasoning(effort="high")), "m"
    )
    assert payload["max_tokens"] == 30000  # already above the budget: kept
    payload, _ = anthropic.encode_request(plain(user(neutral.Text("hi")), max_tokens=500, reasoning=neutral.Reasoning(effort="low")), "m")
    assert payload["max_tokens"] == 2048 + 500  # the client's limit stays for the visible answer
    payload, _ = anthropic.encode_request(plain(user(neutral.Text("hi")), reasoning=neutral.Reasoning("low", budget_tokens=5000)), "m")
    assert payload["thinking"]["budget_tokens"] == 5000  # an explicit budget wins


def test_encode_merges_same_role_turns_and_puts_tool_results_first() -> None:
    request = plain(
        user(neutral.Text("q")),
        assistant(neutral.Text("calling")),
        assistant(neutral.ToolCall("c1", "f", '{"a": 1}'), neutral.ToolCall("c2", "g", "")),
        user(neutral.Text("note before results")),
        user(neutral.ToolResult("c1", (neutral.Text("one"),))),
        user(neutral.ToolResult("c2", (neutral.Text("two"),))),
        assistant(),  # nothing to say: no empty turn is written
    )
    payload, dropped = anthropic.encode_request(request, "m")
    assert dropped == ()
    assert payload["messages"] == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
                {"type": "tool_use", "id": "c2", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "c2", "content": "two"},
                {"type": "text", "text": "note before results"},
            ],
        },
    ]


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]", '"text"', "null"])
def test_tool_arguments_that_are_not_a_json_object_are_refused_not_emptied(arguments: str) -> None:
    request = plain(user(neutral.Text("q")), assistant(neutral.ToolCall("call_9", "lookup", arguments)))
    with pytest.raises(InvalidRequest) as caught:
        anthropic.encode_request(request, "m")
    assert caught.value.param == "messages.1"
    assert "'call_9' (lookup) are not a JSON object" in caught.value.message


def test_encode_lists_what_anthropic_cannot_carry() -> None:
    request = plain(
        user(neutral.Image(url="https://x/y.png", detail="high"), neutral.Image(url="data:image/jpeg;base64,/9j/4A==", detail="auto")),
        assistant(neutral.Thinking("unsigned reasoning"), neutral.Text("answer")),
        response_format=neutral.ResponseFormat("json_object"),
        metadata={"tag": "a"},
        extra={"seed": 7, "logprobs": True, "service_tier": "flex", "n": 2},
    )
    payload, dropped = anthropic.encode_request(request, "m")
    assert dropped == ("image.detail", "logprobs", "metadata", "n", "response_format", "seed", "service_tier", "thinking")
    assert payload["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4A=="}},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
    ]
    assert set(payload) == {"model", "max_tokens", "messages"}


def test_encode_tool_choice_modes() -> None:
    cases = [
        (neutral.ToolChoice("auto"), {"type": "auto"}),
        (neutral.ToolChoice("none"), {"type": "none"}),
        (neutral.ToolChoice("required", parallel=True), {"type": "any", "disable_parallel_tool_use": False}),
        (neutral.ToolChoice("tool", "f", parallel=False), {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
    ]
    for choice, expected in cases:
        payload, _ = anthropic.encode_request(plain(user(neutral.Text("q")), tool_choice=choice), "m")
        assert payload["tool_choice"] == expected
        assert anthropic.decode_request(payload).tool_choice == choice


# ---- whole replies ---------------------------------------------------------------------------
REPLY: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Plan.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "Calling two tools."},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
        {"type": "tool_use", "id": "toolu_A", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "toolu_B", "name": "g", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
        "output_tokens": 55,
        "output_tokens_details": {"thinking_tokens": 9},
    },
}


def test_decode_reply_reads_blocks_stop_reason_and_usage() -> None:
    reply = anthropic.decode_reply(REPLY)
    assert (reply.id, reply.model) == ("msg_01", "claude-sonnet-4-5")
    assert reply.blocks == [
        neutral.Block("thinking", "Plan.", signature=SIGNATURE),
        neutral.Block("thinking", redacted="EmwKAhgB"),
        neutral.Block("text", "Calling two tools."),
        neutral.Block("tool_call", '{"x":1}', id="toolu_A", name="f"),
        neutral.Block("tool_call", "{}", id="toolu_B", name="g"),
    ]
    assert reply.finish == neutral.Finish("tool_calls")
    assert reply.usage == neutral.Usage(input=12, cache_read=100, cache_write_5m=10, cache_write_1h=20, output=55, reasoning=9)


def test_cache_writes_without_the_split_count_as_five_minute_writes() -> None:
    reply = anthropic.decode_reply({"content": [], "usage": {"input_tokens": 1, "cache_creation_input_tokens": 7, "output_tokens": 2}})
    assert reply.usage == neutral.Usage(input=1, cache_write_5m=7, cache_write_1h=0, output=2)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop_sequence"),
        ("pause_turn", "pause"),
        ("refusal", "refusal"),
    ],
)
def test_stop_reasons_map_both_ways(wire: str, reason: str) -> None:
    sequence = "END" if wire == "stop_sequence" else None
    reply = anthropic.decode_reply({"content": [], "stop_reason": wire, "stop_sequence": sequence})
    assert reply.finish == neutral.Finish(reason, sequence)  # type: ignore[arg-type]
    body = anthropic.encode_reply(reply, "m", "msg_x")
    assert (body["stop_reason"], body["stop_sequence"]) == ("max_tokens" if reason == "length" else wire, sequence)


def test_encode_reply_is_the_body_anthropic_sends() -> None:
    reply = anthropic.decode_reply(REPLY)
    body = anthropic.encode_reply(reply, "my-alias", "msg_gw")
    expected = copy.deepcopy(REPLY)
    del expected["content"][3]  # the server tool block is not carried
    assert body == expected | {"id": "msg_gw", "model": "my-alias"}
    content_filter = neutral.Reply(blocks=[neutral.Block("text", "no")], finish=neutral.Finish("content_filter"))
    assert anthropic.encode_reply(content_filter, "m", "i")["stop_reason"] == "refusal"


def test_encode_reply_refuses_broken_tool_arguments_from_a_provider() -> None:
    reply = neutral.Reply(
        blocks=[neutral.Block("tool_call", '{"city": "Par', id="call_1", name="weather")], finish=neutral.Finish("tool_calls")
    )
    with pytest.raises(UpstreamProtocolError, match=r"'call_1' \(weather\) in the provider's reply are not a JSON object"):
        anthropic.encode_reply(reply, "m", "i")


@pytest.mark.parametrize(("kind", "wire"), sorted(ERROR_TYPES.items()))
def test_error_kinds_map_to_anthropic_types(kind: str, wire: str) -> None:
    assert orjson.loads(anthropic.error_body(400, kind, "m", None))["error"]["type"] == wire
    assert orjson.loads(anthropic.error_body(400, wire, "m", None))["error"]["type"] == wire  # already Anthropic's


def test_error_body_is_anthropics_shape() -> None:
    assert orjson.loads(anthropic.error_body(429, "rate_limit", "Key k1 is over its budget", "budget_exceeded")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Key k1 is over its budget"},
    }
    assert orjson.loads(anthropic.error_body(500, "something_new", "m", None))["error"]["type"] == "api_error"


def test_empty_texts_are_not_written_as_anthropic_refuses_them() -> None:
    request = plain(
        user(neutral.Text("q")),
        assistant(neutral.ToolCall("c1", "f", "{}")),
        user(neutral.ToolResult("c1", (neutral.Text(""),)), neutral.Text("")),  # an OpenAI tool message with content ""
        assistant(neutral.Text("")),  # an OpenAI assistant turn with content "": nothing to write
        user(neutral.Text("next")),
    )
    payload, dropped = anthropic.encode_request(request, "m")
    assert dropped == ()
    assert payload["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"}, {"type": "text", "text": "next"}]},
    ]
