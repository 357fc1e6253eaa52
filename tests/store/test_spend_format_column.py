"""Migration 0006: the spend log records the client's wire format, on SQLite and PostgreSQL; a
database at 0005 keeps its rows (their format is NULL: not recorded), and spend groups by it."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from faregate.store import spend
from faregate.store.db import make_engine, upgrade
from tests.support.migrations import to_revision

TS = 1_704_067_200.0


def test_upgrade_keeps_old_rows_and_records_the_format(database: str) -> None:
    async def run() -> None:
        engine = make_engine(database)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(to_revision("0005"))
                await connection.execute(
                    text(
                        "INSERT INTO spend_log (request_id, ts, day, endpoint, stream, latency_ms, status, attempts) "
                        "VALUES ('old', :ts, '2024-01-01', 'chat', false, 1.0, 200, 1)"
                    ),
                    {"ts": TS},
                )
            await upgrade(engine)
            rows = [
                {"request_id": "a", "ts": TS + 1, "endpoint": "messages", "format": "anthropic", "status": 200, "latency_ms": 1.0},
                {"request_id": "b", "ts": TS + 2, "endpoint": "chat", "format": "openai_chat", "status": 200, "latency_ms": 1.0},
                {"request_id": "c", "ts": TS + 3, "endpoint": "count_tokens", "format": "anthropic", "status": 200, "latency_ms": 1.0},
            ]
            await spend.insert_rows(engine, [spend.prepare(r) for r in rows])
            listed, _ = await spend.list_rows(engine, spend.Filters(), 10, 0)
            assert {r["request_id"]: r["format"] for r in listed} == {"old": None, "a": "anthropic", "b": "openai_chat", "c": "anthropic"}
            groups, more = await spend.aggregate(engine, ["format"], spend.Filters(), 10)
            assert [(g["format"], g["requests"]) for g in groups] == [(None, 1), ("anthropic", 2), ("openai_chat", 1)] and not more
        finally:
            await engine.dispose()

    asyncio.run(run())
