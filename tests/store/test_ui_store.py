"""Migration 0007 and the dashboard's store queries, on SQLite and PostgreSQL: sessions are kept by
their hash and end when deleted; the overview's buckets, totals, nearest-rank percentiles and top
lists are computed in the database alike on both (PostgreSQL rounds a cast, SQLite truncates)."""

from __future__ import annotations

import asyncio

from faregate.store import overview, sessions, spend
from faregate.store.db import make_engine, upgrade

SINCE = 1_704_067_200.0
HOUR = overview.WINDOWS["hour"]


def test_sessions_are_kept_by_hash_and_end_when_deleted(database: str) -> None:
    async def run() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
            await sessions.create(engine, "a" * 64, "admin", "0123abcd", SINCE, 3600.0)
            await sessions.create(engine, "b" * 64, "key", "vk_1", SINCE + 5000, 3600.0)  # sweeps the first: it ended at SINCE + 3600
            assert await sessions.get(engine, "a" * 64) is None
            row = await sessions.get(engine, "b" * 64)
            assert row is not None and row["role"] == "key" and row["principal"] == "vk_1" and row["expires_at"] == SINCE + 8600
            await sessions.touch(engine, "b" * 64, SINCE + 5100)
            assert (await sessions.get(engine, "b" * 64) or {})["last_seen"] == SINCE + 5100
            await sessions.end(engine, "b" * 64)
            assert await sessions.get(engine, "b" * 64) is None
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_overview_aggregates_in_the_database(database: str) -> None:
    def row(n: int, at: float, status: int = 200, **extra: object) -> dict[str, object]:
        base = {"request_id": f"r{n}", "ts": at, "endpoint": "chat", "status": status, "latency_ms": float(10 * n), "model": "m"}
        return spend.prepare({**base, "prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 0.5, **extra})

    async def run() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
            rows = [
                row(1, SINCE - 1),  # before the window
                row(2, SINCE + 0.0),  # bucket 0
                row(3, SINCE + 299.9, key_id="k1"),  # bucket 0 (PostgreSQL's cast would round it into 1)
                row(4, SINCE + 300.0, status=500, key_id="k1", ttfb_ms=7.0),  # bucket 1
                row(5, SINCE + 3599.0, model="n", ttfb_ms=9.0, cost_usd=None),  # the last bucket
            ]
            await spend.insert_rows(engine, rows)
            totals = await overview.totals(engine, SINCE)
            assert totals == {"requests": 4, "errors": 1, "prompt_tokens": 4, "completion_tokens": 8, "cost_usd": 1.5}
            points = await overview.series(engine, SINCE, HOUR)
            assert len(points) == 12 and [p["requests"] for p in points] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            assert points[1]["errors"] == 1 and points[1]["start"] == SINCE + 300
            assert await overview.percentiles(engine, SINCE, "latency_ms") == {0.5: 30.0, 0.95: 50.0}
            assert await overview.percentiles(engine, SINCE, "ttfb_ms") == {0.5: 7.0, 0.95: 9.0}
            assert await overview.percentiles(engine, SINCE + 4000, "latency_ms") == {0.5: None, 0.95: None}
            models = await overview.top(engine, SINCE, "model")
            assert [(m["id"], m["requests"], m["cost_usd"]) for m in models] == [("m", 3, 1.5), ("n", 1, 0.0)]
            keys = await overview.top(engine, SINCE, "key")
            assert [(k["id"], k["requests"], k["name"]) for k in keys] == [("k1", 2, None), (None, 2, None)]
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_overview_month_reads_the_daily_sums_and_samples_the_percentiles(database: str) -> None:
    """The month window is 30 whole UTC days from spend_daily (the same sums as the log's rows);
    the percentiles are over the window's newest rows only."""
    now = SINCE + 29 * 86_400 + 3600  # 2024-01-30 01:00 UTC: the window starts 2024-01-01 00:00

    def row(n: int, at: float, status: int = 200, **extra: object) -> dict[str, object]:
        base = {"request_id": f"d{n}", "ts": at, "endpoint": "chat", "status": status, "latency_ms": float(10 * n), "model": "m"}
        return spend.prepare({**base, "prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 0.5, **extra})

    async def run() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
            rows = [
                row(1, SINCE - 1),  # the day before the window
                row(2, SINCE),
                row(3, SINCE + 5 * 86_400 + 10, key_id="k1", team_id="t1"),
                row(4, SINCE + 5 * 86_400 + 20, status=500, key_id="k1", model="n"),
                row(5, now - 5, key_id="k2", cost_usd=2.0),
            ]
            await spend.insert_rows(engine, rows)
            found = await overview.overview(engine, overview.WINDOWS["month"], now)
            assert found.since == SINCE
            assert found.totals == {"requests": 4, "errors": 1, "prompt_tokens": 4, "completion_tokens": 8, "cost_usd": 3.5}
            assert len(found.points) == 30 and found.points[0]["start"] == SINCE
            assert {i: p["requests"] for i, p in enumerate(found.points) if p["requests"]} == {0: 1, 5: 2, 29: 1}
            assert found.points[5]["errors"] == 1
            assert [(m["id"], m["requests"], m["cost_usd"]) for m in found.tops["model"]] == [("m", 3, 3.0), ("n", 1, 0.5)]
            assert [(k["id"], k["requests"]) for k in found.tops["key"]] == [("k2", 1), ("k1", 2), (None, 1)]
            assert (found.latency, found.sampled) == ({0.5: 30.0, 0.95: 50.0}, 4)
            newest, held = await overview.sample(engine, SINCE, ("latency_ms",), limit=2)
            assert (newest, held) == ({"latency_ms": [50.0, 40.0]}, 2)
            hour = await overview.overview(engine, overview.WINDOWS["hour"], now)
            assert hour.totals == {"requests": 1, "errors": 0, "prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 2.0}
            assert [k["id"] for k in hour.tops["key"]] == ["k2"] and hour.sampled == 1
        finally:
            await engine.dispose()

    asyncio.run(run())
