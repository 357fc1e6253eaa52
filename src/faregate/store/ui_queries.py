"""What the dashboard's lists and charts ask the database: bounded pages, counts that stay cheap,
and spend sums read from ``spend_daily`` (kept by a trigger, migration 0008) instead of summing the
spend log, so that every page costs about the same with a thousand or a million requests logged.

- Lists are pages of at most ``limit`` rows. Keys and teams page by offset (thousands of rows);
  the spend log pages by keyset (``Cursor``: the last row's ``ts`` and ``request_id``), which
  costs the same on page 1 and page 10,000.
- A total is counted up to ``COUNT_CAP`` rows and said to be "at least" beyond that: counting a
  million matching rows to print a number nobody pages through is the slow part of most logs.
- Spend per key, team, model, deployment or day over whole UTC days reads ``spend_daily`` (one
  row per day and value): the same numbers ``spend.aggregate`` sums from the log itself.
Every statement is SQLAlchemy Core with bound parameters; search text is matched literally (its
``%`` and ``_`` escaped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import spend_daily, spend_log, teams, virtual_keys

Row = dict[str, Any]
COUNT_CAP = 10_000
GROUPS = ("key", "team", "model", "deployment", "day")
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "unpriced_requests")
STATUS_CLASSES = {"ok": (200, 300), "4xx": (400, 500), "5xx": (500, 600), "error": None}


@dataclass(frozen=True, slots=True)
class Counted:
    rows: list[Row]
    total: int  # exact when not ``capped``; else "more than COUNT_CAP"
    capped: bool


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _count(conn: Any, query: Select[Any]) -> tuple[int, bool]:
    capped = select(func.count()).select_from(
        query.with_only_columns(literal(1), maintain_column_froms=True).order_by(None).limit(COUNT_CAP + 1).subquery()
    )
    total = int((await conn.execute(capped)).scalar_one())
    return min(total, COUNT_CAP), total > COUNT_CAP


async def find_keys(engine: AsyncEngine, search: str | None, team_id: str | None, limit: int, offset: int) -> Counted:
    """Keys newest first, with their team's name; ``search`` matches a name (any case, anywhere),
    an id or a shown prefix from the start, or a team's name."""
    k = virtual_keys.c
    joined = virtual_keys.outerjoin(teams, teams.c.id == k.team_id)
    query = select(virtual_keys, teams.c.name.label("team_name")).select_from(joined)
    if team_id is not None:
        query = query.where(k.team_id == team_id)
    if search:
        anywhere, start = f"%{_like(search)}%", f"{_like(search)}%"
        query = query.where(
            or_(
                k.name.ilike(anywhere, escape="\\"),
                k.id.like(start, escape="\\"),
                k.prefix.like(start, escape="\\"),
                teams.c.name.ilike(anywhere, escape="\\"),
            )
        )
    async with engine.connect() as conn:
        total, capped = await _count(conn, query)
        page = query.order_by(k.created_at.desc(), k.id.desc()).limit(limit).offset(offset)
        rows = [_plain(r) for r in (await conn.execute(page)).mappings().all()]
    return Counted(rows, total, capped)


async def find_teams(engine: AsyncEngine, search: str | None, limit: int, offset: int) -> Counted:
    """Teams by name, each with its number of keys."""
    keys = select(func.count()).select_from(virtual_keys).where(virtual_keys.c.team_id == teams.c.id).scalar_subquery()
    query = select(teams, keys.label("keys"))
    if search:
        query = query.where(or_(teams.c.name.ilike(f"%{_like(search)}%", escape="\\"), teams.c.id.like(f"{_like(search)}%", escape="\\")))
    async with engine.connect() as conn:
        total, capped = await _count(conn, query)
        rows = (await conn.execute(query.order_by(teams.c.name, teams.c.id).limit(limit).offset(offset))).mappings().all()
    return Counted([_plain(r) for r in rows], total, capped)


def day_text(day: dt.date) -> str:
    return day.strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class SpendQuery:
    group: str  # one of GROUPS
    first: dt.date  # both days included (UTC)
    last: dt.date
    key_id: str | None = None  # only this key's spend (``group`` must then be "day")
    team_id: str | None = None  # only this team's spend (``group`` must then be "day")


