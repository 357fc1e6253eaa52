"""The OpenAI Chat codec (formats/openai_chat.py): every part kind both ways, every refusal (a 400
naming the field), replies checked against the openai SDK's own models, and streams written by
StreamEncoder read by the real openai SDK (``create(stream=True)`` and the ``.stream()`` helper)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from faregate.errors import InvalidRequest, UpstreamProtocolError
from faregate.formats import neutral, openai_chat
from faregate.formats.neutral import (
    Finish,
    Image,
    Message,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Usage,
)

GOLDEN = Path(__file__).parent / "golden"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def base(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], **fields}


def plain(value: Any) -> Any:
    """A neutral value as plain data, each dataclass tagged with its class name (golden fixtures)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **{f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


# ---- decode_request ---------------------------------------------------------------------------
def test_decode_request_every_part_kind() -> None:
    payload = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Two cities.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                    {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "Thanks", "name": None},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}, "strict": True},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": True,
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "stream": True,
        "stream_options": {"include_usage": True},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning_effort": "low",
        "user": "u-1",
        "metadata": {"team": "a"},
        "seed": 7,
    }
    request = openai_chat.decode_request(payload)
    assert request.system == (Text("Be brief."), Text("Use tools.", "1h"))
    assert request.messages == (
        Message(
            "user",
            (Text("Weather here?"), Image(media_type="image/png", data=PNG, detail="low"), Image(url="https://example.com/a.jpg")),
        ),
        Message(
            "assistant",
            (Thinking("Two cities."), ToolCall("call_a", "weather", '{"city":"Paris"}'), ToolCall("call_b", "weather", '{"city":"Rome"}')),
        ),
        Message("user", (ToolResult("call_a", (Text("sunny"),)), ToolResult("call_b", (Text("rain"),)))),
        Message("user", (Text("Thanks"),)),
    )
    assert request.tools == (neutral.Tool("weather", "Weather", {"type": "object"}, True),)
    assert request.tool_choice == neutral.ToolChoice("tool", "weather", True)
    assert (request.max_tokens, request.temperature, request.top_p, request.stop, request.stream) == (300, 0.5, 0.9, ("END",), True)
    assert request.response_format == neutral.ResponseFormat("json_schema", {"type": "object"}, "w", True)
    assert request.reasoning == neutral.Reasoning(effort="low")
    assert (request.user, request.metadata) == ("u-1", {"team": "a"})
    assert request.extra == {"seed": 7}  # stream_options describes the client's stream: read from its payload, not carried


def test_late_system_message_is_hoisted_in_order() -> None:
    payload = base(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "late"}, {"role": "user", "content": "b"}])
    request = openai_chat.decode_request(payload)
    assert request.system == (Text("late"),)
    assert [m.parts for m in request.messages] == [(Text("a"),), (Text("b"),)]


def test_decode_request_small_fields() -> None:
    request = openai_chat.decode_request(base(max_tokens=50, stop=["a", "b"], reasoning_effort="xhigh", parallel_tool_calls=False, top_k=5))
    assert request.max_tokens == 50 and request.stop == ("a", "b") and request.top_k == 5
    assert request.reasoning is None and request.extra == {"reasoning_effort": "xhigh"}  # no neutral counterpart: the target decides
    defaults = openai_chat.decode_request(base(n=1, frequency_penalty=0, presence_penalty=0.0, logprobs=False, seed=None))
    assert defaults.extra == {}  # defaults that ask for nothing are not carried (another format would refuse them)
    asked = openai_chat.decode_request(base(n=2, frequency_penalty=0.5, logprobs=True))
    assert asked.extra == {"n": 2, "frequency_penalty": 0.5, "logprobs": True}
    assert request.tool_choice == neutral.ToolChoice("auto", parallel=False)
    assert openai_chat.decode_request(base(tool_choice="required")).tool_choice == neutral.ToolChoice("required")
    assert openai_chat.decode_request(base(response_format={"type": "json_object"})).response_format == neutral.ResponseFormat(
        "json_object"
    )
    assistant = openai_chat.decode_request(base(messages=[{"role": "assistant", "content": "", "refusal": "I can't"}]))
    assert assistant.messages[0].parts == (Text("I can't"),)
    parts = [{"type": "text", "text": "Sure. "}, {"type": "refusal", "refusal": "Not that."}]
    assistant = openai_chat.decode_request(base(messages=[{"role": "assistant", "content": parts}]))
    assert assistant.messages[0].parts == (Text("Sure. "), Text("Not that."))


def msg(message: dict[str, Any]) -> dict[str, Any]:
    return base(messages=[{"role": "user", "content": "hi"}, message])


