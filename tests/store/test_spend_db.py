"""The spend log table on SQLite and on a real PostgreSQL: idempotent inserts, values PostgreSQL
would refuse made to fit, sums grouped the same way on both, and a row the database refuses set
aside by the writer instead of holding every later row back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from faregate.observability.metrics import Metrics
from faregate.spendlog import SpendLog
from faregate.store import spend
from faregate.store.db import make_engine, upgrade
from tests.support.postgres import PostgresServer

DAY1 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


def fresh_postgres(pg: PostgresServer) -> str:
    return pg.url_of(pg.new_database("spend"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return fresh_postgres(request.getfixturevalue("postgres"))


def row(request_id: str, ts: float, **extra: Any) -> dict[str, Any]:
    return {"request_id": request_id, "ts": ts, "endpoint": "chat", "stream": False, "status": 200, "latency_ms": 1.0, **extra}


async def exercise(database: str) -> None:
    engine = make_engine(database)
    try:
        await upgrade(engine)
        rows = [row("a", DAY1 + 10, key_id="k1", model="m", prompt_tokens=3, cost_usd=0.25)]
        rows.append(row("b", DAY1 + 86_400 + 5, key_id=None, model="m", prompt_tokens=4, cost_usd=None))
        rows.append(row("c", DAY1 + 20, key_id="k1", model="n", prompt_tokens=5, cost_usd=0.5, status=502))
        # what PostgreSQL would refuse, made to fit: NUL, a 1000-character model name, a 64-bit count, NaN
        rows.append(row("d", DAY1 + 30, key_id="k2", model="x\0" + "y" * 1000, prompt_tokens=2**40, cost_usd=float("nan")))
        await spend.insert_rows(engine, [spend.prepare(r) for r in rows])
        await spend.insert_rows(engine, [spend.prepare(r) for r in rows])  # again: a replay
        listed, more = await spend.list_rows(engine, spend.Filters(), 10, 0)
        assert [r["request_id"] for r in listed] == ["b", "d", "c", "a"] and not more
        weird = next(r for r in listed if r["request_id"] == "d")
        assert weird["model"] == "x" + "y" * 199 and weird["prompt_tokens"] == 2**31 - 1 and weird["cost_usd"] is None
        by_day, _ = await spend.aggregate(engine, ["day", "key"], spend.Filters(), 10)
        assert [(r["day"], r["key_id"], r["requests"]) for r in by_day] == [
            ("2024-01-01", "k1", 2),
            ("2024-01-01", "k2", 1),
            ("2024-01-02", None, 1),
        ]
        k1 = by_day[0]
        assert (k1["prompt_tokens"], k1["cost_usd"], k1["errors"], k1["unpriced_requests"]) == (8, 0.75, 1, 0)
        window, _ = await spend.aggregate(engine, ["key"], spend.Filters(since=DAY1, before=DAY1 + 86_400, model="m"), 10)
        assert [(r["key_id"], r["requests"]) for r in window] == [("k1", 1)]
        nothing, _ = await spend.aggregate(engine, [], spend.Filters(key_id="nobody"), 10)
        assert nothing == [
            {
                "requests": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cached_tokens": 0,
                "cost_usd": 0.0,
                "unpriced_requests": 0,
            }
        ]
        # a big batch (several multi-row statements on SQLite) with a request id twice in it
        bulk = [spend.prepare(row(f"bulk-{i}", DAY1 - 1000 + i * 0.1)) for i in range(2500)]
        await spend.insert_rows(engine, [*bulk, bulk[7]])
        totals, _ = await spend.aggregate(engine, [], spend.Filters(before=DAY1), 10)
        assert totals[0]["requests"] == 2500
    finally:
        await engine.dispose()


def test_spend_table(database: str) -> None:
    asyncio.run(exercise(database))


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_a_refused_row_is_set_aside_not_retried_forever(database: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(database)
        await upgrade(engine)
        metrics = Metrics()
        log = SpendLog(tmp_path / "outbox", metrics)
        task = asyncio.create_task(log.run(engine))
        try:
            log.record(row("ok-1", time.time()))
            log.record(row(None, time.time()))  # type: ignore[arg-type]  # no request id: NOT NULL refuses it
            log.record(row("ok-2", time.time()))
            sinks = metrics.counters.setdefault("faregate_spend_rows_total", {})
            await until(lambda: sinks.get(("rejected",)) == 1 and sinks.get(("db",)) == 2)
            assert not log.outbox_mode and log.outbox is None
            listed, _ = await spend.list_rows(engine, spend.Filters(), 10, 0)
            assert sorted(r["request_id"] for r in listed) == ["ok-1", "ok-2"]
            rejected = list((tmp_path / "outbox").glob("rejected-*.jsonl"))
            assert len(rejected) == 1 and len(rejected[0].read_text().splitlines()) == 1
            await log.close()
        finally:
            task.cancel()
            await engine.dispose()

    asyncio.run(run())
