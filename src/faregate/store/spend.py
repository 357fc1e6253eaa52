"""The spend log in the database: idempotent batch inserts, aggregates and a raw listing.

Rows are inserted with ``ON CONFLICT (request_id) DO NOTHING`` on both dialects, so a batch that
is written twice (a replayed outbox, a flush retried after a timeout whose commit did land) leaves
exactly one row per request. Every statement is built with SQLAlchemy Core and bound parameters
(the INSERT is compiled once and run with positional parameters, see ``_Plan``), and every result is
bounded by its caller's limit.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store.schema import spend_log

Row = dict[str, Any]
COLUMNS = tuple(str(c.name) for c in spend_log.columns)  # plain str: the rows also go to JSON (the outbox)
_REQUIRED = {"stream": False, "latency_ms": 0.0, "status": 0, "attempts": 0, "endpoint": "unknown"}
INT32 = 2**31 - 1
_TEXT = tuple((str(c.name), c.type.length or 10_000) for c in spend_log.columns if isinstance(c.type, String))
_INTS = tuple(str(c.name) for c in spend_log.columns if c.type.python_type is int)
_FLOATS = tuple(str(c.name) for c in spend_log.columns if c.type.python_type is float)
_NUMBER = (int, float)
GROUPS: dict[str, ColumnElement[Any]] = {
    "key": spend_log.c.key_id,
    "team": spend_log.c.team_id,
    "model": spend_log.c.model,
    "day": spend_log.c.day,
    "deployment": spend_log.c.deployment,
    "format": spend_log.c.format,
}


def prepare(row: Row) -> Row:
    """A row as both databases take it, whatever a client or an upstream put into it: every column
    present and of its column's type, ``day`` from ``ts``. PostgreSQL refuses a string longer than
    its column, a NUL character, an integer beyond 32 bits, and a refused row would hold its whole
    batch (and the outbox behind it) back, so such values are cut, cleaned or clamped here, and a
    value of the wrong type becomes NULL. Runs in the writer's task for every row: the checks are
    builtins, and a Python call happens only for a value that needs fixing (a few microseconds a row)."""
    out = {name: row.get(name) for name in COLUMNS}
    for name, length in _TEXT:
        value = out[name]
        if value is not None and (value.__class__ is not str or len(value) > length or "\0" in value or not value.isascii()):
            out[name] = _text(value, length)
    for name in _INTS:
        value = out[name]
        if value is not None and (value.__class__ is not int or not -INT32 - 1 <= value <= INT32):
            out[name] = _number(value, int)
    for name in _FLOATS:
        value = out[name]
        if value is not None and (value.__class__ is not float or not math.isfinite(value)):
            out[name] = _number(value, float)
    if out["stream"].__class__ is not bool:
        out["stream"] = False
    for name, default in _REQUIRED.items():
        if out[name] is None:
            out[name] = default
    if out["ts"] is None:
        out["ts"] = time.time()
    out["day"] = time.strftime("%Y-%m-%d", time.gmtime(out["ts"]))
    return out


def _text(value: Any, length: int) -> str:
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\0", "")
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: neither database nor JSON takes it
        text = text.encode("utf-8", "replace").decode()
    return text[:length]


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        return None
    if kind is int:
        return max(-INT32 - 1, min(INT32, int(value)))
    return float(value)


# The Core INSERT, compiled once per dialect and run with a tuple per row. Two measured reasons:
# - ``Connection.execute`` runs SQLAlchemy's per-row parameter processing in the event loop: 10 to
#   11 µs a row, about half the insert's cost, for types the drivers take as they are.
# - SQLite through aiosqlite steps once per row of an executemany, releasing and re-taking the GIL
#   each time; while the event loop is busy serving, each re-take waits for its switch interval
#   (5 ms), and the writer fell to ~500 rows/s under load. One multi-row INSERT per chunk steps
#   once per chunk. Chunks are powers of two (1024 rows, then 512, 256, …), so there are only eleven
#   distinct statements: sqlite3 keeps every distinct SQL text prepared in its statement cache,
#   and chunks of any size had that cache grow to over 100 MB. (asyncpg pipelines an executemany
#   on the loop itself: no such wait.)
_INSERTS: dict[str, Any] = {}  # dialect -> its INSERT ... ON CONFLICT DO NOTHING, built at first use: a SQLite
# worker never imports the PostgreSQL dialect (~2 MiB, 20 modules), nor the other way round


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str  # one row, positional parameters
    parameters: Callable[[Row], tuple[Any, ...]]  # a prepared row -> its parameters in ``sql``'s order
    multirow: tuple[str, str, str] | None = None  # SQLite: head, "(?, …)", tail of a many-row INSERT
    per_statement: int = 1


_PLANS: dict[tuple[str, str], _Plan | None] = {}  # derived from the schema and the dialect only: no config, no secret
MULTIROW = 1024  # rows per SQLite INSERT statement at most


def _insert(engine: AsyncEngine) -> Any:
    name = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    statement = _INSERTS.get(name)
    if statement is None:
        if name == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(spend_log).on_conflict_do_nothing(index_elements=["request_id"])
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(spend_log).on_conflict_do_nothing(index_elements=["request_id"])
        _INSERTS[name] = statement
    return statement


def _plan(engine: AsyncEngine) -> _Plan | None:
    """How to insert on this engine's dialect; None for a named paramstyle (plain Core path)."""
    dialect = engine.dialect
    key = (dialect.name, str(dialect.paramstyle))
    if key not in _PLANS:
        compiled = _insert(engine).compile(dialect=dialect)
        order = compiled.positiontup
        plan = None
        if order:
            plan = _Plan(compiled.string, operator.itemgetter(*order))
            if dialect.name == "sqlite":
                head, _, rest = compiled.string.partition(" VALUES ")
                group, tail = rest[: rest.index(")") + 1], rest[rest.index(")") + 1 :]
                with contextlib.closing(sqlite3.connect(":memory:")) as probe:
                    limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(order)
                size = 1 << (min(MULTIROW, limit).bit_length() - 1)  # a power of two that fits the variable limit
                plan = _Plan(plan.sql, plan.parameters, (head + " VALUES ", group, tail), size)
        _PLANS[key] = plan
    return _PLANS[key]


