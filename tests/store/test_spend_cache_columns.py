"""Migration 0005: the spend log records cache writes (5-minute, 1-hour) and reasoning tokens, on
SQLite and PostgreSQL; a database at 0004 keeps its rows (the new counts are NULL: not recorded)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from faregate.store import spend
from faregate.store.db import make_engine, upgrade
from tests.support.migrations import to_revision

TS = 1_704_067_200.0


def test_upgrade_keeps_old_rows_and_records_the_new_counts(database: str) -> None:
    async def run() -> None:
        engine = make_engine(database)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(to_revision("0004"))
                await connection.execute(
                    text(
                        "INSERT INTO spend_log (request_id, ts, day, endpoint, stream, prompt_tokens, latency_ms, status, attempts) "
                        "VALUES ('old', :ts, '2024-01-01', 'chat', false, 7, 1.0, 200, 1)"
                    ),
                    {"ts": TS},
                )
            await upgrade(engine)
            new = {"request_id": "new", "ts": TS + 1, "endpoint": "messages", "stream": True, "status": 200, "latency_ms": 1.0}
            new |= {"prompt_tokens": 100, "cached_tokens": 20, "cache_write_5m_tokens": 30, "cache_write_1h_tokens": 40}
            new |= {"completion_tokens": 9, "reasoning_tokens": 5}
            await spend.insert_rows(engine, [spend.prepare(new)])
            listed, _ = await spend.list_rows(engine, spend.Filters(), 10, 0)
            found = {r["request_id"]: r for r in listed}
            counts = ("cached_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")
            assert [found["new"][c] for c in counts] == [20, 30, 40, 5]
            assert found["old"]["prompt_tokens"] == 7 and [found["old"][c] for c in counts[1:]] == [None, None, None]
        finally:
            await engine.dispose()

    asyncio.run(run())
