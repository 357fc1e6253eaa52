"""`/admin/teams`: create, list, get, update and delete teams (master key).

A team's budget and rpm/tpm/parallel limits apply on top of each of its keys' own; disabling a
team refuses all its keys. Every change is published on the bus (TeamChanged) so every worker
drops the team's keys from its cache and sees the new budget and limits at once; the change
answers once every live worker has (admin_changes: 503 ``change_unconfirmed`` otherwise).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate import keyadmin
from faregate.control import Confirmation
from faregate.errors import AlreadyExists, RouteNotFound
from faregate.gateway import Gateway
from faregate.server import admin_changes as changes
from faregate.server import admin_input as inputs
from faregate.server.http import Receive, Scope, Send
from faregate.store import teams as db
from faregate.store.keys import Conflict

SETTABLE = keyadmin.TEAM_SETTABLE  # the same checks as the dashboard's (faregate.keyadmin)
COMPUTED = keyadmin.TEAM_COMPUTED
SHOWN = ("id", "name", "metadata", "enabled", "budget_usd", "budget_period", "spent_usd", "reserved_usd", "period_start", "rpm", "tpm")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {**{name: row.get(name) for name in SHOWN}, "max_parallel": row.get("max_parallel"), "keys": row.get("keys", 0),
            "created_at": row["created_at"], "updated_at": row["updated_at"]}  # fmt: skip


async def _announce(gw: Gateway, wait: float, team_id: str, action: str) -> Confirmation:
    """Drop the team's keys here, tell every worker, wait until every live one has dropped them too."""
    return await keyadmin.announce_team(gw, wait, team_id, action)


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every /admin/teams route; the path after /admin/teams picks the action."""
    await inputs.answer(gw, scope, send, lambda engine: _dispatch(gw, engine, scope, receive))


async def _dispatch(gw: Gateway, engine: AsyncEngine, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    try:
        return await _route(gw, engine, scope, receive)
    except Conflict:  # creating or renaming
        raise AlreadyExists("a team with this name exists already; team names are unique", param="name") from None


async def _route(gw: Gateway, engine: AsyncEngine, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    path, method, now = scope["path"], scope["method"], time.time()
    wait = changes.timeout(scope)  # refused before anything changes
    rest = path.removeprefix("/admin/teams").strip("/")
    if not rest and method == "POST":
        return 201, _public(await keyadmin.create_team(engine, await inputs.body(scope, receive), now))
    if not rest and method == "GET":
        limit, offset = inputs.page(scope)
        rows, total = await db.list_teams(engine, limit, offset)
        page = [_public(r) for r in rows]
        return 200, {"data": page, "total": total, "limit": limit, "offset": offset, "has_more": offset + len(rows) < total}
    if not rest or "/" in rest:
        raise RouteNotFound(f"unknown URL {method} {path!r}")
    current = await db.get_team(engine, rest)
    if current is None:
        raise RouteNotFound(f"no team with id '{rest}'", code="team_not_found")
    if method == "GET":
        return 200, _public(current)
    if method == "PATCH":
        done = await keyadmin.update_team(gw, engine, rest, await inputs.body(scope, receive), wait, now)
        return changes.answer(200, _public(await db.get_team(engine, rest) or current), done)
    if method == "DELETE":
        await db.delete_team(engine, rest)
        done = await _announce(gw, wait, rest, "deleted")
        return changes.answer(200, {"id": rest, "deleted": True, "keys_detached": current.get("keys", 0)}, done)
    raise RouteNotFound(f"unknown URL {method} {path!r}")
