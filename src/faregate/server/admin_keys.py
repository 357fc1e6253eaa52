"""`/admin/keys`: create, list, get, update, rotate, revoke and delete virtual keys (master key).

Bodies are checked against an allowlist: a field that is not settable (spend, owner, role, hash,
anything unknown) is refused by name, never ignored. The secret is in the answer to create and
rotate only. Every change is published on the bus so every worker drops the key from its cache.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from sqlalchemy.exc import SQLAlchemyError

from faregate.credentials.virtual import display_prefix, hash_key, new_secret
from faregate.errors import FaregateError, InvalidRequest, KeyStoreUnavailable, RouteNotFound
from faregate.gateway import Gateway
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error
from faregate.store import keys as db
from faregate.store.base import BusError, VirtualKeyChanged

JSON = b"application/json"
MAX_PAGE = 100
SETTABLE = {"name", "user_id", "models", "expires_at", "metadata", "enabled", "budget_usd", "budget_period"}
NOT_YET = {"rpm", "tpm", "max_parallel", "team_id"}
PERIODS = ("daily", "weekly", "monthly", "total")


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
    }


def _fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in NOT_YET:
            raise InvalidRequest(f"'{name}' is not supported by this version yet (budgets and limits come later)", param=name)
        if name not in SETTABLE:
            raise InvalidRequest(f"'{name}' cannot be set; settable fields: {', '.join(sorted(SETTABLE))}", param=name)
        out[name] = _checked(name, value)
    if creating and not out.get("name"):
        raise InvalidRequest("'name' is required", param="name")
    return out


def _checked(name: str, value: Any) -> Any:
    if name == "name":
        if not isinstance(value, str) or not value.strip() or len(value) > 200 or any(c in value for c in "\r\n\0"):
            raise InvalidRequest("'name' must be a non-empty string of at most 200 characters without line breaks", param=name)
        return value.strip()
    if name == "user_id":
        if value is not None and (not isinstance(value, str) or len(value) > 200 or any(c in value for c in "\r\n\0")):
            raise InvalidRequest("'user_id' must be a string of at most 200 characters or null", param=name)
        return value
    if name == "models":
        if not isinstance(value, list) or len(value) > 500 or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in value):
            raise InvalidRequest("'models' must be an array of at most 500 model names or globs", param=name)
        return value
    if name == "expires_at":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e11):
            raise InvalidRequest("'expires_at' must be a Unix time in seconds or null", param=name)
        return value
    if name == "metadata":
        if not isinstance(value, dict) or len(orjson.dumps(value)) > 16_384:
            raise InvalidRequest("'metadata' must be an object of at most 16 KiB", param=name)
        return value
    if name == "budget_usd":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e9):
            raise InvalidRequest("'budget_usd' must be a number of dollars from 0 to 1e9, or null for no budget", param=name)
        return value
    if name == "budget_period":
        if value not in PERIODS:
            raise InvalidRequest(f"'budget_period' must be one of {', '.join(PERIODS)}", param=name)
        return value
    if not isinstance(value, bool):
        raise InvalidRequest("'enabled' must be a boolean", param=name)
    return value


async def _body(scope: Scope, receive: Receive) -> dict[str, Any]:
    raw = await read_body(scope, receive, 64 * 1024)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return data


async def _announce(gw: Gateway, action: str, *hashes: str | None) -> None:
    for key_hash in hashes:
        if not key_hash:
            continue
        if gw.keys is not None:
            gw.keys.invalidate(key_hash)
        with contextlib.suppress(BusError):  # if the bus is down, other workers fall back on the cache TTL
            await gw.control.bus.publish(VirtualKeyChanged(key_hash=key_hash, action=action, origin=gw.control.worker_id))  # type: ignore[arg-type]


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send_bytes(send, status, orjson.dumps(body), JSON)


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every /admin/keys route; the path after /admin/keys picks the action."""
    try:
        authenticate_admin(gw.keyring.current, scope)
        if gw.engine is None:
            raise KeyStoreUnavailable("the key store is not started")
        status, body = await _dispatch(gw, scope, receive)
    except SQLAlchemyError as exc:
        await send_error(send, KeyStoreUnavailable(f"the key store failed: {exc.__class__.__name__}"))
        return
    except FaregateError as err:
        await send_error(send, err)
        return
    await _json(send, status, body)


async def _dispatch(gw: Gateway, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
    engine = gw.engine
    assert engine is not None
    parts = scope["path"].removeprefix("/admin/keys").strip("/").split("/") if scope["path"] != "/admin/keys" else []
    method = scope["method"]
    now = time.time()
    if not parts and method == "POST":
        fields = _fields(await _body(scope, receive), creating=True)
        secret = new_secret()
        new: dict[str, Any] = {"id": "key_" + secrets.token_hex(8), "key_hash": hash_key(secret), "prefix": display_prefix(secret)}
        new.update(models=[], metadata={}, enabled=True, user_id=None, expires_at=None, revoked_at=None, previous_valid_until=None)
        new.update(budget_usd=None, budget_period="total", spent_usd=0.0, reserved_usd=0.0)
        new.update(fields)
        new.update(created_at=now, updated_at=now)
        await db.insert_key(engine, new)
        return 201, {**_public(new), "key": secret}
    if not parts and method == "GET":
        limit, offset = _page(scope)
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
        fields = _fields(await _body(scope, receive), creating=False)
        if fields.get("enabled") and current["revoked_at"] is not None:
            raise InvalidRequest("a revoked key cannot be enabled again; create a new key", param="enabled")
        row = await db.update_key(engine, key_id, {**fields, "updated_at": now})
        await _announce(gw, "updated", current["key_hash"], current["previous_hash"])
        return 200, _public(row or current)
    if action == "" and method == "DELETE":
        await db.delete_key(engine, key_id)
        await _announce(gw, "deleted", current["key_hash"], current["previous_hash"])
        return 200, {"id": key_id, "deleted": True}
    if action == "revoke" and method == "POST":
        row = await db.update_key(engine, key_id, {"enabled": False, "revoked_at": now, "updated_at": now, "previous_valid_until": None})
        await _announce(gw, "revoked", current["key_hash"], current["previous_hash"])
        return 200, _public(row or current)
    if action == "rotate" and method == "POST":
        grace = (await _body(scope, receive)).get("grace_seconds", 0)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 30 * 86400:
            raise InvalidRequest("'grace_seconds' must be a number of seconds from 0 to 2592000", param="grace_seconds")
        secret = new_secret()
        values = {"key_hash": hash_key(secret), "prefix": display_prefix(secret), "updated_at": now}
        if grace:  # the old secret keeps working until then
            values.update(previous_hash=current["key_hash"], previous_valid_until=now + grace)
        else:
            values.update(previous_hash=None, previous_valid_until=None)
        row = await db.update_key(engine, key_id, values)
        await _announce(gw, "rotated", current["key_hash"], current["previous_hash"])
        return 200, {**_public(row or current), "key": secret}
    raise RouteNotFound(f"unknown URL {method} {scope['path']!r}")


def _page(scope: Scope) -> tuple[int, int]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        limit = int(query.get("limit", ["50"])[0])
        offset = int(query.get("offset", ["0"])[0])
    except ValueError:
        raise InvalidRequest("'limit' and 'offset' must be integers") from None
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"'limit' must be 1..{MAX_PAGE} and 'offset' >= 0", param="limit" if not 1 <= limit <= MAX_PAGE else "offset")
    return limit, offset
