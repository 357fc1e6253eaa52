"""Dashboard sessions in the database (SQLAlchemy Core, bound parameters): stored by the sha256 of
the cookie's value, so neither a database dump nor a log holds a usable session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import ui_sessions

Row = dict[str, Any]


async def create(engine: AsyncEngine, id_hash: str, role: str, principal: str, now: float, lifetime: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(ui_sessions).where(ui_sessions.c.expires_at <= now))  # sweep the ended ones
        await conn.execute(
            insert(ui_sessions).values(
                id_hash=id_hash, role=role, principal=principal, created_at=now, last_seen=now, expires_at=now + lifetime
            )
        )


async def get(engine: AsyncEngine, id_hash: str) -> Row | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(ui_sessions).where(ui_sessions.c.id_hash == id_hash))).mappings().first()
    return {str(k): v for k, v in row.items()} if row is not None else None


async def touch(engine: AsyncEngine, id_hash: str, now: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(ui_sessions).where(ui_sessions.c.id_hash == id_hash).values(last_seen=now))


async def end(engine: AsyncEngine, id_hash: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(ui_sessions).where(ui_sessions.c.id_hash == id_hash))
