"""The Anthropic codec's streams: the decoder on Anthropic's event sequence, and the encoder's bytes
read by the official anthropic SDK (the client here; the encoder is the unit under test), served
from a loopback HTTP server that replays them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic as sdk
import orjson
import pytest

from faregate.formats import anthropic, neutral
from faregate.formats.anthropic_reply import ERROR_TYPES
from tests.support.sse import reference

SIGNATURE = "EqQBCkgIARABGAIiQL2yX0kc3Jn5qTcPx8xHwYh9yPq1"


class Replay:
    """A loopback server answering every POST with the next queued (status, content type, body)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str, bytes]] = []
        self.received: list[dict[str, Any]] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                replay.received.append(orjson.loads(self.rfile.read(int(self.headers["content-length"]))))
                status, content_type, body = replay.replies.pop(0)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def client(self) -> sdk.Anthropic:
        return sdk.Anthropic(api_key="sk-ant-test", base_url=self.url, max_retries=0)


@pytest.fixture
def replay() -> Iterator[Replay]:
    server = Replay()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def encode_all(events: list[neutral.Event], model: str = "alias", id: str = "msg_gw") -> bytes:
    encoder = anthropic.StreamEncoder(model, id, include_usage=False)
    return b"".join(encoder.encode(event) for event in events) + encoder.close()


def names(stream: bytes) -> list[str]:
    return [line[7:].decode() for line in stream.split(b"\n") if line.startswith(b"event: ")]


# What an OpenAI upstream gives, decoded: usage only at the end, after the finish reason.
OPENAI_LIKE: list[neutral.Event] = [
    neutral.Start("chatcmpl-1", "gpt-x"),
    neutral.ThinkingDelta(0, "Let me "),
    neutral.ThinkingDelta(0, "think."),
    neutral.ThinkingDelta(0, signature=SIGNATURE),
    neutral.BlockStop(0),
    neutral.TextDelta(1, "Calling "),
    neutral.TextDelta(1, "tools."),
    neutral.BlockStop(1),
    neutral.ToolCallStart(2, "call_a", "get_weather"),
    neutral.ToolArgsDelta(2, '{"city": '),
    neutral.ToolArgsDelta(2, '"Paris"}'),
    neutral.BlockStop(2),
    neutral.ToolCallStart(3, "call_b", "get_time"),
    neutral.ToolArgsDelta(3, '{"tz": "UTC"}'),
    neutral.Finish("tool_calls"),
    neutral.Usage(input=21, cache_read=5, cache_write_5m=0, cache_write_1h=0, output=34, reasoning=4),
]


def test_encoder_writes_the_exact_anthropic_sequence() -> None:
    stream = encode_all(OPENAI_LIKE)
    assert names(stream) == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_stop"],  # the last block stopped by close()
        "message_delta",
        "message_stop",
    ]
    datas = [orjson.loads(data) for data in reference(stream)]
    assert datas[0]["message"] == {
        "id": "msg_gw",
        "type": "message",
        "role": "assistant",
        "model": "alias",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 0,
        },
    }
    assert datas[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
            "output_tokens": 34,
            "output_tokens_details": {"thinking_tokens": 4},
        },
    }
    assert all(data["type"] == name for data, name in zip(datas, names(stream), strict=True))
    assert b"[DONE]" not in stream


def test_message_start_carries_usage_known_before_the_first_content() -> None:
    encoder = anthropic.StreamEncoder("m", "msg_1", include_usage=False)
    assert encoder.encode(neutral.Start("up", "up-model")) == b""
    assert encoder.encode(neutral.Usage(input=40, cache_read=8)) == b""
    first = encoder.encode(neutral.TextDelta(0, "hi"))
    start = orjson.loads(reference(first)[0])
    assert (start["message"]["usage"]["input_tokens"], start["message"]["usage"]["cache_read_input_tokens"]) == (40, 8)