REFUSED = [
    ({"model": "m"}, "messages", "missing_field"),
    (base(messages=[]), "messages", "invalid_value"),
    (base(model=None), "model", "invalid_type"),
    (msg({"role": "function", "name": "f", "content": "x"}), "messages[1].role", "unsupported_value"),
    (msg({"content": "x"}), "messages[1].role", "missing_field"),
    (msg({"role": "user", "content": "x", "name": "bob"}), "messages[1].name", "unsupported_parameter"),
    (msg({"role": "user"}), "messages[1].content", "missing_field"),
    (msg({"role": "user", "content": []}), "messages[1].content", "invalid_value"),
    (msg({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}), "messages[1].content[0].type", "unsupported_value"),
    (msg({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}), "messages[1].content[0].type", "unsupported_value"),
    (msg({"role": "user", "content": [{"type": "file", "file": {}}]}), "messages[1].content[0].type", "unsupported_value"),
    (msg({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}), "messages[1].content[0].type", "unsupported_value"),
    (msg({"role": "user", "content": [{"type": "text", "text": 3}]}), "messages[1].content[0].text", "invalid_type"),
    (msg({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}), "messages[1].content[0].image_url.url", "invalid_value"),
    (msg({"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]}), "messages[1].content[0].cache_control.type", "invalid_value"),
    (msg({"role": "tool", "content": "x"}), "messages[1].tool_call_id", "missing_field"),
    (msg({"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}), "messages[1].function_call", "unsupported_parameter"),
    (msg({"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}), "messages[1].tool_calls[0].type", "unsupported_value"),
    (msg({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}), "messages[1].tool_calls[0].function.arguments", "invalid_type"),
    (base(tools=[{"type": "custom", "custom": {"name": "x"}}]), "tools[0].type", "unsupported_value"),
    (base(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]), "tools[0].function.parameters", "invalid_type"),
    (base(tool_choice={"type": "allowed_tools", "allowed_tools": {}}), "tool_choice.type", "unsupported_value"),
    (base(tool_choice="sometimes"), "tool_choice", "invalid_value"),
    (base(parallel_tool_calls="yes"), "parallel_tool_calls", "invalid_type"),
    (base(max_tokens=10, max_completion_tokens=20), "max_tokens", "invalid_value"),
    (base(max_tokens=0), "max_tokens", "invalid_type"),
    (base(temperature="hot"), "temperature", "invalid_type"),
    (base(stop=["a", 1]), "stop[1]", "invalid_type"),
    (base(stream="yes"), "stream", "invalid_type"),
    (base(stream_options=True), "stream_options", "invalid_type"),
    (base(response_format={"type": "yaml"}), "response_format.type", "invalid_value"),
    (base(response_format={"type": "json_schema", "json_schema": {"name": "x", "description": "d"}}), "response_format.json_schema.description", "unsupported_parameter"),
    (base(reasoning_effort=3), "reasoning_effort", "invalid_type"),
    (base(metadata=["a"]), "metadata", "invalid_type"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "param", "code"), REFUSED, ids=[case[1] + ":" + case[2] for case in REFUSED])
def test_unreadable_field_is_a_400_naming_it(payload: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        openai_chat.decode_request(payload)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, code)
    assert f"'{param}'" in error.message
    body = orjson.loads(error.openai_body())["error"]
    assert body["param"] == param and body["type"] == "invalid_request_error"


# ---- encode_request ---------------------------------------------------------------------------
def test_encode_request_maps_and_lists_what_it_cannot_carry() -> None:
    request = neutral.Request(
        model="claude",
        system=(Text("You are Claude Code.", cache="5m"), Text("Be careful.")),
        messages=(
            Message("user", (Text("Look", cache="1h"), Image(media_type="image/png", data=PNG))),
            Message("assistant", (Thinking("hmm", signature="sig"), Text("Reading."), ToolCall("toolu_1", "read", '{"p":"a.png"}'))),
            Message(
                "user", (ToolResult("toolu_1", (Text("an image:"), Image(media_type="image/png", data=PNG)), is_error=True), Text("Next?"))
            ),
        ),
        tools=(neutral.Tool("read", "Read a file", {"type": "object"}, cache="5m"),),
        tool_choice=neutral.ToolChoice("auto", parallel=False),
        max_tokens=1000,
        temperature=0.2,
        top_k=40,
        stop=("\n\nHuman:",),
        stream=True,
        reasoning=neutral.Reasoning(budget_tokens=8000),
        metadata={"user_id": "u1"},
        extra={"container": "c1", "seed": 3},
    )
    payload, dropped = openai_chat.encode_request(request, "gpt-4.1")
    assert dropped == ("container", "thinking", "top_k")  # sorted; cache marks are hints, not listed; is_error is in the content
    assert payload == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "You are Claude Code."},
            {"role": "system", "content": "Be careful."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
            },
            {
                "role": "assistant",
                "content": "Reading.",
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": '{"p":"a.png"}'}}],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: an image:"},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}, {"type": "text", "text": "Next?"}],
            },
        ],
        "tools": [{"type": "function", "function": {"name": "read", "description": "Read a file", "parameters": {"type": "object"}}}],
        "parallel_tool_calls": False,
        "max_completion_tokens": 1000,
        "temperature": 0.2,
        "stop": ["\n\nHuman:"],
        "stream": True,
        "reasoning_effort": "medium",
        "metadata": {"user_id": "u1"},
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ((Text("File does not exist."),), "Error: File does not exist."),
        ((), "Error: the tool call failed"),
        ((Text("exit 1"), Text("stderr: boom")), [{"type": "text", "text": "Error: exit 1"}, {"type": "text", "text": "stderr: boom"}]),
    ],
)
def test_a_failed_tool_result_is_said_in_the_tool_message_not_dropped(content: Any, expected: Any) -> None:
    """Anthropic's tool_result.is_error has no OpenAI field: the tool message's content says it
    (ERROR_MARK first), so a Claude Code session's first failed tool call is no 400 under the
    default drop_params false, and the model still learns the call failed."""
    request = neutral.Request(
        "m",
        (
            Message("assistant", (ToolCall("toolu_9", "read", "{}"),)),
            Message("user", (ToolResult("toolu_9", content, is_error=True),)),
        ),
    )
    payload, dropped = openai_chat.encode_request(request, "gpt-4.1")
    assert dropped == ()
    assert payload["messages"][1] == {"role": "tool", "tool_call_id": "toolu_9", "content": expected}
    ok = neutral.Request("m", (request.messages[0], Message("user", (ToolResult("toolu_9", content),))))
    plain, _ = openai_chat.encode_request(ok, "gpt-4.1")
    assert "Error" not in orjson.dumps(plain["messages"][1]).decode()


@pytest.mark.parametrize(("choice", "expected"), [("none", "none"), ("required", "required"), ("auto", None)])
def test_encode_tool_choice(choice: Any, expected: Any) -> None:
    request = neutral.Request(
        "m", (Message("user", (Text("x"),)),), tools=(neutral.Tool("f", None, {}),), tool_choice=neutral.ToolChoice(choice)
    )
    assert openai_chat.encode_request(request, "m")[0].get("tool_choice") == expected
    named = dataclasses.replace(request, tool_choice=neutral.ToolChoice("tool", "f"))
    assert openai_chat.encode_request(named, "m")[0]["tool_choice"] == {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(("budget", "effort"), [(1024, "minimal"), (2048, "low"), (5000, "medium"), (8192, "medium"), (30000, "high")])
def test_thinking_budget_becomes_an_effort(budget: int, effort: str) -> None:
    request = neutral.Request("m", (Message("user", (Text("x"),)),), reasoning=neutral.Reasoning(budget_tokens=budget))
    assert openai_chat.encode_request(request, "m")[0]["reasoning_effort"] == effort


def test_empty_thinking_is_not_listed_and_response_format_is_written() -> None:
    request = neutral.Request(
        "m",
        (Message("assistant", (Thinking(),)),),
        response_format=neutral.ResponseFormat("json_schema", {"type": "object"}, None, True),
    )
    payload, dropped = openai_chat.encode_request(request, "m")
    assert dropped == ()
    assert payload["messages"] == [{"role": "assistant", "content": ""}]
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
    }


# ---- golden fixtures: OpenAI -> neutral -> OpenAI ------------------------------------------------
@pytest.mark.parametrize("path", sorted(GOLDEN.glob("openai_request_*.json")), ids=lambda p: p.stem)
def test_golden_request(path: Path) -> None:
    case = json.loads(path.read_text())
    request = openai_chat.decode_request(case["openai"])
    assert plain(request) == case["neutral"]
    payload, dropped = openai_chat.encode_request(request, case["openai"]["model"])
    assert payload == case.get("openai_reencoded", case["openai"])
    assert list(dropped) == case["dropped"]


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("openai_reply_*.json")), ids=lambda p: p.stem)
def test_golden_reply(path: Path) -> None:
    case = json.loads(path.read_text())
    reply = openai_chat.decode_reply(case["openai"])
    assert plain(reply) == case["neutral"]
    again = openai_chat.encode_reply(reply, case["openai"]["model"], case["openai"]["id"], created=case["openai"]["created"])
    ChatCompletion.model_validate(again)
    assert again == case["openai_reencoded"]