async def spend(engine: AsyncEngine, q: SpendQuery, limit: int) -> tuple[list[Row], Row, bool]:
    """(groups, totals over the range, whether more groups exist). Days in order; every other
    grouping dearest first. A key's or team's group carries its name (None once deleted);
    ``value`` None is "none" (the master key, no team, refused before a model was read)."""
    if q.group not in GROUPS:
        raise ValueError(f"unknown group {q.group!r}")
    d = spend_daily.c
    where = [d.day >= day_text(q.first), d.day <= day_text(q.last)]
    if q.key_id is not None or q.team_id is not None:
        if q.group != "day":
            raise ValueError("one key's or team's spend is grouped by day")
        where += [d.dim == ("key" if q.key_id is not None else "team"), d.value == (q.key_id or q.team_id)]
    else:
        where.append(d.dim == ("total" if q.group == "day" else q.group))
    column = d.day if q.group == "day" else d.value
    sums = [func.sum(getattr(d, name)).label(name) for name in SUMS]
    query = select(column.label("value"), *sums).where(*where).group_by(column)
    query = query.order_by(d.day) if q.group == "day" else query.order_by(func.sum(d.cost_usd).desc(), column)
    total_query = select(*sums).where(*where)
    async with engine.connect() as conn:
        rows = [_sums(r) for r in (await conn.execute(query.limit(limit + 1))).mappings().all()]
        totals = _sums((await conn.execute(total_query)).mappings().one())
        more, rows = len(rows) > limit, rows[:limit]
        for row in rows:
            row["value"] = row["value"] or None
        if q.group in ("key", "team"):
            table = virtual_keys if q.group == "key" else teams
            ids = [r["value"] for r in rows if r["value"] is not None]
            names = dict((await conn.execute(select(table.c.id, table.c.name).where(table.c.id.in_(ids)))).all()) if ids else {}
            for row in rows:
                row["name"] = names.get(row["value"])
    return rows, totals, more


def _sums(row: Any) -> Row:
    out = {str(k): v for k, v in row.items()}
    for name in SUMS:
        out[name] = (float(out[name] or 0.0)) if name == "cost_usd" else int(out[name] or 0)
    return out


@dataclass(frozen=True, slots=True)
class Cursor:
    ts: float
    request_id: str

    def text(self) -> str:
        return f"{self.ts!r}~{self.request_id}"

    @staticmethod
    def parse(text: str) -> Cursor | None:
        ts, sep, request_id = text.partition("~")
        try:
            value = float(ts)
        except ValueError:
            return None
        return Cursor(value, request_id) if sep and request_id and value == value else None


@dataclass(frozen=True, slots=True)
class RequestQuery:
    since: float | None = None
    before: float | None = None
    request_id: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    status: int | str | None = None  # an exact status, or one of STATUS_CLASSES

    def where(self) -> list[ColumnElement[bool]]:
        t = spend_log.c
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(t.ts >= self.since)
        if self.before is not None:
            out.append(t.ts < self.before)
        for column, value in ((t.request_id, self.request_id), (t.key_id, self.key_id), (t.team_id, self.team_id), (t.model, self.model)):
            if value is not None:
                out.append(column == value)
        if isinstance(self.status, int):
            out.append(t.status == self.status)
        elif self.status == "error":
            out.append(or_(t.status < 200, t.status >= 400))
        elif self.status is not None:
            low, high = STATUS_CLASSES[self.status] or (0, 0)
            out.append(and_(t.status >= low, t.status < high))
        return out


LISTED = ("request_id", "ts", "key_id", "team_id", "model", "deployment", "status", "error_code", "stream", "prompt_tokens",
          "completion_tokens", "cost_usd", "latency_ms", "attempts", "fallback_from", "cache", "saved_usd")  # fmt: skip


async def find_requests(
    engine: AsyncEngine, q: RequestQuery, limit: int, after: Cursor | None
) -> tuple[list[Row], Cursor | None, int, bool]:
    """(rows newest first, the cursor of the next page or None, matches counted up to COUNT_CAP, capped)."""
    t = spend_log.c
    query = select(*(getattr(t, name) for name in LISTED)).where(*q.where())
    async with engine.connect() as conn:
        total, capped = await _count(conn, query)
        if after is not None:
            query = query.where(or_(t.ts < after.ts, and_(t.ts == after.ts, t.request_id > after.request_id)))
        page = query.order_by(t.ts.desc(), t.request_id).limit(limit + 1)
        rows = [_plain(r) for r in (await conn.execute(page)).mappings().all()]
    more, rows = len(rows) > limit, rows[:limit]
    return rows, Cursor(rows[-1]["ts"], rows[-1]["request_id"]) if more else None, total, capped


async def request_story(engine: AsyncEngine, request_id: str) -> Row | None:
    """Every column of one request's row, with its key's and team's names (None once deleted)."""
    joined = spend_log.outerjoin(virtual_keys, virtual_keys.c.id == spend_log.c.key_id).outerjoin(teams, teams.c.id == spend_log.c.team_id)
    query = (
        select(spend_log, virtual_keys.c.name.label("key_name"), teams.c.name.label("team_name"))
        .select_from(joined)
        .where(spend_log.c.request_id == request_id)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return _plain(row) if row is not None else None


async def names(engine: AsyncEngine, key_ids: Sequence[str], team_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Names of the keys and teams a page shows (ids of deleted ones are absent)."""
    async with engine.connect() as conn:
        keys = dict((await conn.execute(select(virtual_keys.c.id, virtual_keys.c.name).where(virtual_keys.c.id.in_(key_ids)))).all())
        team_names = dict((await conn.execute(select(teams.c.id, teams.c.name).where(teams.c.id.in_(team_ids)))).all())
    return {str(k): str(v) for k, v in keys.items()}, {str(k): str(v) for k, v in team_names.items()}


def _plain(row: Any) -> Row:
    return {str(k): v for k, v in row.items()}
