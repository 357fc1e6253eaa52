"""The worker's one event loop is shared by every request and stream: work that arrives in bulk (a
burst of new requests, a spend-log batch, an access-log flush) must be cut so that the loop polls
its sockets, and relays running streams' frames, in between. Counted in loop turns, never timed:
a ticker callback re-schedules itself once per turn, so "in which turn did this happen" is exact on
any machine."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from faregate.gateway import Gateway
from faregate.observability import logging as logs
from faregate.observability.metrics import Metrics
from faregate.server.app import build_app
from faregate.spendlog import TURN_ROWS, SpendLog
from faregate.store import spend
from faregate.store.db import make_engine, upgrade
from faregate.turns import PER_TURN, Turns
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_KEY, config, provider
from tests.support.procs import MASTER_KEY


class Ticker:
    """Counts the event loop's turns: one callback per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)


def test_a_burst_of_new_requests_starts_a_few_per_loop_turn(fake: FakeOpenAI, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 requests handed to the app in the same turn (as 40 connections read in one poll): their
    handlers begin (and read their bodies) at most 2 x PER_TURN per turn, in arrival order, and every
    one is answered. Before faregate.turns all 40 began in the one turn."""
    monkeypatch.setenv("FAREGATE_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("UPSTREAM_KEY", UPSTREAM_KEY)
    path = tmp / "faregate.yaml"
    path.write_text(
        config(provider("up", fake.url), "\n  m: [{provider: up, model: gpt-4o-mini}]") + f"state:\n  database: sqlite:///{tmp}/state.db\n"
    )
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
    headers = [(b"authorization", f"Bearer {MASTER_KEY}".encode()), (b"content-type", b"application/json")]

    async def run() -> tuple[list[tuple[int, int]], list[int]]:
        app = build_app(Gateway(path))
        life: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await life.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, life.get, sent.put))
        assert (await sent.get())["type"] == "lifespan.startup.complete"
        ticker = Ticker()
        began: list[tuple[int, int]] = []  # (turn, request number)
        statuses: list[int] = []

        async def one(number: int) -> None:
            async def receive() -> dict[str, Any]:
                began.append((ticker.turn, number))
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/chat/completions",
                "raw_path": b"/v1/chat/completions",
                "root_path": "",
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 40000 + number),
                "server": ("127.0.0.1", 8000),
                "state": {},
            }
            await app(scope, receive, send)

        ticker.start()
        await asyncio.gather(*(one(n) for n in range(40)))
        ticker.stop()
        await life.put({"type": "lifespan.shutdown"})
        await lifespan
        return began, statuses

    began, statuses = asyncio.run(run())
    assert statuses == [200] * 40
    assert [number for _, number in began] == list(range(40))  # arrival order
    per_turn = collections.Counter(turn for turn, _ in began)
    assert max(per_turn.values()) <= 2 * PER_TURN, per_turn
    assert len(per_turn) >= 40 // (2 * PER_TURN)


def test_turns_admit_a_few_per_turn_in_order_and_skip_the_cancelled() -> None:
    """The gate itself (also Upstream.replies): 30 arrivals in one turn, one of them cancelled while it
    waits; the rest go on at most 2 x per_turn a turn, in arrival order."""

    async def run() -> tuple[list[tuple[int, int]], int]:
        turns, ticker = Turns(per_turn=4), Ticker()
        went: list[tuple[int, int]] = []

        async def one(number: int) -> None:
            waiter = turns.admit()
            if waiter is not None:
                await waiter
            went.append((ticker.turn, number))

        ticker.start()
        tasks = [asyncio.ensure_future(one(n)) for n in range(30)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # every task has asked once (the first 4 went on)
        tasks[20].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ticker.stop()
        return went, len(turns.waiting)

    went, left = asyncio.run(run())
    assert [number for _, number in went] == [n for n in range(30) if n != 20]
    assert max(collections.Counter(turn for turn, _ in went).values()) <= 8
    assert left == 0


class CountingRow(dict[str, Any]):
    """A spend row that counts how often it is read (``spend.prepare`` reads every column once)."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingRow.reads += 1
        return super().get(key, default)


def test_a_spend_log_batch_is_prepared_and_written_a_chunk_per_loop_turn(tmp_path: Path) -> None:
    """2,000 rows waiting: never more than TURN_ROWS of them prepared in one turn of the loop, and all
    of them in the database. Before, the whole batch was prepared in one turn."""

    async def run() -> dict[int, int]:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")
        await upgrade(engine)
        log = SpendLog(tmp_path / "outbox", Metrics())
        log.engine = engine
        now = time.time()
        for i in range(2000):
            log.record(CountingRow(request_id=f"req-{i:05d}", ts=now, endpoint="chat", model="m", stream=False, status=200))
        ticker = Ticker()
        reads: dict[int, int] = collections.Counter()
        before = CountingRow.reads

        def watch() -> None:  # after every turn's callbacks: what that turn read
            nonlocal before
            reads[ticker.turn] += CountingRow.reads - before
            before = CountingRow.reads
            if not done:
                asyncio.get_running_loop().call_soon(watch)

        done = False
        ticker.start()
        asyncio.get_running_loop().call_soon(watch)
        await log.flush()
        done = True
        ticker.stop()
        reads[ticker.turn] += CountingRow.reads - before
        await engine.dispose()
        return reads

    reads = asyncio.run(run())
    columns = len(spend.COLUMNS)
    assert sum(reads.values()) == 2000 * columns  # every row prepared exactly once
    assert max(reads.values()) <= TURN_ROWS * columns, max(reads.values())


def test_the_spend_log_keeps_every_row_of_a_chunked_batch(tmp_path: Path) -> None:
    async def run() -> list[str]:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")
        await upgrade(engine)
        log = SpendLog(tmp_path / "outbox", Metrics())
        log.engine = engine
        for i in range(TURN_ROWS * 2 + 7):
            log.record({"request_id": f"req-{i:05d}", "ts": time.time(), "endpoint": "chat", "model": "m", "stream": False, "status": 200})
        await log.flush()
        found: list[str] = []
        while True:
            page, more = await spend.list_rows(engine, spend.Filters(), 200, len(found))
            found += [r["request_id"] for r in page]
            if not more:
                break
        await engine.dispose()
        return sorted(found)

    assert asyncio.run(run()) == [f"req-{i:05d}" for i in range(TURN_ROWS * 2 + 7)]


class ThreadRecordingStream:
    """stderr's stand-in: keeps what is written and which thread wrote it."""

    def __init__(self) -> None:
        self.data = b""
        self.threads: set[int] = set()
        self.written = threading.Event()

    def write(self, data: bytes) -> int:
        self.threads.add(threading.get_ident())
        self.data += data
        self.written.set()
        return len(data)

    def flush(self) -> None:
        pass


def test_access_lines_are_never_written_by_the_thread_that_records_them() -> None:
    """The request path (``record``, which flushes beyond MAX_BUFFER) and the periodic ``flush`` only
    hand bytes over; the write happens in the log's own thread, in order, all of it by ``close``."""
    stream = ThreadRecordingStream()
    access = logs.AccessLog(stream)  # type: ignore[arg-type]
    count = logs.MAX_BUFFER // 100 + 50  # enough ~200-byte lines to pass MAX_BUFFER inside record()
    for i in range(count):
        access.record({"request_id": f"r{i:06d}", "pad": "x" * 150})
    access.flush()
    access.close()
    lines = stream.data.splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == [f"r{i:06d}" for i in range(count)]
    assert threading.get_ident() not in stream.threads
    assert len(stream.threads) == 1


def test_a_chunked_batch_that_neither_database_nor_disk_takes_stays_in_memory_in_order(tmp_path: Path) -> None:
    async def run() -> list[str]:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")  # no migrations: every INSERT fails
        blocked = tmp_path / "outbox"
        blocked.write_text("a file where the outbox directory should be")  # the outbox cannot be created
        log = SpendLog(blocked, Metrics())
        log.engine = engine
        for i in range(TURN_ROWS * 3):
            log.record({"request_id": f"req-{i:05d}", "ts": time.time(), "endpoint": "chat", "model": "m", "stream": False, "status": 200})
        await log.flush()
        await engine.dispose()
        return [row["request_id"] for row in log.rows]

    assert asyncio.run(run()) == [f"req-{i:05d}" for i in range(TURN_ROWS * 3)]


def test_turns_start_afresh_on_another_loop() -> None:
    """A loop that ended with its reset still scheduled (a test, a restarted server) must not leave the
    gate shut for the next loop."""
    turns = Turns(per_turn=2)

    async def burst() -> int:
        for _ in range(5):
            turns.admit()  # 2 admitted, 3 waiting: the loop ends before any turn resets
        return len(turns.waiting)

    assert asyncio.run(burst()) == 3

    async def later() -> None:
        waiter = turns.admit()
        assert waiter is None  # admitted at once: the dead loop's queue and allowance are gone

    asyncio.run(later())