# ---- replies ----------------------------------------------------------------------------------
REPLY = {
    "id": "chatcmpl-BQb0iSFzE1zz1OVhaqg3u",
    "object": "chat.completion",
    "created": 1745678496,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "reasoning_content": "Need the weather.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [{"id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 91,
        "completion_tokens": 14,
        "total_tokens": 105,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 5, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_76544d79cb",
}


def test_decode_reply() -> None:
    reply = openai_chat.decode_reply(REPLY)
    assert (reply.id, reply.model, reply.finish) == ("chatcmpl-BQb0iSFzE1zz1OVhaqg3u", "gpt-4.1-2025-04-14", Finish("tool_calls"))
    assert reply.blocks == [
        neutral.Block("thinking", "Need the weather."),
        neutral.Block("text", "Checking."),
        neutral.Block("tool_call", '{"city":"Paris"}', id="call_P", name="get_weather"),
    ]
    assert reply.usage == Usage(input=27, cache_read=64, cache_write_5m=0, cache_write_1h=0, output=14, reasoning=5)


@pytest.mark.parametrize(
    ("wire", "finish"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
    ],
)
def test_finish_reasons_in(wire: str, finish: str) -> None:
    data = {**REPLY, "choices": [{**REPLY["choices"][0], "finish_reason": wire}]}
    assert openai_chat.decode_reply(data).finish == Finish(finish)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"id": "x"}, "no choices"),
        ({"choices": [{"index": 0}]}, "no message"),
        ({**REPLY, "usage": {"prompt_tokens": -1}}, "prompt_tokens"),
    ],
)
def test_unreadable_reply(data: dict[str, Any], match: str) -> None:
    with pytest.raises(UpstreamProtocolError, match=match):
        openai_chat.decode_reply(data)


