"""`/admin/keys`: create, list, get, update, rotate, revoke and delete virtual keys (master key).

Bodies are checked against an allowlist: a field that is not settable (spend, owner, role, hash,
anything unknown) is refused by name, never ignored. The secret is in the answer to create and
rotate only. Every change is published on the bus so every worker drops the key from its cache,
and answers once every live worker has (admin_changes: 503 ``change_unconfirmed`` otherwise).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import secrets
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.config.load import did_you_mean
from faregate.control import Confirmation
from faregate.credentials.virtual import display_prefix, hash_key, new_secret
from faregate.errors import InvalidRequest, RouteNotFound
from faregate.gateway import Gateway
from faregate.server import admin_changes as changes
from faregate.server import admin_input as inputs
from faregate.server.http import Receive, Scope, Send
from faregate.store import keys as db
from faregate.store import teams as teams_db
from faregate.store.base import Event, VirtualKeyChanged

SETTABLE: inputs.Checkers = {
    "name": inputs.check_name,
    "models": inputs.check_models,
    "expires_at": inputs.check_expires_at,
    "metadata": inputs.check_metadata,
    "enabled": inputs.check_enabled,
    **inputs.BUDGET_AND_LIMITS,
}
OWNER: inputs.Checkers = {"user_id": inputs.check_owner("user_id"), "team_id": inputs.check_owner("team_id")}
COMPUTED = {
    name: "it is kept by faregate"
    for name in ("id", "key", "key_hash", "prefix", "spent_usd", "reserved_usd", "period_start", "created_at", "updated_at", "revoked_at")
}
OWNER_FIXED = {name: "a key's owner is fixed at creation; create a new key for another owner" for name in OWNER}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A key as the API shows it: never the hash, never the secret."""
    return {
        "id": row["id"],
        "prefix": row["prefix"],
        "name": row["name"],
        "user_id": row["user_id"],
        "models": row["models"],
        "expires_at": row["expires_at"],
        "metadata": row["metadata"],
        "enabled": row["enabled"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "revoked_at": row["revoked_at"],
        "previous_secret_valid_until": row["previous_valid_until"],
        "budget_usd": row.get("budget_usd"),
        "budget_period": row.get("budget_period"),
        "spent_usd": row.get("spent_usd", 0.0),
        "reserved_usd": row.get("reserved_usd", 0.0),
        "team_id": row.get("team_id"),
        "rpm": row.get("rpm"),
        "tpm": row.get("tpm"),
        "max_parallel": row.get("max_parallel"),
    }


def _warnings(gw: Gateway, fields: dict[str, Any], now: float) -> list[str]:
    """What is allowed but almost surely a mistake in a key's new fields: a ``models`` pattern that
    matches no configured public model (the key cannot use it), an ``expires_at`` already past."""
    configured = gw.keyring.current.generation.models
    out = [
        f"'models': {pattern!r} matches no configured model{did_you_mean(pattern, configured)}; the key cannot use it until one is configured"
        for pattern in fields.get("models") or []
        if not any(fnmatch.fnmatchcase(name, pattern) for name in configured)
    ]
    if fields.get("expires_at") is not None and fields["expires_at"] <= now:
        out.append(f"'expires_at' ({_utc(fields['expires_at'])}) is in the past: the key is refused from the start")
    return out


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ended_grace(current: dict[str, Any], grace: float, now: float) -> list[str]:
    """A key keeps one old secret: rotating while an earlier rotation's grace runs ends that grace now."""
    until = current["previous_valid_until"]
    if not current["previous_hash"] or until is None or until <= now:
        return []
    replaced = f"the secret replaced now works {grace:g} s more" if grace else "with no grace, the secret replaced now stops at once too"
    return [
        f"this rotation ends the grace of the secret replaced by the previous rotation: it stops working now, not at {_utc(until)} "
        f"(a key keeps one old secret; {replaced})"
    ]


async def _announce(gw: Gateway, wait: float, action: str, *hashes: str | None) -> Confirmation:
    """Drop the key here, tell every worker, wait until every live one has dropped it too."""
    events: list[Event] = []
    for key_hash in hashes:
        if not key_hash:
            continue
        if gw.keys is not None:
            gw.keys.invalidate(key_hash)
        events.append(VirtualKeyChanged(key_hash=key_hash, action=action, origin=gw.control.worker_id))  # type: ignore[arg-type]
    return await gw.control.announce(events, wait)


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every /admin/keys route; the path after /admin/keys picks the action."""
    await inputs.answer(gw, scope, send, lambda engine: _dispatch(gw, engine, scope, receive))


async def _dispatch(gw: Gateway, engine: AsyncEngine, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    parts = scope["path"].removeprefix("/admin/keys").strip("/").split("/") if scope["path"] != "/admin/keys" else []
    method = scope["method"]
    now = time.time()
    wait = changes.timeout(scope)  # refused before anything changes
    if not parts and method == "POST":
        fields = inputs.fields(await inputs.body(scope, receive), {**SETTABLE, **OWNER}, COMPUTED, required=("name",))
        if fields.get("team_id") is not None and await teams_db.get_team(engine, fields["team_id"]) is None:
            raise InvalidRequest(f"'team_id': no team with id '{fields['team_id']}'", param="team_id", code="team_not_found")
        secret = new_secret()
        new: dict[str, Any] = {"id": "key_" + secrets.token_hex(8), "key_hash": hash_key(secret), "prefix": display_prefix(secret)}
        new.update(models=[], metadata={}, enabled=True, user_id=None, expires_at=None, revoked_at=None, previous_valid_until=None)
        new.update(
            budget_usd=None, budget_period="total", spent_usd=0.0, reserved_usd=0.0, team_id=None, rpm=None, tpm=None, max_parallel=None
        )
        new.update(fields)
        new.update(created_at=now, updated_at=now)
        await db.insert_key(engine, new)
        return 201, {**_public(new), "key": secret, "warnings": _warnings(gw, fields, now)}
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
        fields = inputs.fields(await inputs.body(scope, receive), SETTABLE, {**COMPUTED, **OWNER_FIXED})
        if fields.get("enabled") and current["revoked_at"] is not None:
            raise InvalidRequest("a revoked key cannot be enabled again; create a new key", param="enabled")
        row = await db.update_key(engine, key_id, {**fields, "updated_at": now})
        done = await _announce(gw, wait, "updated", current["key_hash"], current["previous_hash"])
        return changes.answer(200, {**_public(row or current), "warnings": _warnings(gw, fields, now)}, done)
    if action == "" and method == "DELETE":
        await db.delete_key(engine, key_id)
        done = await _announce(gw, wait, "deleted", current["key_hash"], current["previous_hash"])
        return changes.answer(200, {"id": key_id, "deleted": True}, done)
    if action == "revoke" and method == "POST":
        row = await db.update_key(engine, key_id, {"enabled": False, "revoked_at": now, "updated_at": now, "previous_valid_until": None})
        done = await _announce(gw, wait, "revoked", current["key_hash"], current["previous_hash"])
        return changes.answer(200, _public(row or current), done)
    if action == "rotate" and method == "POST":
        grace = (await inputs.body(scope, receive)).get("grace_seconds", 0)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 30 * 86400:
            raise InvalidRequest("'grace_seconds' must be a number of seconds from 0 to 2592000", param="grace_seconds")
        secret = new_secret()
        values = {"key_hash": hash_key(secret), "prefix": display_prefix(secret), "updated_at": now}
        if grace:  # the old secret keeps working until then
            values.update(previous_hash=current["key_hash"], previous_valid_until=now + grace)
        else:
            values.update(previous_hash=None, previous_valid_until=None)
        row = await db.update_key(engine, key_id, values)
        done = await _announce(gw, wait, "rotated", current["key_hash"], current["previous_hash"])
        return changes.answer(200, {**_public(row or current), "key": secret, "warnings": _ended_grace(current, grace, now)}, done)
    raise RouteNotFound(f"unknown URL {method} {scope['path']!r}")
