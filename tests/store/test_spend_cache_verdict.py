"""Migration 0009: the spend log records the response cache's verdict (``cache``) and a hit's saved
cost (``saved_usd``), on SQLite and PostgreSQL: a database at 0008 keeps its rows (both NULL) and
its daily sums' trigger, an empty database upgrades straight to the head, and a downgrade to 0008
leaves the trigger working."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store import spend
from faregate.store.db import MIGRATIONS, make_engine, upgrade
from tests.support.migrations import to_revision

TS = 1_704_067_200.0


def down_to(revision: str) -> Callable[[Connection], None]:
    def downgrade(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    return downgrade


def row(request_id: str, at: float, **extra: object) -> dict[str, object]:
    return spend.prepare(
        {"request_id": request_id, "ts": at, "endpoint": "chat", "status": 200, "latency_ms": 1.0, "cost_usd": 0.25, **extra}
    )


async def daily_requests(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT requests FROM spend_daily WHERE dim = 'total'"))).scalar_one())


def test_upgrade_from_0008_keeps_rows_and_the_trigger_and_records_the_verdict(database: str) -> None:
    async def run() -> None:
        engine = make_engine(database)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(to_revision("0008"))
                await connection.execute(
                    text(
                        "INSERT INTO spend_log (request_id, ts, day, endpoint, stream, latency_ms, status, attempts) "
                        "VALUES ('old', :ts, '2024-01-01', 'chat', false, 1.0, 200, 1)"
                    ),
                    {"ts": TS},
                )
            await upgrade(engine)
            rows = [row("miss", TS + 1, cache="miss"), row("hit", TS + 2, cost_usd=0.0, cache="hit", saved_usd=0.25), row("off", TS + 3)]
            await spend.insert_rows(engine, rows)
            listed, _ = await spend.list_rows(engine, spend.Filters(), 10, 0)
            assert {r["request_id"]: (r["cache"], r["saved_usd"]) for r in listed} == {
                "old": (None, None),
                "miss": ("miss", None),
                "hit": ("hit", 0.25),
                "off": (None, None),
            }
            assert await daily_requests(engine) == 4  # 0008's trigger still sums every insert

            async with engine.begin() as connection:
                await connection.run_sync(down_to("0008"))
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO spend_log (request_id, ts, day, endpoint, stream, latency_ms, status, attempts) "
                        "VALUES ('after', :ts, '2024-01-01', 'chat', false, 1.0, 200, 1)"
                    ),
                    {"ts": TS + 4},
                )
            assert await daily_requests(engine) == 5  # the downgrade kept the trigger
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_an_empty_database_upgrades_to_the_head_with_the_columns(database: str) -> None:
    async def run() -> None:
        engine = make_engine(database)
        try:
            await upgrade(engine)
            await spend.insert_rows(engine, [row("hit", TS, cost_usd=0.0, cache="hit", saved_usd=1.5)])
            listed, _ = await spend.list_rows(engine, spend.Filters(), 10, 0)
            assert [(r["cache"], r["saved_usd"], r["cost_usd"]) for r in listed] == [("hit", 1.5, 0.0)]
        finally:
            await engine.dispose()

    asyncio.run(run())
