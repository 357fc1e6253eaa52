"""The OpenAI Responses client codec (formats/openai_responses*.py) and the Responses transport's
stream watch (providers/openai_responses.py): requests decoded into the neutral model (golden
cases and a 400 naming each field it cannot read), whole replies and streams encoded, every object
and event validated by the openai SDK's own pydantic types, and the SDK's ``responses.stream()``
helper reading an encoded stream to the same final response as the whole reply."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from faregate.errors import InvalidRequest, UpstreamProtocolError
from faregate.formats import neutral, openai_responses
from faregate.formats.neutral import (
    BlockStop,
    Finish,
    Image,
    Message,
    Reasoning,
    ResponseFormat,
    Start,
    Text,
    TextDelta,
    Thinking,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    Usage,
)
from faregate.providers import openai_responses as transport
from faregate.translate import CLIENT_CODECS, cut_event, passthrough_body

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": {"type": "object"}}


# ---- decode_request ------------------------------------------------------------------------------
def test_a_string_input_is_one_user_turn_and_instructions_the_system() -> None:
    request = openai_responses.decode_request({"model": "m", "input": "Say hello", "instructions": "Be brief."})
    assert request.messages == (Message("user", (Text("Say hello"),)),)
    assert request.system == (Text("Be brief."),) and request.extra == {}


def test_items_map_messages_function_calls_and_their_outputs_by_call_id() -> None:
    items: list[Any] = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "rain"}]},
        {"role": "user", "content": "Thanks"},
    ]
    request = openai_responses.decode_request({"model": "m", "input": items})
    assert request.system == (Text("Use tools."),)
    assert request.messages == (
        Message("user", (Text("Weather?"),)),
        Message(
            "assistant",
            (
                Thinking("think"),
                Text("Checking."),
                ToolCall("call_a", "get_weather", '{"city":"Paris"}'),
                ToolCall("call_b", "get_weather", '{"city":"Rome"}'),
            ),
        ),
        Message("user", (ToolResult("call_a", (Text("sunny"),)), ToolResult("call_b", (Text("rain"),)))),
        Message("user", (Text("Thanks"),)),
    )


def test_the_options_map_to_their_neutral_counterparts() -> None:
    payload = {
        "model": "m",
        "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]}],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}, "verbosity": "low"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "max_output_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": True,
        "user": "u1",
        "metadata": {"k": "v"},
        "store": True,  # accepted, and nothing is stored
        "include": [],  # asks for nothing
        "truncation": "disabled",
        "service_tier": "flex",
    }
    request = openai_responses.decode_request(payload)
    assert request.messages[0].parts == (Image(media_type="image/png", data="AAAA", detail="low"),)
    assert request.tools == (Tool("get_weather", "Weather now", {"type": "object"}),)
    assert request.tool_choice == ToolChoice("tool", "get_weather", False)
    assert request.response_format == ResponseFormat("json_schema", {"type": "object"}, "out", True)
    assert request.reasoning == Reasoning(effort="high")
    assert (request.max_tokens, request.temperature, request.top_p, request.stream) == (100, 0.5, 0.9, True)
    assert request.user == "u1" and request.metadata == {"k": "v"}
    assert request.extra == {"verbosity": "low", "reasoning.summary": "auto", "service_tier": "flex"}  # the client's names


def test_an_effort_with_no_neutral_counterpart_is_carried_by_name() -> None:
    request = openai_responses.decode_request({"model": "m", "input": "hi", "reasoning": {"effort": "xhigh"}})
    assert request.reasoning is None and request.extra == {"reasoning_effort": "xhigh"}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"input": 3}, "input"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"role": "critic", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0].file_id"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "instructions": ["x"]}, "instructions"),
    ],
)
def test_what_cannot_be_read_is_a_400_naming_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        openai_responses.decode_request({"model": "m", **payload})
    assert caught.value.param == param and caught.value.status == 400


# ---- whole replies ----------------------------------------------------------------------------
REPLY = neutral.Reply(
    id="up",
    model="claude",
    blocks=[
        neutral.Block("thinking", "Let me see."),
        neutral.Block("text", "Checking."),
        neutral.Block("tool_call", '{"city":"Paris"}', id="toolu_1", name="get_weather"),
    ],
    finish=Finish("tool_calls"),
    usage=Usage(input=10, cache_read=100, cache_write_5m=5, output=7, reasoning=3),
)


def test_a_whole_reply_is_a_response_object_the_sdk_reads() -> None:
    body = openai_responses.encode_reply(REPLY, "claude", "abc", created=1700000000)
    response = Response.model_validate(body)  # strict: every required field, every type
    assert response.id == "resp_abc" and response.status == "completed" and response.output_text == "Checking."
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    call = response.output[2]
    assert call.type == "function_call" and call.call_id == "toolu_1" and call.arguments == '{"city":"Paris"}'
    assert body["usage"] == {
        "input_tokens": 115,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 122,
    }


def test_a_reply_cut_by_its_token_limit_is_incomplete() -> None:
    reply = neutral.Reply(blocks=[neutral.Block("text", "Once upon")], finish=Finish("length"))
    response = Response.model_validate(openai_responses.encode_reply(reply, "m", "x"))
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_an_anthropic_signature_rides_in_encrypted_content_and_comes_back_as_signed() -> None:
    """An agent replays its output items: the thinking block must reach Anthropic again with the
    signature Anthropic gave it; OpenAI's own encrypted_content is not mistaken for one."""
    reply = neutral.Reply(
        blocks=[neutral.Block("thinking", "Look it up.", signature="sig-abc"), neutral.Block("thinking", redacted="RDCT")]
    )
    items = openai_responses.encode_reply(reply, "claude", "x")["output"]
    Response.model_validate(openai_responses.encode_reply(reply, "claude", "x"))
    request = openai_responses.decode_request({"model": "m", "input": [{"role": "user", "content": "hi"}, *items]})
    assert request.messages[1].parts == (Thinking("Look it up.", "sig-abc"), Thinking(redacted="RDCT"))
    foreign = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-openai"}
    assert openai_responses.decode_request({"model": "m", "input": [foreign]}).messages[0].parts == (Thinking(""),)
    events = parse(encoded([neutral.ThinkingDelta(0, "Look it up."), neutral.ThinkingDelta(0, signature="sig-abc"), BlockStop(0)]))
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["item"]["encrypted_content"] == "faregate.signature:sig-abc"


