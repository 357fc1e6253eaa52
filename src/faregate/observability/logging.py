"""Structured logs: one JSON object per line on stderr. One line per request, never per chunk.

Nothing here receives a secret: requests are described by credential *fingerprints*. Values go
through orjson, so CR/LF in user-supplied strings cannot forge log lines.

Access lines bypass the ``logging`` machinery (about 30 Python calls a line, measured with
``python -m bench.callcount``): ``AccessLog`` appends the encoded line to a buffer that the
gateway flushes every ``FLUSH_SECONDS`` and at shutdown, in the same JSON shape as other lines.
The write itself happens in a writer thread of its own, never on the event loop: stderr is often a
pipe (systemd, docker, a terminal) whose reader may lag, and a ``write`` of 256 KiB into a full
64 KiB pipe blocks until the reader drains it, holding every request and stream of the worker.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import Any, BinaryIO, TextIO

import orjson

FLUSH_SECONDS = 0.2
MAX_BUFFER = 256 * 1024  # flush at once beyond this many bytes
MAX_BACKLOG = 16 * 1024 * 1024  # bytes handed to the writer and not yet written: beyond, lines are dropped
CLOSE_TIMEOUT = 3.0  # at shutdown: how long the writer may take to write what is left


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class AccessLog:
    """Buffered JSON access lines, written to ``stream`` (stderr) by a writer thread: ``flush`` hands
    the buffer over and returns at once; ``close`` writes what is left and stops the thread."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._size = 0
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._handed = 0  # bytes handed to the writer (only the caller's thread changes it)
        self._written = 0  # bytes the writer took off the queue (only the writer changes it)
        self.dropped = 0  # lines dropped because the stream did not keep up (MAX_BACKLOG)

    def record(self, fields: dict[str, Any]) -> None:
        now = time.time()
        head = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": "info",
            "logger": "faregate.access",
        }
        line = orjson.dumps({**head, **fields}, option=orjson.OPT_APPEND_NEWLINE, default=str)
        self._lines.append(line)
        self._size += len(line)
        if self._size > MAX_BUFFER:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered lines to the writer thread (started on first use); never writes here."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        count = len(self._lines)
        self._lines.clear()
        self._size = 0
        if self._handed - self._written + len(data) > MAX_BACKLOG:  # the stream is stuck: drop rather than grow
            self.dropped += count
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, name="faregate-access-log", daemon=True)
            self._writer.start()
        self._handed += len(data)
        self._queue.put(data)

    def close(self) -> None:
        """Write what is left and stop the writer (at shutdown)."""
        self.flush()
        writer = self._writer
        if writer is not None:
            self._queue.put(None)
            writer.join(CLOSE_TIMEOUT)
            self._writer = None

    def _write_forever(self) -> None:
        stream = self._stream or sys.stderr.buffer
        while (data := self._queue.get()) is not None:
            self._written += len(data)
            try:
                stream.write(data)
                stream.flush()
            except (OSError, ValueError):
                pass  # logging must never take a request down; the lines are lost