def test_error_in_a_200_body_is_an_error_reply() -> None:
    reply = openai_chat.decode_reply({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}})
    assert reply.error == neutral.Error("rate_limit", "slow down", "rate_limit_exceeded")


def test_encode_reply_is_a_chat_completion_the_sdk_reads() -> None:
    reply = neutral.Reply(
        blocks=[
            neutral.Block("thinking", "hmm", signature="sig"),
            neutral.Block("text", "Two calls. "),
            neutral.Block("tool_call", '{"a":1}', id="toolu_1", name="f"),
            neutral.Block("text", "Done."),
            neutral.Block("tool_call", "{}", id="toolu_2", name="g"),
        ],
        finish=Finish("refusal"),
        usage=Usage(input=10, cache_read=5, cache_write_5m=3, cache_write_1h=2, output=7, reasoning=4),
    )
    body = openai_chat.encode_reply(reply, "claude-x", "chatcmpl-1", created=1700000000)
    completion = ChatCompletion.model_validate(body)
    assert (completion.id, completion.model, completion.created, completion.object) == (
        "chatcmpl-1",
        "claude-x",
        1700000000,
        "chat.completion",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == "Two calls. Done."
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or [] if c.type == "function"] == [
        ("toolu_1", "f", '{"a":1}'),
        ("toolu_2", "g", "{}"),
    ]
    assert body["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert completion.usage is not None and completion.usage.prompt_tokens == 20 and completion.usage.total_tokens == 27
    assert completion.usage.prompt_tokens_details is not None and completion.usage.prompt_tokens_details.cached_tokens == 5
    assert completion.usage.prompt_tokens_details.cache_write_tokens == 5
    assert completion.usage.completion_tokens_details is not None and completion.usage.completion_tokens_details.reasoning_tokens == 4
    assert openai_chat.decode_reply(body).usage == Usage(input=10, cache_read=5, cache_write_5m=5, cache_write_1h=0, output=7, reasoning=4)


def test_encode_reply_of_tool_calls_only_has_null_content() -> None:
    reply = neutral.Reply(blocks=[neutral.Block("tool_call", "{}", id="c1", name="f")], finish=Finish("tool_calls"))
    message = openai_chat.encode_reply(reply, "m", "i")["choices"][0]["message"]
    assert message["content"] is None and "reasoning_content" not in message


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "type_"),
    [
        ("invalid_request", "invalid_request_error"),
        ("authentication", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "invalid_request_error"),
        ("rate_limit", "rate_limit_error"),
        ("overloaded", "server_error"),
        ("api_error", "server_error"),
        ("budget_exceeded", "budget_exceeded"),  # one of faregate's own types: kept
    ],
)
def test_error_body_and_event(kind: str, type_: str) -> None:
    expected = {"error": {"message": "no", "type": type_, "param": None, "code": "c"}}
    assert orjson.loads(openai_chat.error_body(429, kind, "no", "c")) == expected
    event = openai_chat.error_event(kind, "no", "c")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and orjson.loads(event[6:]) == expected


def test_message_level_cache_control_marks_the_last_part() -> None:
    payload = base(
        messages=[
            {"role": "system", "content": "Long rules.", "cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ]
    )
    request = openai_chat.decode_request(payload)
    assert request.system == (Text("Long rules.", "5m"),)
    assert request.messages[0].parts == (Text("a"), Text("b", "1h"))
