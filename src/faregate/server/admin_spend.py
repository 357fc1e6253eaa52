"""`/admin/spend` (sums by key, team, model, day or deployment) and `/admin/spend/logs` (raw rows).

Master key only. Query parameters are checked against an allowlist: an unknown or repeated one is
refused by name, never ignored, because a silently ignored filter returns a plausible wrong total.
Dates are UTC; ``start``/``end`` take ``YYYY-MM-DD`` (whole days, both included) or Unix seconds
(``end`` included). The log is written in batches: a request shows up within about a second, and
rows held in an outbox during a database outage show up when it is back.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.errors import InvalidRequest
from faregate.gateway import Gateway
from faregate.server import admin_input as inputs
from faregate.server.http import Receive, Scope, Send
from faregate.store import spend as db

MAX_GROUPS = 1000
MAX_PAGE = 100
FILTERS = ("start", "end", "key_id", "team_id", "model")
AGGREGATE_PARAMS = frozenset({*FILTERS, "group_by", "limit"})
LOG_PARAMS = frozenset({*FILTERS, "request_id", "limit", "offset"})
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY = 86_400.0


async def aggregate(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        query = checked_query(scope, AGGREGATE_PARAMS)
        group_by = _group_by(query.get("group_by", ""))
        limit = inputs.integer(query, "limit", 100, 1, MAX_GROUPS)
        filters = _filters(query)
        rows, more = await db.aggregate(engine, group_by, filters, limit)
        return 200, {"object": "spend", "group_by": group_by, **_window(filters), "data": rows, "has_more": more}

    await inputs.answer(gw, scope, send, run)


async def logs(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        rows, limit, offset, more = await log_rows(engine, checked_query(scope, LOG_PARAMS))
        return 200, {"object": "list", "data": rows, "limit": limit, "offset": offset, "has_more": more}

    await inputs.answer(gw, scope, send, run)


async def log_rows(engine: AsyncEngine, query: dict[str, str], max_page: int = MAX_PAGE) -> tuple[list[dict[str, Any]], int, int, bool]:
    """One page of spend rows for checked ``LOG_PARAMS`` (also the LiteLLM-compatible /spend/logs):
    the rows, the limit and offset applied, and whether more exist."""
    limit = inputs.integer(query, "limit", 50, 1, max_page)
    offset = inputs.integer(query, "offset", 0, 0, inputs.MAX_OFFSET)
    rows, more = await db.list_rows(engine, _filters(query), limit, offset)
    return rows, limit, offset, more


def checked_query(scope: Scope, allowed: frozenset[str]) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    try:
        parsed = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw), max_num_fields=20)
    except ValueError:
        raise InvalidRequest("the query string is malformed (at most 20 parameters, each name=value)") from None
    for name, values in parsed.items():
        if name not in allowed:
            raise InvalidRequest(f"unknown query parameter '{name}'; this route takes: {', '.join(sorted(allowed))}", param=name)
        if len(values) > 1:
            raise InvalidRequest(f"'{name}' is given {len(values)} times; give it once (group_by takes a comma list)", param=name)
    return {name: values[0] for name, values in parsed.items()}


def _group_by(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",")] if value.strip() else []
    for name in names:
        if name not in db.GROUPS:
            raise InvalidRequest(f"cannot group by '{name}'; group_by is a comma list of: {', '.join(db.GROUPS)}", param="group_by")
    if len(set(names)) != len(names):
        raise InvalidRequest("group_by names a field twice", param="group_by")
    return names


def _when(query: dict[str, str], name: str) -> tuple[float, bool] | None:
    """(Unix seconds, whether it was a whole date) for ``start``/``end``, or None when absent."""
    value = query.get(name)
    if value is None:
        return None
    if DATE.fullmatch(value):
        try:
            day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            raise InvalidRequest(f"'{name}' is not a real date: {value!r}", param=name) from None
        return day.timestamp(), True
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
        raise InvalidRequest(f"'{name}' must be a date YYYY-MM-DD (UTC) or Unix seconds, not {value[:40]!r}", param=name)
    return seconds, False


def _text(query: dict[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is not None and (not value or len(value) > 200):
        raise InvalidRequest(f"'{name}' must be 1 to 200 characters", param=name)
    return value


def _filters(query: dict[str, str]) -> db.Filters:
    start, end = _when(query, "start"), _when(query, "end")
    since = start[0] if start else None
    before = None
    if end is not None:
        before = end[0] + DAY if end[1] else math.nextafter(end[0], math.inf)  # `end` is included either way
    if since is not None and before is not None and since >= before:
        raise InvalidRequest("'start' must not be after 'end'", param="start")
    return db.Filters(
        since=since,
        before=before,
        key_id=_text(query, "key_id"),
        team_id=_text(query, "team_id"),
        model=_text(query, "model"),
        request_id=_text(query, "request_id"),
    )


def _window(filters: db.Filters) -> dict[str, Any]:
    return {"start": filters.since, "end_before": filters.before}
