"""Virtual keys and teams in the database. Every statement is SQLAlchemy Core with bound parameters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import virtual_keys

Row = dict[str, Any]


class Conflict(Exception):
    """A unique name or id is taken."""


async def insert_key(engine: AsyncEngine, row: Row) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(virtual_keys).values(**row))
    except IntegrityError as exc:
        raise Conflict(str(exc.orig).split("\n")[0]) from None


async def by_hash(engine: AsyncEngine, key_hash: str, now: float) -> Row | None:
    """The key whose current secret, or whose previous secret still in its grace period, hashes to this."""
    query = select(virtual_keys).where(
        or_(
            virtual_keys.c.key_hash == key_hash,
            (virtual_keys.c.previous_hash == key_hash) & (virtual_keys.c.previous_valid_until > now),
        )
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def get_key(engine: AsyncEngine, key_id: str) -> Row | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(virtual_keys).where(virtual_keys.c.id == key_id))).mappings().first()
    return dict(row) if row is not None else None


async def list_keys(engine: AsyncEngine, limit: int, offset: int) -> tuple[list[Row], int]:
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(virtual_keys))).scalar_one()
        rows = (
            (await conn.execute(select(virtual_keys).order_by(virtual_keys.c.created_at, virtual_keys.c.id).limit(limit).offset(offset)))
            .mappings()
            .all()
        )
    return [dict(r) for r in rows], int(total)


async def update_key(engine: AsyncEngine, key_id: str, values: Row) -> Row | None:
    async with engine.begin() as conn:
        result = await conn.execute(update(virtual_keys).where(virtual_keys.c.id == key_id).values(**values))
        if result.rowcount == 0:
            return None
        row = (await conn.execute(select(virtual_keys).where(virtual_keys.c.id == key_id))).mappings().first()
    return dict(row) if row is not None else None


async def delete_key(engine: AsyncEngine, key_id: str) -> Row | None:
    async with engine.begin() as conn:
        row = (await conn.execute(select(virtual_keys).where(virtual_keys.c.id == key_id))).mappings().first()
        if row is None:
            return None
        await conn.execute(delete(virtual_keys).where(virtual_keys.c.id == key_id))
    return dict(row)


PERIOD_SECONDS = {"daily": 86_400.0, "weekly": 604_800.0, "monthly": 2_592_000.0, "total": float("inf")}


async def reserve(engine: AsyncEngine, key_id: str, amount: float, now: float) -> bool:
    """Atomically add ``amount`` to the key's reservations if spend + reservations + amount stays
    within its budget, starting a new period first when the current one is over. One UPDATE with
    its condition in the WHERE clause: no check-then-write race on SQLite or PostgreSQL."""
    t = virtual_keys
    period = case(
        (t.c.budget_period == "daily", PERIOD_SECONDS["daily"]),
        (t.c.budget_period == "weekly", PERIOD_SECONDS["weekly"]),
        (t.c.budget_period == "monthly", PERIOD_SECONDS["monthly"]),
        else_=None,
    )
    expired = (t.c.period_start.is_(None)) | ((period.is_not(None)) & (t.c.period_start + period <= now))
    spent = case((expired, 0.0), else_=t.c.spent_usd)
    statement = (
        update(t)
        .where(t.c.id == key_id, t.c.budget_usd.is_not(None), spent + t.c.reserved_usd + amount <= t.c.budget_usd)
        .values(
            spent_usd=spent,
            period_start=case((expired, now), else_=t.c.period_start),
            reserved_usd=t.c.reserved_usd + amount,
        )
    )
    async with engine.begin() as conn:
        return (await conn.execute(statement)).rowcount == 1


async def settle(engine: AsyncEngine, key_id: str, reserved: float, spent: float) -> None:
    """Replace a reservation by what the request really cost (0 when it failed)."""
    t = virtual_keys
    async with engine.begin() as conn:
        await conn.execute(
            update(t)
            .where(t.c.id == key_id)
            .values(
                reserved_usd=func.max(t.c.reserved_usd - reserved, 0.0)
                if engine.dialect.name == "sqlite"
                else func.greatest(t.c.reserved_usd - reserved, 0.0),
                spent_usd=t.c.spent_usd + spent,
            )
        )


async def budget_state(engine: AsyncEngine, key_id: str) -> Row | None:
    t = virtual_keys
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(t.c.budget_usd, t.c.budget_period, t.c.spent_usd, t.c.reserved_usd, t.c.period_start).where(t.c.id == key_id)
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None
