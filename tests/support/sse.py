"""A reference SSE parser for tests, written from the specification and independent of faregate's."""

from __future__ import annotations

LF, CR = 10, 13


def reference(stream: bytes) -> list[bytes]:
    """The data of every event the SSE specification's parser dispatches, written from the spec
    (one character at a time) and independent of the splitter: a line ends at CRLF, LF or CR; an
    empty line dispatches the data lines seen since the last one; an unfinished event at the end
    is dropped."""
    lines: list[bytes] = []
    line = bytearray()
    i = 0
    while i < len(stream):
        c = stream[i]
        if c in (LF, CR):
            lines.append(bytes(line))
            line.clear()
            if c == CR and i + 1 < len(stream) and stream[i + 1] == LF:
                i += 1
        else:
            line.append(c)
        i += 1
    dispatched: list[bytes] = []
    data: list[bytes] = []
    for text in lines:
        if not text:
            if data:
                dispatched.append(b"\n".join(data))
            data = []
            continue
        if text.startswith(b":"):
            continue
        name, _, value = text.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
    return dispatched
