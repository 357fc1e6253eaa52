"""Budget counters on virtual keys and teams: reserve atomically, settle, read.

Both tables carry the same columns (``budget_usd``, ``budget_period``, ``spent_usd``,
``reserved_usd``, ``period_start``). A request that belongs to a key and its team reserves on both
in one transaction: each reservation is one conditional UPDATE (the condition in its WHERE
clause), and if any of them does not fit the transaction is rolled back, so nothing is reserved
anywhere. PostgreSQL holds the row locks until commit; SQLite takes its write lock at the first
UPDATE. There is no check-then-write window on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import teams, virtual_keys

Kind = Literal["key", "team"]
TABLES: dict[Kind, Table] = {"key": virtual_keys, "team": teams}
PERIOD_SECONDS = {"daily": 86_400.0, "weekly": 604_800.0, "monthly": 2_592_000.0, "total": float("inf")}


@dataclass(frozen=True, slots=True)
class Charge:
    """``amount`` dollars against the budget of one key or team."""

    kind: Kind
    id: str
    amount: float


class DoesNotFit(Exception):
    """The charge that did not fit; nothing was reserved."""

    def __init__(self, charge: Charge) -> None:
        super().__init__(f"{charge.kind} {charge.id}")
        self.charge = charge


def _reserve_statement(charge: Charge, now: float) -> Any:
    t = TABLES[charge.kind]
    period = case(
        (t.c.budget_period == "daily", PERIOD_SECONDS["daily"]),
        (t.c.budget_period == "weekly", PERIOD_SECONDS["weekly"]),
        (t.c.budget_period == "monthly", PERIOD_SECONDS["monthly"]),
        else_=None,
    )
    expired = (t.c.period_start.is_(None)) | ((period.is_not(None)) & (t.c.period_start + period <= now))
    spent = case((expired, 0.0), else_=t.c.spent_usd)
    return (
        update(t)
        .where(t.c.id == charge.id, t.c.budget_usd.is_not(None), spent + t.c.reserved_usd + charge.amount <= t.c.budget_usd)
        .values(
            spent_usd=spent,
            period_start=case((expired, now), else_=t.c.period_start),
            reserved_usd=t.c.reserved_usd + charge.amount,
        )
    )


async def reserve(engine: AsyncEngine, charges: Sequence[Charge], now: float) -> None:
    """Reserve every charge or none (DoesNotFit names the first that did not fit). A period that
    is over is restarted by the same statement that reserves."""
    async with engine.begin() as conn:  # an exception rolls the whole transaction back
        for charge in charges:
            if (await conn.execute(_reserve_statement(charge, now))).rowcount != 1:
                raise DoesNotFit(charge)


async def settle(engine: AsyncEngine, charges: Sequence[Charge], spent: float) -> None:
    """Replace each reservation by what the request really cost (0 when it failed)."""
    greatest = func.max if engine.dialect.name == "sqlite" else func.greatest
    async with engine.begin() as conn:
        for charge in charges:
            t = TABLES[charge.kind]
            await conn.execute(
                update(t)
                .where(t.c.id == charge.id)
                .values(reserved_usd=greatest(t.c.reserved_usd - charge.amount, 0.0), spent_usd=t.c.spent_usd + spent)
            )


async def state(engine: AsyncEngine, kind: Kind, id_: str) -> dict[str, Any] | None:
    t = TABLES[kind]
    query = select(t.c.budget_usd, t.c.budget_period, t.c.spent_usd, t.c.reserved_usd, t.c.period_start).where(t.c.id == id_)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def near_limit(engine: AsyncEngine, share: float) -> list[dict[str, Any]]:
    """Every key and team with a budget whose settled spend is at least ``share`` of it (alerts):
    kind, id, name, budget_usd, budget_period, spent_usd, period_start. Revoked keys are left out."""
    found: list[dict[str, Any]] = []
    async with engine.connect() as conn:
        for kind, t in TABLES.items():
            query = select(t.c.id, t.c.name, t.c.budget_usd, t.c.budget_period, t.c.spent_usd, t.c.period_start).where(
                t.c.budget_usd.is_not(None), t.c.budget_usd > 0, t.c.spent_usd >= t.c.budget_usd * share
            )
            if kind == "key":
                query = query.where(t.c.revoked_at.is_(None))
            found.extend({"kind": kind, **row} for row in (await conn.execute(query)).mappings())
    return found