# ---- streams ----------------------------------------------------------------------------------
def parse(raw: bytes) -> list[dict[str, Any]]:
    """Each event's data, checked: one ``event:`` line naming its type, one ``data:`` line, and the
    data valid as the SDK's ResponseStreamEvent."""
    out = []
    for event in raw.split(b"\n\n"):
        if not event:
            continue
        name, data = event.split(b"\n")
        parsed = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + parsed["type"].encode()
        EVENTS.validate_python(parsed)
        out.append(parsed)
    return out


def encoded(events: list[neutral.Event]) -> bytes:
    encoder = openai_responses.StreamEncoder("claude", "abc", include_usage=False)
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


def test_a_stream_is_the_documented_event_sequence() -> None:
    events = parse(encoded(neutral.replay(REPLY)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    texts = [e for e in events if e["type"].startswith("response.output_text")]
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in texts} == {("msg_abc_1", 1, 0)}
    completed = events[-1]["response"]
    assert completed["output"] == openai_responses.encode_reply(REPLY, "claude", "abc")["output"]
    assert completed["usage"]["input_tokens"] == 115 and completed["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["usage"] is None


def test_deltas_arriving_in_pieces_accumulate_and_open_items_close_at_the_end() -> None:
    events = parse(
        encoded(
            [
                Start("up", "m"),
                TextDelta(0, "Hel"),
                TextDelta(0, "lo"),
                ToolCallStart(1, "call_1", "f"),
                ToolArgsDelta(1, '{"a"'),
                ToolArgsDelta(1, ":1}"),
                Usage(input=3, output=2),
                Finish("tool_calls"),
            ]  # no BlockStop: closed by close()
        )
    )
    done = {e["type"]: e for e in events}
    assert done["response.output_text.done"]["text"] == "Hello"
    assert done["response.function_call_arguments.done"]["arguments"] == '{"a":1}'
    assert events[-1]["type"] == "response.completed"
    assert [i["status"] for i in events[-1]["response"]["output"]] == ["completed", "completed"]


def test_the_sdk_stream_helper_reads_the_stream_to_the_whole_reply() -> None:
    reply = neutral.Reply(blocks=[neutral.Block("text", "Hello there.")], finish=Finish("stop"), usage=Usage(input=4, output=3))
    body = encoded(neutral.replay(reply))

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="sk-test", base_url="http://codec.test/v1", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(answer))
    )
    with client.responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hello there." and final.output_text == "Hello there."
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (4, 3)


