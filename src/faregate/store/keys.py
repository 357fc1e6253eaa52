"""Virtual keys and teams in the database. Every statement is SQLAlchemy Core with bound parameters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import teams, virtual_keys

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
    """The key whose current secret, or whose previous secret still in its grace period, hashes to
    this, with what auth needs of its team (``team_*`` columns; None without a team)."""
    team = (
        teams.c.enabled.label("team_enabled"),
        teams.c.budget_usd.label("team_budget_usd"),
        teams.c.rpm.label("team_rpm"),
        teams.c.tpm.label("team_tpm"),
        teams.c.max_parallel.label("team_max_parallel"),
    )
    joined = virtual_keys.outerjoin(teams, teams.c.id == virtual_keys.c.team_id)
    query = (
        select(virtual_keys, *team)
        .select_from(joined)
        .where(
            or_(
                virtual_keys.c.key_hash == key_hash,
                (virtual_keys.c.previous_hash == key_hash) & (virtual_keys.c.previous_valid_until > now),
            )
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
