"""The spend log writer against a real SQLite database that cannot take rows (its table is not
there yet, as if the database were down): rows go to the outbox in order, are replayed when the
database can take them, and a stopped writer's outbox is replayed by the next one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.observability.metrics import Metrics
from faregate.spendlog import SpendLog
from faregate.store import spend
from faregate.store.db import make_engine, upgrade


def row(i: int) -> dict[str, Any]:
    return {"request_id": f"req-{i:04d}", "ts": time.time(), "endpoint": "chat", "model": "m", "stream": False, "status": 200}


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def stored(engine: AsyncEngine) -> list[str]:
    found: list[str] = []
    while True:
        page, more = await spend.list_rows(engine, spend.Filters(), 100, len(found))
        found += [r["request_id"] for r in page]
        if not more:
            return sorted(found)


def sinks(metrics: Metrics) -> dict[str, float]:
    return {labels[0]: value for labels, value in metrics.counters.get("faregate_spend_rows_total", {}).items()}


def test_outbox_mode_keeps_order_and_ends_when_the_database_takes_the_rows(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")  # no migrations yet: every INSERT fails
        metrics = Metrics()
        log = SpendLog(tmp_path / "outbox", metrics)
        task = asyncio.create_task(log.run(engine))
        try:
            for i in range(20):
                log.record(row(i))
            await until(lambda: log.outbox_rows == 20)
            assert log.outbox_mode and log.outbox is not None
            for i in range(20, 25):  # still in outbox mode: behind the first ones, never straight to the database
                log.record(row(i))
            await until(lambda: log.outbox_rows == 25)
            lines = log.outbox.path.read_text().splitlines()
            assert [line.split('"')[3] for line in lines] == [f"req-{i:04d}" for i in range(25)]
            await upgrade(engine)  # the database can take rows again
            await until(lambda: not log.outbox_mode, timeout=10)
            assert log.outbox_rows == 0 and log.outbox.path.stat().st_size == 0
            assert await stored(engine) == [f"req-{i:04d}" for i in range(25)]
            log.record(row(25))
            await until(lambda: sinks(metrics).get("db") == 1)
            assert sinks(metrics) == {"outbox": 25, "replayed": 25, "db": 1}
            path = log.outbox.path
            await log.close()
            assert not path.exists()  # an empty outbox goes away with its worker
            assert task.done()
        finally:
            task.cancel()
            await engine.dispose()

    asyncio.run(run())


def test_a_stopped_writers_outbox_is_replayed_by_the_next_one(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(f"sqlite:///{tmp_path}/state.db")
        first = SpendLog(tmp_path / "outbox", Metrics())
        task = asyncio.create_task(first.run(engine))
        for i in range(10):
            first.record(row(i))
        await until(lambda: first.outbox_rows == 10)
        for i in range(10, 13):  # still in memory at shutdown: close() sends them to the outbox too
            first.record(row(i))
        await first.close()
        await asyncio.gather(task, return_exceptions=True)
        left = list((tmp_path / "outbox").glob("outbox-*.jsonl"))
        assert len(left) == 1 and len(left[0].read_text().splitlines()) == 13

        await upgrade(engine)
        metrics = Metrics()
        second = SpendLog(tmp_path / "outbox", metrics)  # as a worker starting after the first one died
        task = asyncio.create_task(second.run(engine))
        try:
            await until(lambda: sinks(metrics).get("replayed") == 13)
            assert await stored(engine) == [f"req-{i:04d}" for i in range(13)]
            assert not left[0].exists()
            await second.close()
        finally:
            task.cancel()
            await engine.dispose()

    asyncio.run(run())


def test_an_outbox_written_before_migration_0009_is_replayed(tmp_path: Path) -> None:
    """Outbox lines of an older faregate lack 0009's columns (cache, saved_usd): replayed all the same."""

    async def run() -> None:
        import orjson

        engine = make_engine(f"sqlite:///{tmp_path}/state.db")
        first = SpendLog(tmp_path / "outbox", Metrics())
        task = asyncio.create_task(first.run(engine))
        for i in range(3):
            first.record(row(i))
        await until(lambda: first.outbox_rows == 3)
        await first.close()
        await asyncio.gather(task, return_exceptions=True)
        (left,) = (tmp_path / "outbox").glob("outbox-*.jsonl")
        old = [orjson.loads(line) for line in left.read_bytes().splitlines()]
        assert all("cache" in r and "saved_usd" in r for r in old)
        left.write_bytes(b"".join(orjson.dumps({k: v for k, v in r.items() if k not in ("cache", "saved_usd")}) + b"\n" for r in old))

        await upgrade(engine)
        metrics = Metrics()
        second = SpendLog(tmp_path / "outbox", metrics)
        task = asyncio.create_task(second.run(engine))
        try:
            await until(lambda: sinks(metrics).get("replayed") == 3)
            assert await stored(engine) == [f"req-{i:04d}" for i in range(3)]
            await second.close()
        finally:
            task.cancel()
            await engine.dispose()

    asyncio.run(run())
