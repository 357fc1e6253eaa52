"""SSE framing: where events end in a byte stream. The one splitter every stream consumer shares
(usage stripping, usage observation, ``[DONE]`` detection, heartbeats). Pure: no I/O.

The SSE specification lets a line end in LF, CRLF or a lone CR, and an event ends at an empty
line. Reads split events anywhere, even between the CR and the LF of one line end. ``Splitter``
hands out each complete event as the exact bytes that arrived (events are never re-encoded:
joined again they are the input), and holds back the incomplete rest, up to a cap.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from faregate.errors import UpstreamProtocolError

MAX_EVENT_BYTES = 8 * 1024 * 1024  # the default of server.max_event_bytes

# A line end (CRLF, LF, or a CR not followed by LF) followed by another: the empty line that ends an
# event. A CR at the very end of the data counts as a line end of its own; if a LF follows in the
# next read, it is a blank line of no consequence in front of the next event.
_END = rb"(?:\r\n|\r(?!\n)|\n)"
BOUNDARY = re.compile(_END + _END)


class Splitter:
    """Complete SSE events out of reads of any size. Raises UpstreamProtocolError (code
    ``upstream_event_too_large``) when one event outgrows ``limit`` bytes."""

    __slots__ = ("_parts", "_size", "_tail", "limit")

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self._parts: list[bytes] = []  # the incomplete event held back, as it arrived
        self._size = 0
        self._tail = b""  # its last 3 bytes: where a boundary completed by the next read may begin

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by ``data`` (each with its own line ends), in order."""
        scan = 0
        if self._parts:
            if BOUNDARY.search(self._tail + data) is None:  # still incomplete: keep it, copy nothing
                self._hold(data)
                return []
            scan = max(0, self._size - 3)
            data = b"".join(self._parts) + data
            self._parts, self._size, self._tail = [], 0, b""
        events: list[bytes] = []
        start = 0
        for match in BOUNDARY.finditer(data, scan):
            end = match.end()
            if end - start > self.limit:
                raise too_large(self.limit)
            events.append(data[start:end])
            start = end
        if start < len(data):
            self._hold(data[start:] if start else data)
        return events

    def _hold(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size > self.limit:
            raise too_large(self.limit)
        self._tail = (self._tail + data)[-3:]

    def close(self) -> bytes:
        """What is left when the stream ends: an event without its empty line, or b''."""
        rest = b"".join(self._parts)
        self._parts, self._size, self._tail = [], 0, b""
        return rest


def terminated(rest: bytes) -> bytes:
    """An event cut short of its empty line at the end of the stream, with one added."""
    last = rest[-1:]
    return rest + (last if last in (b"\n", b"\r") else b"\n\n")


def data_of(event: bytes) -> bytes | None:
    """The data of one event: its ``data`` lines (one leading space dropped), joined by LF; None
    when it has none (a comment, a keep-alive, an empty event)."""
    value: bytes | None = None
    for line in event.splitlines():  # bytes.splitlines splits at LF, CRLF and CR: SSE's line ends
        if line.startswith(b"data:"):
            part = line[6:] if line[5:6] == b" " else line[5:]
        elif line == b"data":
            part = b""
        else:
            continue
        value = part if value is None else value + b"\n" + part
    return value


def json_object(value: bytes, seen: int) -> dict[str, Any]:
    """An event's data as the JSON object every provider's events are; else UpstreamProtocolError
    (``upstream_malformed_event``) naming the event's place in the stream (``seen``). The caller
    sets the error's ``before`` (the complete events read with it), only when it is raised."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = None
    if type(data) is not dict:
        raise UpstreamProtocolError(
            f"event {seen} of the stream is not a JSON object ({len(value)} bytes of data)", code="upstream_malformed_event"
        )
    return data


def too_large(limit: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"an SSE event grew past {limit} bytes without its end (raise server.max_event_bytes to allow larger events)",
        code="upstream_event_too_large",
    )
