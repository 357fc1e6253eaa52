"""Sans-IO pieces that read streams: asking for usage, observing it, hiding the usage event again,
and refusing an event that is not JSON; with every SSE line ending and every split of the reads."""

from __future__ import annotations

import orjson
import pytest

from faregate.errors import UpstreamProtocolError
from faregate.providers.openai import StreamEvents, UsageStripper, with_stream_usage
from faregate.providers.sse import Splitter
from faregate.types import Usage
from tests.support.sse import reference


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


def feed_all(watch: StreamEvents, stream: bytes, reads: list[int]) -> bytes:
    """Split ``stream`` at ``reads`` offsets and pass it through the splitter and ``watch``, as the relay does."""
    splitter = Splitter()
    out = b""
    for start, end in zip([0, *reads], [*reads, len(stream)], strict=True):
        out += watch.feed(splitter.feed(stream[start:end]))
    rest = splitter.close()
    assert not rest.strip(b"\r\n")  # at most the LF of a CRLF whose CR ended the last read
    return out + rest


ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_stripper_removes_only_the_usage_event_whatever_the_framing_and_read_sizes(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    expected = b"".join([*CONTENT, FINISH, DONE]).replace(b"\n", ending)
    for cut in range(len(stream) + 1):
        stripper = UsageStripper()
        out = feed_all(stripper, stream, [cut])
        # the same events; only a read that ends between the CR and the LF of a CRLF next to the usage
        # event moves that LF (a blank line of no consequence) in or out with it
        assert out == expected or (ending == b"\r\n" and abs(len(out) - len(expected)) == 1), cut
        assert reference(out) == reference(expected), cut
        assert stripper.usage == Usage(prompt_tokens=7, completion_tokens=2)
        assert stripper.done


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_usage_is_observed_without_stripping_when_the_client_asked(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    for cut in range(0, len(stream) + 1, 7):
        watch = StreamEvents()
        assert feed_all(watch, stream, [cut]) == stream
        assert watch.usage == Usage(prompt_tokens=7, completion_tokens=2) and watch.done


def test_a_stream_without_usage_passes_unchanged() -> None:
    stripper = UsageStripper()
    body = b"".join([*CONTENT, FINISH, DONE])
    assert stripper.feed(Splitter().feed(body)) == body
    assert stripper.usage is None and stripper.done


@pytest.mark.parametrize(
    "data",
    [b'{"id": "x", "choices": [<html>', b"not json", b"42", b'"a string"', b"[DONE] and more"],
)
def test_an_event_whose_data_is_not_a_json_object_is_refused(data: bytes) -> None:
    watch = StreamEvents()
    watch.feed([CONTENT[0]])
    with pytest.raises(UpstreamProtocolError) as caught:
        watch.feed([b"data: " + data + b"\n\n", DONE])
    assert caught.value.code == "upstream_malformed_event" and "event 2" in caught.value.reason
    assert not watch.done


def test_comments_and_multi_line_data_are_read_as_the_spec_says() -> None:
    watch = StreamEvents()
    events = [b": keep-alive\n\n", b'data: {"choices":\ndata: [], "usage": {"prompt_tokens": 3}}\n\n', DONE]
    assert watch.feed(events) == b"".join(events)
    assert watch.usage == Usage(prompt_tokens=3) and watch.done
