"""Teams in the database (SQLAlchemy Core, bound parameters). A team's budget and limits apply on
top of each of its keys' own; deleting a team detaches its keys (``team_id`` set to NULL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.keys import Conflict
from faregate.store.schema import teams, virtual_keys

Row = dict[str, Any]


async def insert_team(engine: AsyncEngine, row: Row) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(teams).values(**row))
    except IntegrityError as exc:
        raise Conflict(str(exc.orig).split("\n")[0]) from None


async def get_team(engine: AsyncEngine, team_id: str) -> Row | None:
    keys = select(func.count()).select_from(virtual_keys).where(virtual_keys.c.team_id == teams.c.id).scalar_subquery()
    async with engine.connect() as conn:
        row = (await conn.execute(select(teams, keys.label("keys")).where(teams.c.id == team_id))).mappings().first()
    return dict(row) if row is not None else None


async def list_teams(engine: AsyncEngine, limit: int, offset: int) -> tuple[list[Row], int]:
    keys = select(func.count()).select_from(virtual_keys).where(virtual_keys.c.team_id == teams.c.id).scalar_subquery()
    query = select(teams, keys.label("keys")).order_by(teams.c.created_at, teams.c.id).limit(limit).offset(offset)
    async with engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(teams))).scalar_one()
        rows = (await conn.execute(query)).mappings().all()
    return [dict(r) for r in rows], int(total)


async def update_team(engine: AsyncEngine, team_id: str, values: Row) -> bool:
    try:
        async with engine.begin() as conn:
            return (await conn.execute(update(teams).where(teams.c.id == team_id).values(**values))).rowcount == 1
    except IntegrityError as exc:
        raise Conflict(str(exc.orig).split("\n")[0]) from None


async def delete_team(engine: AsyncEngine, team_id: str) -> bool:
    """Delete the team; its keys stay, without a team (explicitly, not only by the foreign key)."""
    async with engine.begin() as conn:
        await conn.execute(update(virtual_keys).where(virtual_keys.c.team_id == team_id).values(team_id=None))
        return (await conn.execute(delete(teams).where(teams.c.id == team_id))).rowcount == 1
