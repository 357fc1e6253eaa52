"""OpenAI Chat streams (formats/openai_chat_stream.py): StreamDecoder fed with chunks as OpenAI and
OpenAI-compatible servers send them, and StreamEncoder's bytes read by the real openai SDK, both
chunk by chunk (``create(stream=True)``) and through the ``.stream()`` helper's accumulator."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pytest

from faregate.errors import UpstreamProtocolError
from faregate.formats import neutral, openai_chat
from faregate.formats.neutral import (
    BlockStop,
    Finish,
    Start,
    TextDelta,
    ThinkingDelta,
    ToolArgsDelta,
    ToolCallStart,
    Usage,
)


# ---- streams: StreamDecoder on realistic upstream chunks ------------------------------------------
def chunk(delta: dict[str, Any] | None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    """A chunk as OpenAI sends it (every delta field present, null when unset; usage null with include_usage)."""
    choices = []
    if delta is not None:
        full = {"content": None, "function_call": None, "refusal": None, "role": None, "tool_calls": None, **delta}
        choices = [{"index": 0, "delta": full, "logprobs": None, "finish_reason": finish}]
    return {
        "id": "chatcmpl-BQb0",
        "object": "chat.completion.chunk",
        "created": 1745678496,
        "model": "gpt-4.1-nano-2025-04-14",
        "service_tier": "default",
        "system_fingerprint": "fp_eede8f0d45",
        "choices": choices,
        "usage": None,
        **top,
    }


def call(index: int, id: str | None = None, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        entry.update(id=id, type="function")
        entry["function"]["name"] = name
    return entry


USAGE = {
    "prompt_tokens": 80,
    "completion_tokens": 30,
    "total_tokens": 110,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
PARALLEL_TOOLS = [
    chunk({"role": "assistant"}),
    chunk({"tool_calls": [call(0, "call_Pieq", "get_weather")]}),
    chunk({"tool_calls": [call(0, arguments='{"ci')]}),
    chunk({"tool_calls": [call(0, arguments='ty": "Paris"}')]}),
    chunk({"tool_calls": [call(1, "call_Xk2", "get_weather")]}),
    chunk({"tool_calls": [call(1, arguments='{"city": "Rome"}')]}),
    chunk({}, "tool_calls"),
    chunk(None, usage=USAGE),
]


def test_decoder_parallel_tool_calls() -> None:
    decoder = openai_chat.StreamDecoder()
    events = [event for data in PARALLEL_TOOLS for event in decoder.feed(data)]
    events += decoder.end()
    assert decoder.done
    assert events == [
        Start("chatcmpl-BQb0", "gpt-4.1-nano-2025-04-14"),
        ToolCallStart(0, "call_Pieq", "get_weather"),
        ToolArgsDelta(0, '{"ci'),
        ToolArgsDelta(0, 'ty": "Paris"}'),
        BlockStop(0),
        ToolCallStart(1, "call_Xk2", "get_weather"),
        ToolArgsDelta(1, '{"city": "Rome"}'),
        BlockStop(1),
        Finish("tool_calls"),
        Usage(input=80, cache_read=0, cache_write_5m=0, cache_write_1h=0, output=30, reasoning=0),
    ]


def test_decoder_reasoning_then_text_then_tool() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk({"tool_calls": [call(0, "call_1", "f", '{"x": 1}')]}),  # all at once, as some servers send it
        chunk({}, "length", usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 50}}),
    ]
    decoder = openai_chat.StreamDecoder()
    events = [event for data in chunks for event in decoder.feed(data)]
    assert events == [
        Start("chatcmpl-BQb0", "gpt-4.1-nano-2025-04-14"),
        ThinkingDelta(0, "Think"),
        ThinkingDelta(0, "ing."),
        BlockStop(0),
        TextDelta(1, "Hello"),
        TextDelta(1, " there"),
        BlockStop(1),
        ToolCallStart(2, "call_1", "f"),
        ToolArgsDelta(2, '{"x": 1}'),
        BlockStop(2),
        Finish("length"),
        Usage(input=30, cache_read=50, cache_write_5m=0, cache_write_1h=0, output=30, reasoning=0),
    ]
    assert decoder.end() == []


def test_decoder_error_event_and_malformed_chunk() -> None:
    decoder = openai_chat.StreamDecoder()
    assert decoder.feed({"error": {"message": "overloaded", "type": "server_error", "code": None}}) == [
        neutral.Error("api_error", "overloaded")
    ]
    with pytest.raises(UpstreamProtocolError):
        openai_chat.StreamDecoder().feed({"id": "x", "choices": "nope"})


# ---- streams: StreamEncoder read by the real openai SDK ---------------------------------------------
EVENTS: list[neutral.Event] = [
    Start("msg_01", "claude-x"),
    Usage(input=10, cache_read=5, cache_write_5m=3),
    ThinkingDelta(0, "Let me"),
    ThinkingDelta(0, " think."),
    ThinkingDelta(0, signature="sig=="),
    BlockStop(0),
    TextDelta(1, "Checking "),
    TextDelta(1, "both."),
    BlockStop(1),
    ToolCallStart(2, "toolu_a", "get_weather"),
    ToolArgsDelta(2, '{"city":'),
    ToolArgsDelta(2, ' "Paris"}'),
    BlockStop(2),
    ToolCallStart(3, "toolu_b", "get_time"),
    ToolArgsDelta(3, '{"tz": "CET"}'),
    BlockStop(3),
    Usage(output=20, reasoning=4),
    Finish("tool_calls"),
]


def encoded(events: list[neutral.Event], *, include_usage: bool) -> bytes:
    encoder = openai_chat.StreamEncoder("claude-x", "chatcmpl-gw1", include_usage=include_usage, created=1700000000)
    out = [encoder.encode(events[0]), encoder.heartbeat]  # a heartbeat between events, as the relay writes it
    out += [encoder.encode(event) for event in events[1:]]
    return b"".join(out) + encoder.close()


def sdk(body: bytes) -> openai.OpenAI:
    """An openai client whose HTTP answer is ``body`` (the SDK's own transport hook: its SSE parser,
    models and accumulator are the real ones)."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="sk-test", base_url="http://codec.test/v1", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(answer))
    )


