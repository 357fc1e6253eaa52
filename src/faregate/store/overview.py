"""The dashboard overview's aggregates: totals and per-bucket series for a window (the last hour,
day or month), nearest-rank percentiles of latency and time to first byte, and the top models,
keys and teams by spend. Counted as ``/admin/spend`` counts (``store.spend.aggregate``): an error
is a status below 200 or from 400 on.

A window of whole UTC days (the month: today and the 29 days before) reads ``spend_daily`` (kept by
a trigger, migration 0008) through ``ui_queries.spend``; a short window (the last hour or day) sums
the spend log's rows since its start through ix_spend_log_ts. The percentiles are over a bounded
sample, the window's newest ``SAMPLE`` rows (read newest first through the same index), so that no
window sorts a million rows; the page says how many requests the sample holds."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from faregate.store import ui_queries as uq
from faregate.store.schema import spend_daily, spend_log, teams, virtual_keys

Row = dict[str, Any]
SAMPLE = 20_000  # the percentiles' sample: the window's newest rows
TOTALS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd")


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: float
    bucket: float  # width of one point of the series
    days: int = 0  # > 0: whole UTC days (today and the days - 1 before), read from spend_daily


WINDOWS = {
    "hour": Window("hour", 3600.0, 300.0),
    "day": Window("day", 86_400.0, 3600.0),
    "month": Window("month", 30 * 86_400.0, 86_400.0, days=30),
}


def _error() -> ColumnElement[int]:
    t = spend_log.c
    return case(((t.status < 200) | (t.status >= 400), 1), else_=0)


def _sums() -> list[Any]:
    t = spend_log.c
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(_error()), 0).label("errors"),
        func.coalesce(func.sum(t.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(t.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(t.cost_usd), 0.0).label("cost_usd"),
    ]


def _plain(row: Any) -> Row:
    out = {str(k): v for k, v in row.items()}
    out["cost_usd"] = float(out.get("cost_usd") or 0.0)
    return out


async def totals(engine: AsyncEngine, since: float) -> Row:
    async with engine.connect() as conn:
        row = (await conn.execute(select(*_sums()).where(spend_log.c.ts >= since))).mappings().one()
    return _plain(row)


async def series(engine: AsyncEngine, since: float, window: Window) -> list[Row]:
    """One row per bucket from ``since`` (empty buckets included, zero), oldest first."""
    return _points(await _buckets(engine, since, window), since, window)


async def _buckets(engine: AsyncEngine, since: float, window: Window) -> dict[int, Row]:
    offset = (spend_log.c.ts - since) / window.bucket
    floor = func.floor(offset) if engine.dialect.name == "postgresql" else offset  # SQLite's cast truncates; PostgreSQL's rounds
    index = cast(floor, Integer).label("bucket")
    query = select(index, *_sums()).where(spend_log.c.ts >= since).group_by(index)
    async with engine.connect() as conn:
        return {int(r["bucket"]): _plain(r) for r in (await conn.execute(query)).mappings().all()}


def _points(found: dict[int, Row], since: float, window: Window) -> list[Row]:
    count = math.ceil(window.seconds / window.bucket)
    empty = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    return [{**found.get(i, empty), "start": since + i * window.bucket} for i in range(count)]


async def percentiles(
    engine: AsyncEngine, since: float, column: str, qs: tuple[float, ...] = (0.5, 0.95), limit: int = SAMPLE
) -> dict[float, float | None]:
    """Nearest rank of ``column`` (latency_ms or ttfb_ms) over the newest ``limit`` rows since ``since``."""
    values, _ = await sample(engine, since, (column,), limit)
    return nearest_rank(values[column], qs)


async def sample(engine: AsyncEngine, since: float, columns: tuple[str, ...], limit: int = SAMPLE) -> tuple[dict[str, list[float]], int]:
    """The values of ``columns`` (None dropped) in the newest ``limit`` rows since ``since``, read
    newest first through ix_spend_log_ts (so a month of a million rows costs as much as an hour),
    and how many rows that sample holds."""
    query = select(*(spend_log.c[c] for c in columns)).where(spend_log.c.ts >= since).order_by(spend_log.c.ts.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {c: [float(r[i]) for r in rows if r[i] is not None] for i, c in enumerate(columns)}, len(rows)


def nearest_rank(values: list[float], qs: tuple[float, ...] = (0.5, 0.95)) -> dict[float, float | None]:
    if not values:
        return dict.fromkeys(qs)
    ordered = sorted(values)
    return {q: ordered[max(math.ceil(q * len(ordered)) - 1, 0)] for q in qs}


async def top(engine: AsyncEngine, since: float, by: str, limit: int = 5) -> list[Row]:
    """The ``limit`` models, keys or teams with the most spend since ``since`` (then most requests),
    with a key's or team's name (None when it was deleted, or for the master key's requests)."""
    t = spend_log.c
    # grouped by the column || '': SQLite would otherwise skip-scan the whole (column, ts) index for
    # its order instead of reading the window's rows through ix_spend_log_ts (3x slower on a day of 1M)
    column = ({"model": t.model, "key": t.key_id, "team": t.team_id}[by] + "").label("id")
    sums = [func.count().label("requests"), func.coalesce(func.sum(t.cost_usd), 0.0).label("cost_usd")]
    return await _ranked(engine, select(column, *sums).where(t.ts >= since).group_by(column), by, limit)


async def top_days(engine: AsyncEngine, first: dt.date, last: dt.date, by: str, limit: int = 5) -> list[Row]:
    """``top`` over whole UTC days (both included), from spend_daily."""
    d = spend_daily.c
    sums = [func.sum(d.requests).label("requests"), func.sum(d.cost_usd).label("cost_usd")]
    where = (d.dim == by, d.day >= uq.day_text(first), d.day <= uq.day_text(last))
    return await _ranked(engine, select(d.value.label("id"), *sums).where(*where).group_by(d.value), by, limit)


async def _ranked(engine: AsyncEngine, groups: Select[Any], by: str, limit: int) -> list[Row]:
    """The first ``limit`` of ``groups`` (id, requests, cost_usd) by spend; names looked up for
    those few only. An id '' (spend_daily's "none") is None."""
    inner = groups.subquery()
    ranked = select(inner).order_by(inner.c.cost_usd.desc(), inner.c.requests.desc()).limit(limit).subquery()
    order = (ranked.c.cost_usd.desc(), ranked.c.requests.desc())
    if by in ("key", "team"):
        table = virtual_keys if by == "key" else teams
        query = select(ranked, table.c.name).select_from(ranked.outerjoin(table, table.c.id == ranked.c.id)).order_by(*order)
    else:
        query = select(ranked).order_by(*order)
    async with engine.connect() as conn:
        rows = [_plain(r) for r in (await conn.execute(query)).mappings().all()]
    for row in rows:
        row["id"] = row["id"] or None
        row["requests"] = int(row["requests"] or 0)
        if by == "model":
            row["name"] = row["id"]
    return rows


@dataclass(frozen=True, slots=True)
class Overview:
    since: float  # the window's start (unix seconds)
    totals: Row
    points: list[Row]
    tops: dict[str, list[Row]]  # "model" | "key" | "team" -> rows with id, name, requests, cost_usd
    latency: dict[float, float | None]
    ttfb: dict[float, float | None]
    sampled: int  # how many of the window's newest requests the percentiles are over


async def overview(engine: AsyncEngine, window: Window, now: float, limit: int = 5) -> Overview:
    """Everything the overview page shows for ``window`` ending at ``now``."""
    if window.days:
        since, totals, points, tops = await _from_days(engine, window, now, limit)
    else:
        since = now - window.seconds
        found = await _buckets(engine, since, window)
        totals = {name: sum((r[name] for r in found.values()), 0.0 if name == "cost_usd" else 0) for name in TOTALS}
        points = _points(found, since, window)
        tops = {by: await top(engine, since, by, limit) for by in ("model", "key", "team")}
    values, sampled = await sample(engine, since, ("latency_ms", "ttfb_ms"))
    return Overview(since, totals, points, tops, nearest_rank(values["latency_ms"]), nearest_rank(values["ttfb_ms"]), sampled)


async def _from_days(engine: AsyncEngine, window: Window, now: float, limit: int) -> tuple[float, Row, list[Row], dict[str, list[Row]]]:
    last = dt.datetime.fromtimestamp(now, dt.UTC).date()
    first = last - dt.timedelta(days=window.days - 1)
    since = dt.datetime.combine(first, dt.time(), dt.UTC).timestamp()
    days, sums, _ = await uq.spend(engine, uq.SpendQuery("day", first, last), window.days + 1)
    by_day = {r["value"]: r for r in days}
    empty = dict.fromkeys(TOTALS, 0)
    points = []
    for i in range(window.days):
        row = by_day.get(uq.day_text(first + dt.timedelta(days=i)), empty)
        points.append({**{name: row[name] for name in TOTALS}, "start": since + i * 86_400.0})
    tops = {by: await top_days(engine, first, last, by, limit) for by in ("model", "key", "team")}
    return since, {name: sums[name] for name in TOTALS}, points, tops
