"""Sans-IO pieces that price streams: asking for usage, and hiding the usage event again."""

from __future__ import annotations

import orjson
import pytest

from faregate.providers.openai import UsageStripper, has_usage, with_stream_usage
from faregate.types import Usage


def event(data: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


CONTENT = [event({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}], "usage": None}) for w in ("Hel", "lo")]
FINISH = event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None})
USAGE = event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}})
DONE = b"data: [DONE]\n\n"
STREAM = b"".join([*CONTENT, FINISH, USAGE, DONE])


def test_with_stream_usage_keeps_what_the_client_asked() -> None:
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    assert with_stream_usage(asked) == (asked, False)
    plain, injected = with_stream_usage({"stream": True, "messages": []})
    assert injected and plain["stream_options"] == {"include_usage": True}
    other, injected = with_stream_usage({"stream": True, "stream_options": {"include_obfuscation": False}})
    assert injected and other["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@pytest.mark.parametrize("size", [1, 3, 17, 64, len(STREAM)])
def test_stripper_removes_only_the_usage_event_whatever_the_read_sizes(size: int) -> None:
    stripper = UsageStripper()
    out = b"".join(stripper.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size)) + stripper.flush()
    assert out == b"".join([*CONTENT, FINISH, DONE])
    assert stripper.usage == Usage(prompt_tokens=7, completion_tokens=2)


def test_stripper_passes_streams_without_usage_unchanged() -> None:
    stripper = UsageStripper()
    body = b"".join([*CONTENT, FINISH, DONE])
    assert stripper.feed(body) == body
    assert stripper.usage is None and stripper.flush() == b""


def test_has_usage_ignores_the_null_usage_of_every_chunk() -> None:
    assert not has_usage(CONTENT[0])
    assert has_usage(USAGE)
    assert has_usage(b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n')
