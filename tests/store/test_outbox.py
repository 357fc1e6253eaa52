"""The spend outbox on real files: whole fsync'd batches, replay in order, torn lines skipped and
reported, a file owned by a live process never claimed, and replay into SQLite idempotent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from faregate.store import outbox, spend
from faregate.store.db import make_engine, upgrade
from faregate.store.outbox import OutboxFile, orphans, replay

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from faregate.store.outbox import OutboxFile
    file = OutboxFile.create(Path(sys.argv[1]))
    file.append([{"request_id": f"child-{i}", "n": i} for i in range(int(sys.argv[2]))])
    print(file.path, flush=True)
    time.sleep(60)
    """
)


def rows(prefix: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"request_id": f"{prefix}-{i:05d}", "ts": 1_700_000_000.0 + i, "endpoint": "chat", "status": 200} for i in range(start, start + n)
    ]


def collect(into: list[dict[str, Any]]) -> outbox.Insert:
    async def insert(batch: list[dict[str, Any]]) -> None:
        into.extend(batch)

    return insert


def test_append_writes_whole_lines_to_a_private_locked_file(tmp_path: Path) -> None:
    file = OutboxFile.create(tmp_path / "outbox")
    try:
        assert file.append(rows("a", 3)) == 3
        assert file.append(rows("a", 2, start=3)) == 2
        assert file.path.name.startswith(f"outbox-{os.getpid()}-") and file.path.suffix == ".jsonl"
        assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
        assert list((tmp_path / "outbox").glob(".*")) == []  # the creation dot-file was renamed
        lines = file.path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and len(lines) == 6  # five whole lines, each ending in a newline
        assert OutboxFile.claim(file.path) is None  # its owner (this process, another descriptor) holds the lock
        assert list(orphans(tmp_path / "outbox", file.path)) == []
    finally:
        file.close()


def test_replay_is_in_order_and_resumes_after_a_failure(tmp_path: Path) -> None:
    file = OutboxFile.create(tmp_path)
    for batch in range(5):
        file.append(rows("r", 1000, start=batch * 1000))  # ~100 KB a batch: several replay steps
    outbox.READ_BYTES, saved = 64 * 1024, outbox.READ_BYTES
    try:
        got: list[dict[str, Any]] = []
        calls = 0

        async def flaky(batch: list[dict[str, Any]]) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("database went away")
            got.extend(batch)

        with pytest.raises(OSError, match="went away"):
            asyncio.run(replay(file, flaky))
        before = len(got)
        assert 0 < before < 5000
        assert asyncio.run(replay(file, flaky)) == 5000 - before  # resumes where it stopped: nothing twice
    finally:
        outbox.READ_BYTES = saved
        file.close()
    assert [r["request_id"] for r in got] == [f"r-{i:05d}" for i in range(5000)]


def test_a_torn_last_line_is_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = OutboxFile.create(tmp_path)
    file.append(rows("t", 4))
    file.close()
    with file.path.open("ab") as raw:  # a crash in the middle of the next batch
        raw.write(b'{"request_id": "t-00004", "ts": 17')
    claimed = OutboxFile.claim(file.path)
    assert claimed is not None
    got: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, logger="faregate.spend"):
        assert asyncio.run(replay(claimed, collect(got))) == 4
    claimed.close()
    assert [r["request_id"] for r in got] == ["t-00000", "t-00001", "t-00002", "t-00003"]
    assert "skipped 1 unreadable line(s)" in caplog.text


def test_a_batch_after_a_failed_write_starts_on_a_fresh_line(tmp_path: Path) -> None:
    file = OutboxFile.create(tmp_path)
    try:
        file.append(rows("f", 2))
        os.write(file.fd, b'{"request_id": "lost", "t')  # what a write cut short by ENOSPC leaves
        file._fresh_line = True  # as append() leaves it when its write raised
        file.append(rows("f", 2, start=2))
        got: list[dict[str, Any]] = []
        asyncio.run(replay(file, collect(got)))
    finally:
        file.close()
    assert [r["request_id"] for r in got] == ["f-00000", "f-00001", "f-00002", "f-00003"]


def test_a_dead_workers_file_is_claimed_only_after_it_died(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "7"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        path = Path(child.stdout.readline().strip())
        assert path.exists()
        assert list(orphans(tmp_path, None)) == [path]
        assert OutboxFile.claim(path) is None  # alive: its lock is held
    finally:
        child.send_signal(signal.SIGKILL)  # no clean shutdown: the lock goes with the process
        child.wait(10)
    claimed = OutboxFile.claim(path)
    assert claimed is not None
    got: list[dict[str, Any]] = []
    assert asyncio.run(replay(claimed, collect(got))) == 7  # the fsync'd batch survived the kill
    claimed.remove()
    assert not path.exists() and claimed.fd == -1


def test_stale_creation_files_are_cleaned_up(tmp_path: Path) -> None:
    stale = tmp_path / ".outbox-1-deadbeef.jsonl.tmp"
    stale.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".outbox-2-deadbeef.jsonl.tmp"
    fresh.write_bytes(b"")
    assert list(orphans(tmp_path, None)) == []
    assert not stale.exists() and fresh.exists()


def test_replaying_twice_into_sqlite_leaves_one_row_per_request(tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")
        try:
            await upgrade(engine)
            file = OutboxFile.create(tmp_path / "outbox")
            file.append([spend.prepare(r) for r in rows("s", 700)])
            file.append([spend.prepare(r) for r in rows("s", 300, start=700)])

            async def insert(batch: list[dict[str, Any]]) -> None:
                await spend.insert_rows(engine, batch)

            first = await replay(file, insert)
            file.offset = 0  # as a second worker would, or this one after a crash before clearing
            await replay(file, insert)
            file.close()
            listed, _ = await spend.list_rows(engine, spend.Filters(), 100, 0)
            totals, _ = await spend.aggregate(engine, [], spend.Filters(), 10)
            assert listed[0]["day"] == time.strftime("%Y-%m-%d", time.gmtime(listed[0]["ts"]))
            return first, totals[0]["requests"]
        finally:
            await engine.dispose()

    first, stored = asyncio.run(run())
    assert first == 1000 and stored == 1000