async def _execute(engine: AsyncEngine, rows: Sequence[Row]) -> None:
    plan = _plan(engine)
    async with engine.begin() as conn:
        if plan is None:
            await conn.execute(_insert(engine), list(rows))
        elif plan.multirow is None:
            await conn.exec_driver_sql(plan.sql, [plan.parameters(row) for row in rows])
        else:
            head, group, tail = plan.multirow
            start, size = 0, plan.per_statement
            while start < len(rows):
                while size > len(rows) - start:
                    size >>= 1
                chunk = rows[start : start + size]
                sql = head + ", ".join([group] * size) + tail
                await conn.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(map(plan.parameters, chunk))))
                start += size


async def insert_rows(engine: AsyncEngine, rows: Sequence[Row]) -> None:
    """Insert prepared rows (``prepare``) in one transaction; a request id already present is skipped."""
    if rows:
        await _execute(engine, rows)


def refused(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (bad data, a constraint) rather than being
    unusable (down, unreachable, no table, no permission): only then is inserting row by row useful."""
    return (
        isinstance(exc, DBAPIError)
        and not exc.connection_invalidated
        and not isinstance(exc, OperationalError | InterfaceError | ProgrammingError)
    )


async def insert_each(engine: AsyncEngine, rows: Sequence[Row]) -> list[Row]:
    """Insert rows one by one and return those the database refused while it still answers: the
    writer sets them aside instead of retrying them forever. Raises when the database is unusable."""
    rejected: list[Row] = []
    for row in rows:
        try:
            await _execute(engine, [row])
        except DBAPIError as exc:
            if not refused(exc):
                raise
            async with engine.connect() as conn:  # still answering? then it is this row, not the database
                await conn.execute(select(1))
            rejected.append(row)
    return rejected


@dataclass(frozen=True, slots=True)
class Filters:
    since: float | None = None  # ts >= since
    before: float | None = None  # ts < before
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    request_id: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        t = spend_log.c
        clauses: list[ColumnElement[bool]] = []
        if self.since is not None:
            clauses.append(t.ts >= self.since)
        if self.before is not None:
            clauses.append(t.ts < self.before)
        for column, value in ((t.key_id, self.key_id), (t.team_id, self.team_id), (t.model, self.model), (t.request_id, self.request_id)):
            if value is not None:
                clauses.append(column == value)
        return clauses


async def aggregate(engine: AsyncEngine, group_by: Sequence[str], filters: Filters, limit: int) -> tuple[list[Row], bool]:
    """Sums per group (``group_by`` names from GROUPS), ordered by the groups; at most ``limit`` rows,
    and whether more groups exist. ``cost_usd`` sums the priced rows; ``unpriced_requests`` counts
    the answered requests whose cost is unknown, so a total is never silently low."""
    t = spend_log.c
    groups = [GROUPS[name] for name in group_by]
    sums = [
        func.count().label("requests"),
        func.coalesce(func.sum(case(((t.status < 200) | (t.status >= 400), 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(t.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(t.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(t.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(t.cost_usd), 0.0).label("cost_usd"),
        func.coalesce(func.sum(case((t.cost_usd.is_(None), 1), else_=0)), 0).label("unpriced_requests"),
    ]
    query = select(*groups, *sums).where(*filters.where())
    if groups:  # NULL (no key, no team) first on both databases
        query = query.group_by(*groups).order_by(*(g.asc().nulls_first() for g in groups))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit + 1))).mappings().all()
    out = [{**_plain(r), "cost_usd": float(r["cost_usd"])} for r in rows[:limit]]
    return out, len(rows) > limit


async def list_rows(engine: AsyncEngine, filters: Filters, limit: int, offset: int) -> tuple[list[Row], bool]:
    """Raw rows, newest first; at most ``limit``, and whether more exist."""
    query = (
        select(spend_log).where(*filters.where()).order_by(spend_log.c.ts.desc(), spend_log.c.request_id).limit(limit + 1).offset(offset)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [_plain(r) for r in rows[:limit]], len(rows) > limit


def _plain(row: Mapping[Any, Any]) -> Row:
    """Column names come back as a str subclass, which orjson refuses as keys."""
    return {str(k): v for k, v in row.items()}
