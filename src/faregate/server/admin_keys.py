"""`/admin/keys`: create, list, get, update, rotate, revoke and delete virtual keys (master key).

Bodies are checked against an allowlist: a field that is not settable (spend, owner, role, hash,
anything unknown) is refused by name, never ignored. The secret is in the answer to create and
rotate only. Every change is published on the bus so every worker drops the key from its cache,
and answers once every live worker has (admin_changes: 503 ``change_unconfirmed`` otherwise).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate import keyadmin
from faregate.errors import RouteNotFound
from faregate.gateway import Gateway
from faregate.server import admin_changes as changes
from faregate.server import admin_input as inputs
from faregate.server.http import Receive, Scope, Send
from faregate.store import keys as db

SETTABLE = keyadmin.KEY_SETTABLE
OWNER = keyadmin.KEY_OWNER
COMPUTED = keyadmin.KEY_COMPUTED
public = _public = keyadmin.public_key


async def create(gw: Gateway, engine: AsyncEngine, given: dict[str, Any], now: float) -> dict[str, Any]:
    """A new key (its secret in ``key``, this once); ``given`` is checked field by field."""
    return await keyadmin.create_key(gw, engine, given, now)


async def update(
    gw: Gateway, engine: AsyncEngine, current: dict[str, Any], given: dict[str, Any], wait: float, now: float
) -> tuple[int, dict[str, Any]]:
    body, done = await keyadmin.update_key(gw, engine, current, given, wait, now)
    return changes.answer(200, body, done)


async def delete(gw: Gateway, engine: AsyncEngine, current: dict[str, Any], wait: float) -> tuple[int, dict[str, Any]]:
    await db.delete_key(engine, current["id"])
    done = await keyadmin.announce(gw, wait, "deleted", current["key_hash"], current["previous_hash"])
    return changes.answer(200, {"id": current["id"], "deleted": True}, done)


async def revoke(gw: Gateway, engine: AsyncEngine, current: dict[str, Any], wait: float, now: float) -> tuple[int, dict[str, Any]]:
    body, done = await keyadmin.revoke_key(gw, engine, current, wait, now)
    return changes.answer(200, body, done)


async def rotate(
    gw: Gateway, engine: AsyncEngine, current: dict[str, Any], grace: float, wait: float, now: float
) -> tuple[int, dict[str, Any]]:
    body, done = await keyadmin.rotate_key(gw, engine, current, grace, wait, now)
    return changes.answer(200, body, done)


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every /admin/keys route; the path after /admin/keys picks the action."""
    await inputs.answer(gw, scope, send, lambda engine: _dispatch(gw, engine, scope, receive))


async def _dispatch(gw: Gateway, engine: AsyncEngine, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    parts = scope["path"].removeprefix("/admin/keys").strip("/").split("/") if scope["path"] != "/admin/keys" else []
    method = scope["method"]
    now = time.time()
    wait = changes.timeout(scope)  # refused before anything changes
    if not parts and method == "POST":
        return 201, await create(gw, engine, await inputs.body(scope, receive), now)
    if not parts and method == "GET":
        limit, offset = inputs.page(scope)
        rows, total = await db.list_keys(engine, limit, offset)
        return 200, {
            "data": [_public(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(rows) < total,
        }
    if len(parts) not in (1, 2) or not parts[0]:
        raise RouteNotFound(f"unknown URL {method} {scope['path']!r}")
    key_id, action = parts[0], (parts[1] if len(parts) == 2 else "")
    current = await db.get_key(engine, key_id)
    if current is None:
        raise RouteNotFound(f"no virtual key with id '{key_id}'", code="key_not_found")
    if action == "" and method == "GET":
        return 200, _public(current)
    if action == "" and method == "PATCH":
        return await update(gw, engine, current, await inputs.body(scope, receive), wait, now)
    if action == "" and method == "DELETE":
        return await delete(gw, engine, current, wait)
    if action == "revoke" and method == "POST":
        return await revoke(gw, engine, current, wait, now)
    if action == "rotate" and method == "POST":
        grace = keyadmin.check_grace((await inputs.body(scope, receive)).get("grace_seconds", 0))
        return await rotate(gw, engine, current, grace, wait, now)
    raise RouteNotFound(f"unknown URL {method} {scope['path']!r}")
