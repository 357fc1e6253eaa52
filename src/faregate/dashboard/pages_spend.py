"""Admin page Spend: sums per key, team, model, deployment or day over a range of whole UTC days
(read from ``spend_daily``, see ``store.ui_queries``), as a chart and a table, and the same sums as
CSV. A CSV cell that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
carriage return) is prefixed with a quote: key names and model names come from clients."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from faregate.dashboard import charts
from faregate.dashboard.web import Request, Response, render
from faregate.store import ui_queries as uq

MAX_GROUPS = 100  # on the page
MAX_CSV = 10_000
DEFAULT_DAYS = 30
MAX_DAYS = 3660
FORMULA = ("=", "+", "-", "@", "\t", "\r")
LABELS = {"key": "key", "team": "team", "model": "model", "deployment": "deployment", "day": "day (UTC)"}


@dataclass(frozen=True, slots=True)
class HBar:
    label: str
    y: float
    width: float
    value: str


def _day(raw: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(raw or "", "%Y-%m-%d").date()
    except ValueError:
        return None


def query(request: Request) -> tuple[uq.SpendQuery, str]:
    """The page's query from ``group``, ``start``, ``end`` (UTC dates, both included; default the
    last 30 days), ``key_id`` or ``team_id`` (one key's or team's spend per day); and a note on
    anything that was not usable and what was used instead."""
    notes = []
    today = dt.datetime.now(dt.UTC).date()
    last = _day(request.query.get("end")) or today
    first = _day(request.query.get("start")) or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    for name in ("start", "end"):
        if request.query.get(name) and _day(request.query.get(name)) is None:
            notes.append(f"'{name}' is not a date YYYY-MM-DD: the default is used")
    if first > last:
        first, last = last, first
        notes.append("start was after end: they are swapped")
    if (last - first).days > MAX_DAYS:
        first = last - dt.timedelta(days=MAX_DAYS)
        notes.append(f"at most {MAX_DAYS} days: the range is cut")
    group = request.query.get("group", "day")
    if group not in uq.GROUPS:
        notes.append(f"cannot group by {group[:40]!r}: grouped by day")
        group = "day"
    key_id, team_id = request.query.get("key_id") or None, request.query.get("team_id") or None
    if (key_id or team_id) and group != "day":
        notes.append("one key's or team's spend is shown per day")
        group = "day"
    if key_id and team_id:
        team_id = None
        notes.append("one of key_id and team_id at a time: the key is shown")
    return uq.SpendQuery(group, first, last, key_id=key_id, team_id=team_id), "; ".join(notes)


def _bars(rows: list[dict[str, Any]]) -> tuple[HBar, ...]:
    peak = max((r["cost_usd"] for r in rows), default=0.0)
    return tuple(
        HBar(_label(r), 4 + i * 18, round(380 * r["cost_usd"] / peak, 2) if peak > 0 else 0.0, f"${r['cost_usd']:.4f}")
        for i, r in enumerate(rows[:20])
    )


def _label(row: dict[str, Any]) -> str:
    text = row.get("name") or row["value"] or "(none)"
    return str(text)[:40]


async def spend(request: Request) -> Response:
    engine = request.gw.engine
    assert engine is not None
    q, note = query(request)
    rows, totals, more = await uq.spend(engine, q, MAX_GROUPS)
    chart = None
    bars: tuple[HBar, ...] = ()
    if q.group == "day":
        days = [{**r, "start": dt.datetime.strptime(r["value"], "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()} for r in rows]
        chart = charts.bars("Spend per day (USD)", days, "cost_usd", "${:.4f}", "%Y-%m-%d")
    else:
        bars = _bars(rows)
    params = {"group": q.group, "start": uq.day_text(q.first), "end": uq.day_text(q.last)}
    params.update({k: v for k, v in (("key_id", q.key_id), ("team_id", q.team_id)) if v})
    return render(
        request, "spend.html", q=q, rows=rows, totals=totals, more=more, note=note, chart=chart, bars=bars,
        groups=uq.GROUPS, label=LABELS[q.group], start=params["start"], end=params["end"], csv_query=urlencode(params),
        bars_height=8 + 18 * len(bars),
    )  # fmt: skip


def cell(value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would take for a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    return value


async def spend_csv(request: Request) -> Response:
    engine = request.gw.engine
    assert engine is not None
    q, _ = query(request)
    rows, _, _ = await uq.spend(engine, q, MAX_CSV)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    named = q.group in ("key", "team")
    writer.writerow([q.group, *(["name"] if named else []), *uq.SUMS])
    for r in rows:
        writer.writerow([cell(r["value"] or ""), *([cell(r.get("name") or "")] if named else []), *(r[s] for s in uq.SUMS)])
    name = f"spend-{q.group}-{uq.day_text(q.first)}-{uq.day_text(q.last)}.csv"
    disposition = f'attachment; filename="{name}"'.encode()
    return Response(200, out.getvalue().encode(), b"text/csv; charset=utf-8", [(b"content-disposition", disposition)])
