"""An entry from a plain reply and from a stream, in each readable client format, stored and read
back, replayed whole and streamed; what cannot be read back, or ended in an error, is not kept."""

from __future__ import annotations

import orjson

from faregate.cache import entry, replay
from faregate.providers import sse
from faregate.types import Usage

OPENAI_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
USAGE = Usage(prompt_tokens=5, completion_tokens=2)


def chunks_of(reply: bytes) -> list[dict[str, object]]:
    events = sse.Splitter().feed(reply)
    return [orjson.loads(v) for v in (sse.data_of(e) for e in events) if v is not None and v != b"[DONE]"]


def test_a_plain_openai_reply_replays_as_its_bytes_and_as_a_stream() -> None:
    body = orjson.dumps(OPENAI_REPLY)
    found = entry.from_body("openai_chat", body, USAGE, 0.5)
    assert found is not None
    data = entry.dumps(found)
    assert data is not None
    back = entry.loads(data)
    assert back is not None and back.cost == 0.5
    assert replay.body(back, "openai_chat") == body  # the first plain answer's bytes, as they were
    streamed = replay.stream(back, "openai_chat", include_usage=True)
    assert streamed.endswith(b"data: [DONE]\n\n")
    chunks = chunks_of(streamed)
    text = "".join(str(c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])  # type: ignore[index, union-attr]
    assert text == "Hello there"
    assert chunks[-1]["usage"]["prompt_tokens"] == 5  # type: ignore[index]


def test_a_stream_is_collected_and_replays_whole() -> None:
    events = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "g",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
        },
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "g", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "g",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
    ]
    first, *rest = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    pieces = [first[:17], first[17:], b": keep-alive\n\n", b"".join(rest), b"data: [DONE]\n\n"]  # a heartbeat between events
    found = entry.from_stream("openai_chat", pieces, USAGE, 0.25)
    assert found is not None and found.body is None
    whole = orjson.loads(replay.body(found, "openai_chat"))
    assert whole["choices"][0]["message"]["content"] == "Hello" and whole["usage"]["prompt_tokens"] == 5


def test_an_anthropic_reply_replays_as_a_stream() -> None:
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    found = entry.from_body("anthropic", orjson.dumps(reply), Usage(prompt_tokens=3, completion_tokens=1), None)
    assert found is not None
    kinds = [c["type"] for c in chunks_of(replay.stream(found, "anthropic", include_usage=False))]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds


def test_what_cannot_be_read_back_is_not_kept() -> None:
    assert entry.from_body("openai_chat", b"not json", None, None) is None
    assert entry.from_body("openai_chat", orjson.dumps({"error": {"message": "x"}}), None, None) is None
    cut = b'data: {"id":"c","object":"chat.completion.chunk","model":"g","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    assert entry.from_stream("openai_chat", [cut], None, None) is None  # no finish: the stream did not end
    assert entry.loads(b"{}") is None and entry.loads(b"garbage") is None
    big = entry.from_body("openai_chat", orjson.dumps({**OPENAI_REPLY, "pad": "x" * entry.MAX_ENTRY_BYTES}), None, None)
    assert big is not None and entry.dumps(big) is None  # too large for a store
