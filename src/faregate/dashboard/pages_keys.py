"""Admin pages on virtual keys and teams: the key list (search, pages, create), one key (edit its
budget, limits, models and expiry; rotate with a grace period; revoke), the team list and one
team (its keys and its spend by day).

Every change goes through ``faregate.keyadmin``, the same checks and actions as /admin/keys, so a
field means the same in the API and here. A new or rotated key's secret is in the answer to that
one POST only (``key_secret.html``, never stored, never logged, never in a list or a redirect).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from urllib.parse import urlencode

from faregate import keyadmin
from faregate.dashboard import charts
from faregate.dashboard.web import Request, Response, redirect, render
from faregate.errors import FaregateError
from faregate.store import keys as key_store
from faregate.store import teams as team_store
from faregate.store import ui_queries as uq
from faregate.store.keys import Conflict

PAGE = 50
WAIT = 10.0  # seconds a change waits for every worker's acknowledgement
NUMBERS = {"budget_usd": float, "rpm": int, "tpm": int, "max_parallel": int}


def paging(request: Request) -> tuple[int, int]:
    """``limit`` (1..100, default 50) and ``offset`` (>= 0) from the query; nonsense is the default."""
    try:
        limit = min(max(int(request.query.get("limit", PAGE)), 1), 100)
    except ValueError:
        limit = PAGE
    try:
        offset = min(max(int(request.query.get("offset", 0)), 0), 10_000_000)
    except ValueError:
        offset = 0
    return limit, offset


def text(request: Request, name: str) -> str | None:
    value = request.query.get(name, "").strip()
    return value[:200] or None


class BadForm(Exception):
    pass


def given(form: dict[str, str], *, creating: bool) -> dict[str, Any]:
    """A key form's fields as /admin/keys takes them (an empty number: none; models: a comma list;
    expiry: a UTC date, the key works until that day begins). Only the fields the form has."""
    out: dict[str, Any] = {}
    if "name" in form:
        out["name"] = form["name"]
    for name, kind in NUMBERS.items():
        if name in form:
            raw = form[name].strip()
            try:
                out[name] = kind(raw) if raw else None
            except ValueError:
                raise BadForm(f"'{name}' must be a {'number' if kind is float else 'whole number'} or empty") from None
    if form.get("budget_period"):
        out["budget_period"] = form["budget_period"]
    if "models" in form:
        out["models"] = [m.strip() for m in form["models"].split(",") if m.strip()]
    if "expires" in form:
        raw = form["expires"].strip()
        try:
            out["expires_at"] = dt.datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp() if raw else None
        except ValueError:
            raise BadForm("'expires' must be a date YYYY-MM-DD or empty") from None
    if creating and form.get("team_id"):
        out["team_id"] = form["team_id"]
    return out


async def keys(request: Request) -> Response:
    engine = request.gw.engine
    assert engine is not None
    error = ""
    if request.method == "POST":
        try:
            created = await keyadmin.create_key(request.gw, engine, given(request.form, creating=True), time.time())
        except (BadForm, FaregateError) as exc:
            error = str(exc)
        else:
            return render(request, "key_secret.html", 201, key=created, action="created", laggards=[])
    limit, offset = paging(request)
    q, team_id = text(request, "q"), text(request, "team")
    found = await uq.find_keys(engine, q, team_id, limit, offset)
    teams = await uq.find_teams(engine, None, 100, 0)
    extra = "".join("&" + urlencode({n: v}) for n, v in (("q", q), ("team", team_id)) if v)
    return render(
        request, "keys.html", 400 if error else 200, found=found, q=q or "", team=team_id or "", teams=teams.rows,
        offset=offset, limit=limit, has_more=offset + len(found.rows) < found.total or found.capped, extra=extra,
        error=error, periods=keyadmin.PERIODS, now=time.time(),
    )  # fmt: skip


async def vkey(request: Request) -> Response:
    """One key: GET shows it with its edit form; POST ``action`` = update | rotate | revoke."""
    engine = request.gw.engine
    assert engine is not None
    key_id = request.query.get("id", "") or request.form.get("id", "")
    current = await key_store.get_key(engine, key_id) if key_id else None
    if current is None:
        return render(request, "message.html", 404, title="No such key", message="There is no virtual key with that id.")
    error, notice, now = "", "", time.time()
    if request.method == "POST":
        action = request.form.get("action", "")
        try:
            if action == "update":
                fields = given({k: v for k, v in request.form.items() if k not in ("csrf", "id", "action", "team_id")}, creating=False)
                body, done = await keyadmin.update_key(request.gw, engine, current, fields, WAIT, now)
                notice = "; ".join(["Saved.", *body["warnings"], *_unconfirmed(done.laggards)])
            elif action == "rotate":
                grace = keyadmin.check_grace(_grace(request.form.get("grace_seconds", "0")))
                body, done = await keyadmin.rotate_key(request.gw, engine, current, grace, WAIT, now)
                return render(request, "key_secret.html", 200, key=body, action="rotated", laggards=done.laggards)
            elif action == "revoke":
                _, done = await keyadmin.revoke_key(request.gw, engine, current, WAIT, now)
                notice = "; ".join(["Revoked: the key is refused from now on.", *_unconfirmed(done.laggards)])
            else:
                error = "unknown action"
        except (BadForm, FaregateError) as exc:
            error = str(exc)
        current = await key_store.get_key(engine, key_id) or current
    team = await team_store.get_team(engine, current["team_id"]) if current["team_id"] else None
    today = dt.datetime.now(dt.UTC).date()
    usage, totals, _ = await uq.spend(engine, uq.SpendQuery("day", today - dt.timedelta(days=29), today, key_id=current["id"]), 31)
    chart = charts.bars("Spend per day, last 30 days (USD)", _days(usage), "cost_usd", "${:.4f}", "%m-%d")
    return render(
        request, "vkey.html", 400 if error else 200, key=keyadmin.public_key(current), team=team, error=error, notice=notice,
        periods=keyadmin.PERIODS, totals=totals, graph=chart, expires=_date(current["expires_at"]), now=now,
    )  # fmt: skip


def _grace(raw: str) -> float:
    try:
        return float(raw.strip() or 0)
    except ValueError:
        raise BadForm("'grace_seconds' must be a number of seconds") from None


def _unconfirmed(laggards: list[str]) -> list[str]:
    return [f"not yet confirmed by: {', '.join(laggards)} (they apply it when they catch up)"] if laggards else []


def _date(seconds: float | None) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d") if seconds else ""


def _days(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spend rows per day with the day's start in Unix seconds, as charts.bars takes them."""
    return [{**r, "start": dt.datetime.strptime(r["value"], "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()} for r in rows]


TEAM_FORM = ("name", "budget_usd", "budget_period", "rpm", "tpm", "max_parallel")


def team_given(form: dict[str, str]) -> dict[str, Any]:
    out = given({k: v for k, v in form.items() if k in TEAM_FORM}, creating=False)
    if "enabled" in form:
        out["enabled"] = form["enabled"] == "on"
    return out


async def teams(request: Request) -> Response:
    """The teams; POST creates one and goes to it."""
    engine = request.gw.engine
    assert engine is not None
    error = ""
    if request.method == "POST":
        try:
            new = await keyadmin.create_team(engine, team_given(request.form), time.time())
        except Conflict:
            error = "a team with this name exists already; team names are unique"
        except (BadForm, FaregateError) as exc:
            error = str(exc)
        else:
            return redirect(request, "team?" + urlencode({"id": new["id"]}))
    limit, offset = paging(request)
    q = text(request, "q")
    found = await uq.find_teams(engine, q, limit, offset)
    return render(
        request, "teams.html", 400 if error else 200, found=found, q=q or "", offset=offset, limit=limit, error=error,
        periods=keyadmin.PERIODS,
        has_more=offset + len(found.rows) < found.total or found.capped, extra="&" + urlencode({"q": q}) if q else "",
    )  # fmt: skip


async def team(request: Request) -> Response:
    """One team: its budget and limits, its keys (paged) and its spend per day."""
    engine = request.gw.engine
    assert engine is not None
    row = await team_store.get_team(engine, request.query.get("id", "")) if request.query.get("id") else None
    if row is None:
        return render(request, "message.html", 404, title="No such team", message="There is no team with that id.")
    error, notice = "", ""
    if request.method == "POST":  # edit: name, budget, limits, enabled
        try:
            done = await keyadmin.update_team(request.gw, engine, row["id"], team_given(request.form), WAIT, time.time())
            notice = "; ".join(["Saved.", *_unconfirmed(done.laggards)])
        except Conflict:
            error = "a team with this name exists already; team names are unique"
        except (BadForm, FaregateError) as exc:
            error = str(exc)
        row = await team_store.get_team(engine, row["id"]) or row
    limit, offset = paging(request)
    found = await uq.find_keys(engine, None, row["id"], limit, offset)
    today = dt.datetime.now(dt.UTC).date()
    usage, totals, _ = await uq.spend(engine, uq.SpendQuery("day", today - dt.timedelta(days=29), today, team_id=row["id"]), 31)
    chart = charts.bars("Spend per day, last 30 days (USD)", _days(usage), "cost_usd", "${:.4f}", "%m-%d")
    return render(
        request, "team.html", 400 if error else 200, team=row, found=found, offset=offset, limit=limit, error=error, notice=notice,
        periods=keyadmin.PERIODS,
        has_more=offset + len(found.rows) < found.total or found.capped, extra="&" + urlencode({"id": row["id"]}), totals=totals, graph=chart,
    )  # fmt: skip
