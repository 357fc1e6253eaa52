"""A durable local outbox for spend rows the database could not take: append-only JSON lines.

Why a file and not memory: an outage can outlast a process. Each batch is written whole and
``os.fsync``'d before the writer counts it as safe, so a crash or a power cut after that loses
nothing; replay later inserts the rows in file order, and the database skips request ids it
already has, so replaying a file twice (or a file whose batch also reached the database) is
harmless.

One file per worker process, ``outbox-<pid>-<random>.jsonl``, created on first use. Its owner
holds an exclusive ``flock`` on it for the process's life, taken *before* the file gets its
visible name (it is created as a dot-file, locked, then renamed), so a visible file that another
process can lock has an owner that is gone: any worker may then claim it, replay it and delete
it. Two live workers never replay the same file at once, because both need the lock.

A crash in the middle of a write leaves a torn last line. Reading skips any line that is not a
whole JSON object (and reports how many), so replay never stops on one; the writer starts its next
batch on a fresh line after a failed write, so a torn line never swallows the rows after it.
All methods here block (file I/O): the writer calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("faregate.spend")
Row = dict[str, Any]
Insert = Callable[[list[Row]], Awaitable[object]]
PATTERN = "outbox-*.jsonl"
READ_BYTES = 1024 * 1024  # one replay step reads at most this much (about a thousand rows)
STALE_TMP_SECONDS = 60.0  # a dot-file this old was left by a worker that died while creating it


@dataclass(frozen=True, slots=True)
class Chunk:
    rows: list[Row]
    end: int  # file offset after the last line consumed
    torn: int  # lines skipped because they are not whole JSON objects
    eof: bool


class OutboxFile:
    """One locked outbox file: append batches (fsync'd), read whole lines from an offset."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.offset = 0  # where the next replay read starts
        self._fresh_line = False  # a write failed: the next batch starts on a new line

    @classmethod
    def create(cls, directory: Path) -> OutboxFile:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"outbox-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        hidden = directory / f".{name}.tmp"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else has seen the name yet: never blocks
            os.rename(hidden, directory / name)
            _fsync_directory(directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                hidden.unlink()
            raise
        return cls(directory / name, fd)

    @classmethod
    def claim(cls, path: Path) -> OutboxFile | None:
        """The file, locked, if its owner is gone; None while a live process holds it (or it vanished)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        return cls(path, fd)

    def append(self, rows: Iterable[Row]) -> int:
        """Write the rows as one block of lines and fsync; only then are they safe. Returns the count."""
        lines = [orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows]
        data = (b"\n" if self._fresh_line else b"") + b"".join(lines)
        self._fresh_line = True  # until the write below has fully succeeded
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)
        self._fresh_line = False
        return len(lines)

    def read(self) -> Chunk:
        """Whole lines from ``offset``, at most about READ_BYTES; a torn tail at the end of the file
        (a crash mid-write) is skipped and counted."""
        size = os.fstat(self.fd).st_size
        if self.offset >= size:
            return Chunk([], self.offset, 0, True)
        data = os.pread(self.fd, READ_BYTES, self.offset)
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no newline in the block
            if self.offset + len(data) >= size:  # a torn last line
                return Chunk([], size, 1, True)
            data, cut = self._long_line(size)
        rows: list[Row] = []
        torn = 0
        for line in data[:cut].split(b"\n"):
            if not line:
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                torn += 1
        end = self.offset + cut
        return Chunk(rows, end, torn, end >= size)

    def _long_line(self, size: int) -> tuple[bytes, int]:
        """A line longer than READ_BYTES (never written by faregate, but never a reason to stop)."""
        data = os.pread(self.fd, size - self.offset, self.offset)
        cut = data.find(b"\n") + 1
        return data, cut if cut else len(data)

    def clear(self) -> None:
        """Everything was replayed: empty the file, keep it (and its lock)."""
        os.ftruncate(self.fd, 0)
        self.offset = 0

    def remove(self) -> None:
        """Delete and unlock: empty it first, so a process that opened it meanwhile finds nothing."""
        os.ftruncate(self.fd, 0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Close once (a second close could hit a descriptor number reused meanwhile)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the new file's name durable too, not only its contents."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def orphans(directory: Path, own: Path | None) -> Iterator[Path]:
    """Outbox files of other processes, oldest name first; removes stale creation dot-files."""
    if not directory.is_dir():
        return
    now = time.time()
    for hidden in directory.glob(".outbox-*.tmp"):
        with contextlib.suppress(OSError):
            if now - hidden.stat().st_mtime > STALE_TMP_SECONDS:
                hidden.unlink()
    for path in sorted(directory.glob(PATTERN)):
        if path != own:
            yield path


async def replay(file: OutboxFile, insert: Insert) -> int:
    """Insert the file's rows in order from its offset to its end; the offset advances after each
    inserted step, so a failure (the database went away again) resumes where it stopped. Raises
    what ``insert`` raises. Returns the number of rows inserted."""
    done = 0
    while True:
        chunk = await asyncio.to_thread(file.read)
        if chunk.torn:
            log.warning(f"outbox {file.path.name}: skipped {chunk.torn} unreadable line(s) (a write cut short by a crash)")
        if chunk.rows:
            await insert(chunk.rows)
            done += len(chunk.rows)
        file.offset = chunk.end
        if chunk.eof:
            return done