def test_the_sdk_accumulates_what_the_encoder_wrote(replay: Replay) -> None:
    replay.replies.append((200, "text/event-stream", encode_all(OPENAI_LIKE)))
    with replay.client().messages.stream(model="alias", max_tokens=100, messages=[{"role": "user", "content": "go"}]) as stream:
        final = stream.get_final_message()
    assert final.id == "msg_gw" and final.model == "alias"
    assert [block.to_dict() for block in final.content] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE},
        {"type": "text", "text": "Calling tools."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {"tz": "UTC"}},
    ]
    assert (final.stop_reason, final.stop_sequence) == ("tool_use", None)
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (21, 34, 5)
    assert final.usage.output_tokens_details is not None and final.usage.output_tokens_details.thinking_tokens == 4
    assert replay.received[0]["stream"] is True


def test_the_sdk_reads_raw_events_redacted_thinking_and_a_stop_sequence(replay: Replay) -> None:
    events: list[neutral.Event] = [
        neutral.Start("x", "y"),
        neutral.Usage(input=3),
        neutral.ThinkingDelta(0, redacted="EmwKAhgB"),
        neutral.BlockStop(0),
        neutral.TextDelta(1, "a, b, "),
        neutral.Usage(output=6),
        neutral.Finish("stop_sequence", "c"),
    ]
    heartbeat = anthropic.StreamEncoder("m", "i", include_usage=True).heartbeat
    assert heartbeat == b'event: ping\ndata: {"type": "ping"}\n\n'
    replay.replies.append((200, "text/event-stream", heartbeat + encode_all(events, "m", "msg_2")))
    raw = list(replay.client().messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=True))
    assert [event.type for event in raw] == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert raw[0].message.usage.input_tokens == 3  # type: ignore[union-attr]
    assert raw[1].content_block.to_dict() == {"type": "redacted_thinking", "data": "EmwKAhgB"}  # type: ignore[union-attr]
    assert raw[6].delta.stop_reason == "stop_sequence" and raw[6].delta.stop_sequence == "c"  # type: ignore[union-attr]
    assert raw[6].usage.output_tokens == 6  # type: ignore[union-attr]


def test_the_sdk_reads_a_whole_reply_from_encode_reply(replay: Replay) -> None:
    reply = neutral.collect(OPENAI_LIKE)
    body = orjson.dumps(anthropic.encode_reply(reply, "alias", "msg_3"))
    replay.replies.append((200, "application/json", body))
    message = replay.client().messages.create(model="alias", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert message.id == "msg_3" and message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[2].to_dict() == {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}}
    assert (message.usage.input_tokens, message.usage.output_tokens, message.usage.cache_read_input_tokens) == (21, 34, 5)


@pytest.mark.parametrize(
    ("status", "kind", "exception"),
    [
        (400, "invalid_request", sdk.BadRequestError),
        (401, "authentication", sdk.AuthenticationError),
        (403, "permission", sdk.PermissionDeniedError),
        (404, "not_found", sdk.NotFoundError),
        (429, "rate_limit", sdk.RateLimitError),
        (529, "overloaded", sdk.OverloadedError),
        (500, "api_error", sdk.InternalServerError),
    ],
)
def test_error_bodies_surface_as_the_sdks_own_exceptions(replay: Replay, status: int, kind: str, exception: type[Exception]) -> None:
    replay.replies.append((status, "application/json", anthropic.error_body(status, kind, f"precise {kind} message", None)))
    with pytest.raises(exception) as caught:
        replay.client().messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert f"precise {kind} message" in str(caught.value)
    assert caught.value.body["error"]["type"] == ERROR_TYPES[kind]  # type: ignore[attr-defined]


def test_a_cut_stream_ends_with_an_error_event_the_sdk_raises(replay: Replay) -> None:
    encoder = anthropic.StreamEncoder("m", "msg_4", include_usage=False)
    stream = encoder.encode(neutral.Start("a", "b")) + encoder.encode(neutral.TextDelta(0, "partial"))
    stream += encoder.encode(neutral.Error("overloaded", "upstream cut the stream"))
    assert encoder.close() == b"" and encoder.encode(neutral.TextDelta(0, "more")) == b""
    assert names(stream)[-1] == "error"
    replay.replies.append((200, "text/event-stream", stream))
    with (
        pytest.raises(sdk.APIStatusError, match="upstream cut the stream"),
        replay.client().messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as sdk_stream,
    ):
        sdk_stream.get_final_message()
    assert (
        anthropic.error_event("api_error", "boom", None)
        == b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n'
    )


