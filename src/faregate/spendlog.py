"""The spend log writer: one row per proxied request, written in batches off the hot path.

``record`` only appends a dict to a list (one Python call per request). A background task, started
through ``Gateway.spawn``, flushes every ``FLUSH_SECONDS`` or as soon as ``BATCH_ROWS`` are waiting:

- database healthy: one idempotent INSERT per batch (``faregate.store.spend``);
- database failing (unreachable, timing out, or so slow that more than ``BACKLOG_ROWS`` rows
  wait in memory): the batch goes to this worker's outbox file
  (``faregate.store.outbox``, fsync'd) and the writer stays in *outbox mode*: later batches go to
  the outbox too, behind the earlier ones, so the file keeps the order requests finished in.
  Every ``RETRY_SECONDS`` it replays the outbox; when the whole file is in the database it
  empties the file and writes to the database again;
- rows the database refuses as data while it still answers (``spend.refused``; ``spend.prepare``
  makes this rare) are set aside in ``rejected-<pid>.jsonl`` beside the outbox and logged, so one
  bad row can never hold the log, or the outbox behind it, back.

At start, and every ``SWEEP_SECONDS``, a worker replays outbox files left by workers that are gone
(their lock is free). ``close`` (from ``Gateway.stop``) writes what is left: database, else
outbox. What a SIGKILL (or a power cut) loses: only rows neither in the database nor in an outbox
file yet: those of the last ``FLUSH_SECONDS`` (or ``BATCH_ROWS``), and a batch whose write was in
flight. An outbox file survives (fsync'd) and is replayed by the next worker that starts.
Log lines name exception classes only: never a database URL, never a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.config.schema import StateConfig
from faregate.observability.metrics import Metrics
from faregate.store import spend
from faregate.store.outbox import OutboxFile, orphans, replay

log = logging.getLogger("faregate.spend")
Row = dict[str, Any]

FLUSH_SECONDS = 0.5
BATCH_ROWS = 500
# rows prepared and written per write, so per turn of the event loop: each write awaits the
# database (or the disk), so requests and stream frames run between chunks. One batch at once cost
# the loop 3-8 µs a row (``spend.prepare``) and the database thread (which holds the GIL while it
# binds parameters) ~30 bound values a row: the 3,000 rows of half a second at 6,000 req/s held the
# loop for ~10-20 ms in one turn; a chunk of 128 is ~0.4-1 ms.
TURN_ROWS = 128
RETRY_SECONDS = 1.0  # in outbox mode: how often to try the database again
SWEEP_SECONDS = 30.0  # how often to look for outbox files of workers that are gone
WRITE_TIMEOUT = 10.0  # a database that hangs is as unavailable as one that refuses
CLOSE_TIMEOUT = 3.0  # at shutdown: how long the last batch may wait for the database
BACKLOG_ROWS = 20_000  # more rows than this waiting (~25 MB): the database is not keeping up, use the outbox
MAX_PENDING = 200_000  # rows held in memory when neither the database nor the disk takes them
UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)  # the database cannot be used now
METRIC = "faregate_spend_rows_total"


def outbox_directory(state: StateConfig) -> Path:
    """``state.outbox_dir``; else ``outbox/`` beside a SQLite database; else ``.faregate/outbox``
    (PostgreSQL: a local directory, since the point is to not need the database)."""
    if state.outbox_dir:
        return Path(state.outbox_dir)
    if state.database.startswith("sqlite:///"):
        return Path(state.database.removeprefix("sqlite:///")).parent / "outbox"
    return Path(".faregate") / "outbox"


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return type(exc).__name__ + (f" ({type(orig).__name__})" if orig is not None else "")


class SpendLog:
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self.metrics = metrics
        self.rows: list[Row] = []
        self.engine: AsyncEngine | None = None
        self.outbox: OutboxFile | None = None
        self.outbox_rows = 0  # rows in this worker's outbox not yet replayed (a gauge)
        self.outbox_mode = False
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._sweep_at = 0.0  # at start: look for files left by dead workers
        self._closing = False
        self._task: asyncio.Task[Any] | None = None

    def record(self, row: Row) -> None:
        """The hot path: O(1), no I/O, no await."""
        rows = self.rows
        rows.append(row)
        if len(rows) == BATCH_ROWS:
            self._wake.set()

    async def run(self, engine: AsyncEngine) -> None:
        """The background task (``Gateway.spawn``): flush until ``close``."""
        self.engine = engine
        self._task = asyncio.current_task()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            if self._closing:
                return
            try:
                now = time.monotonic()
                if not self.outbox_mode and now >= self._sweep_at:
                    self._sweep_at = now + SWEEP_SECONDS
                    await self._sweep()
                await self.flush()
            except Exception:  # a bug here must not stop the spend log for the worker's life
                log.exception("spend log: unexpected error while flushing; retrying")

    async def flush(self) -> None:
        if self.outbox_mode and time.monotonic() >= self._retry_at:
            await self._recover()
        if not self.rows:
            return
        if len(self.rows) > BACKLOG_ROWS and not self.outbox_mode:  # overload: spill to disk, keep memory bounded
            self.outbox_mode = True
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.warning(f"spend log: the database is not keeping up ({len(self.rows)} rows waiting); writing to the outbox")
        batch, self.rows = self.rows, []
        for start in range(0, len(batch), TURN_ROWS):  # a chunk per write: the loop serves requests in between
            rows = [spend.prepare(row) for row in batch[start : start + TURN_ROWS]]
            try:
                if (self.outbox_mode or not await self._to_database(rows, WRITE_TIMEOUT)) and not await self._to_outbox(
                    rows, batch[start + TURN_ROWS :]
                ):
                    return  # neither database nor disk: every row of the batch is held in memory, in order
            except asyncio.CancelledError:  # stopping mid-write: keep the rows for close() (a repeat is harmless)
                self.rows[:0] = batch[start:]
                raise

    async def close(self) -> None:
        """Stop the task, then write what is left: the database if it is healthy, else the outbox."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        rows = [spend.prepare(row) for row in self.rows]
        self.rows = []
        if rows and (self.outbox_mode or not await self._to_database(rows, CLOSE_TIMEOUT)):
            await self._to_outbox(rows)
        if self.outbox is not None:
            if self.outbox_rows == 0:
                self.outbox.remove()
            else:
                log.warning(f"{self.outbox_rows} spend row(s) stay in {self.outbox.path}; a worker replays them when it starts")
                self.outbox.close()
            self.outbox = None

    # sinks ----------------------------------------------------------------------------------------
    async def _insert_kept(self, rows: list[Row]) -> int:
        """Outbox rows, prepared again: one written by an older faregate lacks the newer columns
        (0009's cache, saved_usd), which the positional INSERT needs present (None)."""
        return await self._insert([spend.prepare(row) for row in rows])

    async def _insert(self, rows: list[Row], timeout: float = WRITE_TIMEOUT) -> int:
        """Insert, setting aside rows the database refuses; the number inserted. Raises UNAVAILABLE errors."""
        assert self.engine is not None
        async with asyncio.timeout(timeout):
            try:
                await spend.insert_rows(self.engine, rows)
            except DBAPIError as exc:
                if not spend.refused(exc):
                    raise
                rejected = await spend.insert_each(self.engine, rows)
                if rejected:
                    await asyncio.to_thread(self._reject, rejected)
                return len(rows) - len(rejected)
        return len(rows)

    async def _to_database(self, rows: list[Row], timeout: float) -> bool:
        if self.engine is None:
            return False
        try:
            inserted = await self._insert(rows, timeout)
        except UNAVAILABLE as exc:
            self.outbox_mode = True
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.warning(f"spend log: the database is unavailable ({_describe(exc)}); writing to the outbox in {self.directory}")
            return False
        self.metrics.inc(METRIC, ("db",), inserted)
        return True

    async def _to_outbox(self, rows: list[Row], after: list[Row] | None = None) -> bool:
        """Whether the rows are in the outbox; if not, they (and ``after``: the batch's rows not yet
        written) are held in memory, in front of rows recorded since."""
        try:
            if self.outbox is None:
                self.outbox = await asyncio.to_thread(OutboxFile.create, self.directory)
            written = await asyncio.to_thread(self.outbox.append, rows)
        except OSError as exc:  # no database and no disk: hold the rows in memory, bounded, and say so
            self.rows[:0] = rows + after if after else rows
            log.error(f"spend log: cannot write the outbox in {self.directory} ({_describe(exc)}); {len(self.rows)} row(s) held in memory")
            excess = len(self.rows) - MAX_PENDING
            if excess > 0:
                del self.rows[:excess]
                self.metrics.inc(METRIC, ("dropped",), excess)
                log.error(f"spend log: dropped the {excess} oldest row(s): memory bound of {MAX_PENDING} rows reached")
            return False
        self.outbox_rows += written
        self.metrics.inc(METRIC, ("outbox",), written)
        return True

    def _reject(self, rows: Sequence[Row]) -> None:
        """Rows the database refuses as data: kept on disk for an operator, never retried."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"rejected-{os.getpid()}.jsonl"
        with path.open("ab") as out:
            out.write(b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows))
            out.flush()
            os.fsync(out.fileno())
        self.metrics.inc(METRIC, ("rejected",), len(rows))
        log.error(f"spend log: the database refused {len(rows)} row(s); kept in {path}")

    # recovery -------------------------------------------------------------------------------------
    async def _recover(self) -> None:
        """Replay this worker's whole outbox; leave outbox mode only when all of it is in."""
        self._retry_at = time.monotonic() + RETRY_SECONDS
        replayed = 0
        if self.outbox is not None:
            try:
                replayed = await replay(self.outbox, self._insert_kept)
            except UNAVAILABLE:
                return
            await asyncio.to_thread(self.outbox.clear)
            self.outbox_rows = 0
            self.metrics.inc(METRIC, ("replayed",), replayed)
        self.outbox_mode = False
        self._sweep_at = 0.0  # other workers' leftovers too
        log.info(f"spend log: writing to the database again; {replayed} row(s) replayed from the outbox")

    async def _sweep(self) -> None:
        """Replay and delete the outbox files of workers that are gone (their lock is free)."""
        own = self.outbox.path if self.outbox is not None else None
        for path in await asyncio.to_thread(lambda: list(orphans(self.directory, own))):
            claimed = await asyncio.to_thread(OutboxFile.claim, path)
            if claimed is None:
                continue  # a live worker's
            try:
                replayed = await replay(claimed, self._insert_kept)
            except UNAVAILABLE as exc:
                log.warning(f"spend log: cannot replay {path.name} now ({_describe(exc)}); retrying later")
                return
            else:
                await asyncio.to_thread(claimed.remove)
            finally:
                claimed.close()  # releases the lock (a no-op after remove)
            self.metrics.inc(METRIC, ("replayed",), replayed)
            log.info(f"spend log: replayed {replayed} row(s) left by a stopped worker in {path.name}")