def test_sdk_reads_the_encoded_stream_chunk_by_chunk() -> None:
    body = encoded(EVENTS, include_usage=True)
    assert body.endswith(b"data: [DONE]\n\n") and b": keep-alive\n\n" in body
    stream = sdk(body).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = list(stream)
    assert {c.id for c in chunks} == {"chatcmpl-gw1"} and {c.model for c in chunks} == {"claude-x"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking both."
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.id) for tc in calls if tc.id] == [(0, "toolu_a"), (1, "toolu_b")]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (18, 20, 38)
    details = last.usage.prompt_tokens_details
    assert details is not None and (details.cached_tokens, details.cache_write_tokens) == (5, 3)


def test_sdk_stream_helper_accumulates_parallel_tool_calls() -> None:
    client = sdk(encoded(EVENTS, include_usage=True))
    with client.chat.completions.stream(model="claude-x", messages=[{"role": "user", "content": "hi"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert kinds.count("tool_calls.function.arguments.done") == 2 and "content.done" in kinds
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == "Checking both."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("toolu_a", "get_weather", '{"city": "Paris"}'),
        ("toolu_b", "get_time", '{"tz": "CET"}'),
    ]
    assert (message.model_extra or {}).get("reasoning_content") == "Let me think."
    assert final.usage is not None and final.usage.completion_tokens_details is not None
    assert final.usage.completion_tokens_details.reasoning_tokens == 4


def test_stream_without_include_usage_has_no_usage_field() -> None:
    body = encoded(EVENTS, include_usage=False)
    assert b'"usage"' not in body
    chunks = list(sdk(body).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)


def test_sdk_raises_the_mid_stream_error_event() -> None:
    encoder = openai_chat.StreamEncoder("m", "chatcmpl-1", include_usage=False)
    body = encoder.encode(Start("x", "m")) + encoder.encode(TextDelta(0, "par"))
    body += encoder.encode(neutral.Error("overloaded", "the upstream stream was interrupted", "stream_interrupted"))
    assert encoder.close() == b""  # a failed stream does not end like a clean one
    stream = sdk(body).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="the upstream stream was interrupted"):
        list(stream)


def test_encoder_then_decoder_gives_the_same_reply() -> None:
    body = encoded(EVENTS, include_usage=True)
    decoder = openai_chat.StreamDecoder()
    events: list[neutral.Event] = []
    for line in body.split(b"\n\n"):
        if line.startswith(b"data: {"):
            events += decoder.feed(orjson.loads(line[6:]))
    events += decoder.end()
    again, original = neutral.collect(events), neutral.collect(EVENTS)
    assert again.finish == original.finish
    assert [(b.kind, b.text, b.id, b.name) for b in again.blocks] == [(b.kind, b.text, b.id, b.name) for b in original.blocks]
    assert again.usage == Usage(input=10, cache_read=5, cache_write_5m=3, cache_write_1h=0, output=20, reasoning=4)


def test_decoder_skips_azure_filter_chunks_and_splits_calls_sharing_an_index() -> None:
    chunks = [
        {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{"prompt_index": 0}]},
        chunk({"role": "assistant", "tool_calls": [call(0, "call_a", "f", "{}")]}),
        chunk({"tool_calls": [call(0, "call_b", "g", '{"x":')]}),  # a second call at the same index
        chunk({"tool_calls": [call(0, arguments="1}")]}),
        chunk({}, "tool_calls"),
    ]
    decoder = openai_chat.StreamDecoder()
    events = [event for data in chunks for event in decoder.feed(data)]
    assert events[0] == Start("chatcmpl-BQb0", "gpt-4.1-nano-2025-04-14")
    reply = neutral.collect(events)
    assert [(b.id, b.name, b.text) for b in reply.blocks] == [("call_a", "f", "{}"), ("call_b", "g", '{"x":1}')]