def test_close_without_events_is_still_a_whole_message() -> None:
    datas = [orjson.loads(data) for data in reference(anthropic.StreamEncoder("m", "i", include_usage=False).close())]
    assert [data["type"] for data in datas] == ["message_start", "message_delta", "message_stop"]
    assert datas[1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


# ---- decoder ---------------------------------------------------------------------------------
ANTHROPIC_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 40,
                "cache_read_input_tokens": 900,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40},
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Need search."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q": 1}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Found it."}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta", "citation": {"type": "char_location"}}},
    {"type": "content_block_stop", "index": 2},
    {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "save", "input": {}}},
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": '{"ok": true}'}},
    {"type": "content_block_stop", "index": 3},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 77}},
    {"type": "message_stop"},
]


def test_decoder_reads_anthropics_event_sequence() -> None:
    decoder = anthropic.StreamDecoder()
    events = [event for data in ANTHROPIC_STREAM for event in decoder.feed(data)]
    assert decoder.done
    assert events == [
        neutral.Start("msg_up", "claude-sonnet-4-5"),
        neutral.Usage(input=25, cache_read=900, cache_write_5m=0, cache_write_1h=40, output=1),
        neutral.ThinkingDelta(0, ""),
        neutral.ThinkingDelta(0, "Need search."),
        neutral.ThinkingDelta(0, "", SIGNATURE),
        neutral.BlockStop(0),
        neutral.TextDelta(1, ""),  # the server tool block is skipped: neutral indices count kept blocks
        neutral.TextDelta(1, "Found it."),
        neutral.BlockStop(1),
        neutral.ToolCallStart(2, "toolu_9", "save"),
        neutral.ToolArgsDelta(2, '{"ok": true}'),
        neutral.BlockStop(2),
        neutral.Usage(output=77),
        neutral.Finish("tool_calls"),
    ]
    reply = neutral.collect(events)
    assert reply.usage == neutral.Usage(input=25, cache_read=900, cache_write_5m=0, cache_write_1h=40, output=77)
    assert [block.kind for block in reply.blocks] == ["thinking", "text", "tool_call"]


def test_decoder_reads_an_error_event() -> None:
    decoder = anthropic.StreamDecoder()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert decoder.feed(error) == [neutral.Error("overloaded", "Overloaded", "overloaded_error")]
    assert not decoder.done
    assert decoder.feed({"type": "some_future_event"}) == []


def test_decoded_then_encoded_then_decoded_is_the_same_reply() -> None:
    decoder = anthropic.StreamDecoder()
    events = [event for data in ANTHROPIC_STREAM for event in decoder.feed(data)]
    again = anthropic.StreamDecoder()
    second = [event for data in reference(encode_all(events)) for event in again.feed(orjson.loads(data))]
    assert again.done
    first_reply, second_reply = neutral.collect(events), neutral.collect(second)
    assert second_reply.blocks == first_reply.blocks
    assert second_reply.usage == first_reply.usage and second_reply.finish == first_reply.finish
    assert (second_reply.id, second_reply.model) == ("msg_gw", "alias")


def test_a_late_fragment_for_a_stopped_tool_call_reaches_its_own_block(replay: Replay) -> None:
    """An OpenAI-compatible server may interleave parallel calls' arguments: the fragment keeps its
    block's index, so the client's accumulator still puts it in the right call."""
    events: list[neutral.Event] = [
        neutral.Start("a", "b"),
        neutral.ToolCallStart(0, "call_a", "f"),
        neutral.ToolArgsDelta(0, '{"x": '),
        neutral.BlockStop(0),
        neutral.ToolCallStart(1, "call_b", "g"),
        neutral.ToolArgsDelta(1, '{"y": 2}'),
        neutral.ToolArgsDelta(0, "1}"),
        neutral.Finish("tool_calls"),
    ]
    replay.replies.append((200, "text/event-stream", encode_all(events)))
    with replay.client().messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_message()
    assert [(block.id, block.input) for block in final.content] == [("call_a", {"x": 1}), ("call_b", {"y": 2})]  # type: ignore[union-attr]
