"""The one SSE event splitter: every line ending the specification allows, events split across
reads at every byte offset, bytes never re-encoded, and the cap on one event."""

from __future__ import annotations

import pytest

from faregate.errors import UpstreamProtocolError
from faregate.providers.sse import Splitter, data_of, terminated
from tests.support.sse import reference

EVENTS = [
    b'data: {"n":1}',
    b": a comment",
    b'event: message\ndata: {"n":2}\nid: 7',
    b"data: first\ndata:second\ndata",  # three data lines, one without a space, one without a colon
    b'data: {"n":"\xc3\xa9"}',
    b"data: [DONE]",
]


def framed(ending: bytes) -> bytes:
    return b"".join(e.replace(b"\n", ending) + ending + ending for e in EVENTS)


FRAMINGS = {
    "lf": framed(b"\n"),
    "crlf": framed(b"\r\n"),
    "cr": framed(b"\r"),
    # mixed, as the spec allows: a CRLF event, a CR event, a LF line ending an event begun with CR
    "mixed": b'data: {"n":1}\r\n\r\ndata: {"n":2}\r\rdata: {"n":3}\r\n\ndata: {"n":4}\n\r\ndata: {"n":5}\n\rdata: [DONE]\r\n\r\n',
}


def run(splitter: Splitter, reads: list[bytes]) -> list[bytes]:
    events: list[bytes] = []
    for read in reads:
        events += splitter.feed(read)
    rest = splitter.close()
    if rest.strip(b"\r\n"):
        events.append(terminated(rest))
    elif rest:
        events.append(rest)  # stray line ends after the last event: passed on as they are
    return events


def datas(events: list[bytes]) -> list[bytes]:
    return [d for d in (data_of(e) for e in events) if d is not None]


@pytest.mark.parametrize("name", FRAMINGS)
def test_events_split_at_every_byte_offset_come_out_whole_and_unchanged(name: str) -> None:
    stream = FRAMINGS[name]
    expected = reference(stream)
    assert len(expected) >= 5
    for cut in range(len(stream) + 1):
        events = run(Splitter(), [stream[:cut], stream[cut:]])
        assert b"".join(events) == stream, cut  # the exact bytes, in order: nothing re-encoded
        assert datas(events) == expected, cut


@pytest.mark.parametrize("name", FRAMINGS)
def test_events_read_one_byte_at_a_time(name: str) -> None:
    stream = FRAMINGS[name]
    events = run(Splitter(), [stream[i : i + 1] for i in range(len(stream))])
    assert b"".join(events) == stream
    assert datas(events) == reference(stream)


def test_events_split_at_every_pair_of_offsets() -> None:
    stream = b'data: {"a":1}\r\n\r\ndata: x\r\rdata: y\n\r\n: c\r\n\r\ndata: [DONE]\r\r'
    expected = reference(stream)
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            events = run(Splitter(), [stream[:i], stream[i:j], stream[j:]])
            assert b"".join(events) == stream, (i, j)
            assert datas(events) == expected, (i, j)


def test_each_complete_event_is_handed_out_at_once() -> None:
    """A CR that ends an event is not held back waiting for a LF that may never come."""
    splitter = Splitter()
    assert splitter.feed(b"data: a\r\r") == [b"data: a\r\r"]
    assert splitter.feed(b"data: b\r\n\r\n") == [b"data: b\r\n\r\n"]
    assert splitter.feed(b"data: c\n\ndata: d") == [b"data: c\n\n"]
    assert splitter.feed(b"\n") == []
    assert splitter.feed(b"\n") == [b"data: d\n\n"]
    assert splitter.close() == b""


def test_a_read_that_is_one_whole_event_is_passed_on_as_the_same_object() -> None:
    """The diagonal's usual case costs no copy."""
    event = b'data: {"choices":[]}\n\n'
    assert Splitter().feed(event)[0] is event


def test_an_event_without_its_empty_line_is_capped() -> None:
    splitter = Splitter(limit=1024)
    for _ in range(10):
        assert splitter.feed(b"x" * 100) == []  # 1000 bytes held: within the cap
    with pytest.raises(UpstreamProtocolError) as caught:
        splitter.feed(b"x" * 100)
    assert caught.value.code == "upstream_event_too_large"
    assert "1024" in caught.value.reason and "server.max_event_bytes" in caught.value.reason


def test_a_complete_event_over_the_cap_is_refused_and_one_at_the_cap_is_not() -> None:
    at_cap = b"data: " + b"x" * (1024 - 8) + b"\n\n"
    assert Splitter(limit=1024).feed(at_cap) == [at_cap]
    with pytest.raises(UpstreamProtocolError):
        Splitter(limit=1024).feed(b"data: " + b"x" * 1024 + b"\n\n")
    splitter = Splitter(limit=1024)
    splitter.feed(at_cap[:500])
    assert splitter.feed(at_cap[500:]) == [at_cap]


def test_terminated_completes_a_last_event_whatever_its_line_end() -> None:
    for rest in (b"data: [DONE]", b"data: [DONE]\n", b"data: [DONE]\r", b"data: [DONE]\r\n"):
        event = terminated(rest)
        assert reference(event) == [b"[DONE]"], rest