def test_a_stream_failing_midway_ends_with_error_and_response_failed_and_nothing_after() -> None:
    encoder = openai_responses.StreamEncoder("m", "abc", include_usage=False)
    raw = encoder.encode(TextDelta(0, "Hel")) + encoder.error_event(
        "upstream_error", "the upstream stream was interrupted", "stream_interrupted"
    )
    events = parse(raw)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "stream_interrupted" and events[-2]["sequence_number"] == len(events) - 2
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "in_progress"
    assert encoder.encode(TextDelta(0, "lo")) == b"" and encoder.close() == b""


def test_an_upstream_error_event_is_encoded_as_the_failure() -> None:
    events = parse(encoded([Start("u", "m"), neutral.Error("rate_limit", "slow down", "rate_limit_exceeded")]))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


# ---- the format seam: errors in the Responses client's shape ----------------------------------
def test_errors_are_in_openais_shape() -> None:
    assert orjson.loads(openai_responses.error_body(400, "invalid_request", "bad", "invalid_value")) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": "invalid_value"}
    }
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}'
    assert orjson.loads(passthrough_body(body, " (upstream a/b answered 400)", 400, "openai_responses")) == {
        "error": {
            "message": "prompt is too long (upstream a/b answered 400)",
            "type": "invalid_request_error",
            "param": None,
            "code": "upstream_400",
        }
    }
    (event,) = parse(cut_event("openai_responses", "cut", "stream_interrupted"))
    assert event == {"type": "error", "sequence_number": 0, "code": "stream_interrupted", "message": "cut", "param": None}
    assert CLIENT_CODECS["openai_responses"].HEARTBEAT == b": keep-alive\n\n"


# ---- the diagonal: the Responses transport's stream watch and usage -----------------------------
def sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 400},
    "output_tokens": 50,
    "output_tokens_details": {"reasoning_tokens": 8},
}


def test_the_watch_passes_events_as_read_and_prices_response_completed() -> None:
    watch = transport.stream_events(strip=False)
    events = [
        sse("response.created", {"sequence_number": 0, "response": {"id": "resp_1", "usage": None}}),
        sse("response.output_text.delta", {"sequence_number": 1, "delta": "Hi"}),
        sse("response.completed", {"sequence_number": 2, "response": {"id": "resp_1", "usage": USAGE}}),
    ]
    assert watch.feed(events[:2]) == b"".join(events[:2]) and not watch.done and watch.usage is None
    assert watch.feed(events[2:]) == events[2]
    assert watch.done and watch.usage is not None
    assert (watch.usage.prompt_tokens, watch.usage.cached_tokens, watch.usage.completion_tokens, watch.usage.reasoning_tokens) == (
        1000,
        400,
        50,
        8,
    )
    assert transport.usage_of({"usage": USAGE}) == watch.usage


def test_the_watch_refuses_a_malformed_event_and_continues_the_sequence_when_cut() -> None:
    watch = transport.stream_events(strip=False)
    good = sse("response.created", {"sequence_number": 0, "response": {}})
    with pytest.raises(UpstreamProtocolError) as caught:
        watch.feed([good, b"data: {nope\n\n"])
    assert caught.value.code == "upstream_malformed_event" and caught.value.before == good
    (event,) = parse(watch.error_event("upstream_error", "cut", "stream_interrupted"))
    assert event["sequence_number"] == 1


def test_invalid_usage_counts_are_an_anomaly_as_on_the_chat_diagonal() -> None:
    usage = transport.usage_of({"usage": {**USAGE, "output_tokens": -1}})
    assert usage is not None and usage.anomaly is not None and "negative" in usage.anomaly
