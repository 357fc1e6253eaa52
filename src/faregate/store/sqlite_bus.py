"""Control bus and worker registry in a SQLite file: every worker and instance on one host.

Events are rows with an increasing sequence number (AUTOINCREMENT: never reused, and one writer
at a time, so every reader sees them in that order) that each worker reads past its cursor
(polled every ``POLL_SECONDS``); that number is the event's Mark. The registry is one row per worker. All SQL runs in a thread so
the event loop never waits on the file lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from faregate.store.base import BusError, Delivery, Event, Mark, WorkerInfo, decode_event, encode_event
from faregate.store.db import private_file

POLL_SECONDS = 0.2
EPOCH = ""  # one numbering for the life of the file
SETUP_SECONDS = 5.0
KEEP_EVENTS_SECONDS = 300.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS control_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, heartbeat REAL NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


def _set_up(db: sqlite3.Connection) -> None:
    """WAL and the tables. Workers starting together race to switch a new file to WAL, and SQLite
    answers that race with "database is locked" at once, without waiting its busy timeout: retry."""
    deadline = time.monotonic() + SETUP_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SqliteBus:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._cursor = 0
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            private_file(self.path)
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            try:
                _set_up(db)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """One statement; any SQLite failure is a BusError, as the protocol says (callers degrade, not crash)."""
        async with self._lock:  # one statement at a time on this connection
            try:
                return await asyncio.to_thread(lambda: self._connect().execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise BusError(f"control bus file {self.path.name}: {exc}") from None

    async def _insert(self, sql: str, args: tuple[object, ...]) -> int:
        """One INSERT; the new row's id (lastrowid, not RETURNING: older SQLite builds lack it)."""
        async with self._lock:
            try:
                return await asyncio.to_thread(lambda: int(self._connect().execute(sql, args).lastrowid or 0))
            except sqlite3.Error as exc:
                raise BusError(f"control bus file {self.path.name}: {exc}") from None

    async def start(self) -> None:
        rows = await self._run("SELECT COALESCE(MAX(seq), 0) FROM control_events")
        self._cursor = int(rows[0][0])  # type: ignore[call-overload]

    async def publish(self, event: Event) -> Mark:
        now = time.time()
        seq = await self._insert("INSERT INTO control_events (at, body) VALUES (?, ?)", (now, encode_event(event)))
        await self._run("DELETE FROM control_events WHERE at < ?", (now - KEEP_EVENTS_SECONDS,))
        return Mark(EPOCH, seq)

    async def head(self) -> Mark:
        """The last number given out (sqlite_sequence keeps it when old events are deleted)."""
        rows = await self._run("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'control_events'), 0)")
        return Mark(EPOCH, int(rows[0][0]))  # type: ignore[call-overload]

    async def receive(self) -> Delivery:
        await asyncio.sleep(POLL_SECONDS)
        rows = await self._run("SELECT seq, body FROM control_events WHERE seq > ? ORDER BY seq", (self._cursor,))
        delivery = Delivery()
        for seq, body in rows:
            self._cursor = max(self._cursor, int(seq))  # type: ignore[call-overload]
            event = decode_event(body)  # type: ignore[arg-type]
            if event is not None:
                delivery.events.append(event)
        if rows:
            delivery.mark = Mark(EPOCH, self._cursor)
        return delivery

    async def register(self, info: WorkerInfo) -> None:
        await self._run(
            "INSERT INTO workers (id, heartbeat, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET heartbeat = excluded.heartbeat, body = excluded.body",
            (info.id, info.heartbeat, info.encode()),
        )

    async def unregister(self, worker_id: str) -> None:
        await self._run("DELETE FROM workers WHERE id = ?", (worker_id,))

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._run("SELECT body FROM workers ORDER BY id")
        return [WorkerInfo.decode(body) for (body,) in rows]  # type: ignore[arg-type]

    async def claim(self, key: str, ttl: float) -> bool:
        """One upsert that takes the key only if nobody holds it now; changes() says whether it did."""
        now = time.time()

        def take() -> bool:
            db = self._connect()
            db.execute(
                "INSERT INTO claims (key, until) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET until = excluded.until WHERE claims.until <= ?",
                (key, now + ttl, now),
            )
            taken = int(db.execute("SELECT changes()").fetchone()[0]) == 1
            db.execute("DELETE FROM claims WHERE until <= ?", (now - KEEP_EVENTS_SECONDS,))
            return taken

        async with self._lock:
            try:
                return await asyncio.to_thread(take)
            except sqlite3.Error as exc:
                raise BusError(f"control bus file {self.path.name}: {exc}") from None

    async def forget_older_than(self, cutoff: float) -> None:
        await self._run("DELETE FROM workers WHERE heartbeat < ?", (cutoff,))

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
