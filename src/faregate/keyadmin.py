"""Virtual keys' settable fields and the changes made to keys, below the server so that the admin
API (``faregate.server.admin_keys``/``admin_teams``) and the dashboard share one meaning of each
field and one way to create, change, rotate and revoke a key.

Each checker returns the value to store or raises InvalidRequest naming the field and saying what
it must be (``fields`` refuses an unknown or computed field by name: never ignored). A key's
secret is returned by ``create_key`` and ``rotate_key`` only; every change drops the key from
this worker's cache and is announced on the bus, and the caller learns how far it reached (a
``Confirmation``: every live worker has dropped it, or the laggards).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.config.load import did_you_mean
from faregate.control import Confirmation
from faregate.credentials.virtual import display_prefix, hash_key, new_secret
from faregate.errors import InvalidRequest
from faregate.gateway import Gateway
from faregate.store import keys as db
from faregate.store import teams as teams_db
from faregate.store.base import Event, TeamChanged, VirtualKeyChanged

PERIODS = ("daily", "weekly", "monthly", "total")
METADATA_DEPTH = 32  # a key or team is shown inside a list page: it must stay far from orjson's 254-level write limit
MAX_GRACE = 30 * 86400


def _text(name: str, value: Any, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or any(c in value for c in "\r\n\0"):
        extra = " or null" if nullable else ""
        raise InvalidRequest(f"'{name}' must be a non-empty string of at most 200 characters without line breaks{extra}", param=name)
    return value.strip()


def _number(name: str, value: Any, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def check_name(value: Any) -> Any:
    return _text("name", value, nullable=False)


def check_owner(name: str) -> Callable[[Any], Any]:
    return lambda value: _text(name, value, nullable=True)


def check_models(value: Any) -> Any:
    if not isinstance(value, list) or len(value) > 500 or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in value):
        raise InvalidRequest("'models' must be an array of at most 500 model names or globs", param="models")
    return value


def check_expires_at(value: Any) -> Any:
    if value is not None and not _number("expires_at", value, 1, 1e11):
        raise InvalidRequest("'expires_at' must be a Unix time in seconds or null", param="expires_at")
    return value


def check_metadata(value: Any) -> Any:
    try:
        size = len(orjson.dumps(value)) if isinstance(value, dict) else None
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        size = None
    if size is None or size > 16_384 or _deeper(value, METADATA_DEPTH):
        raise InvalidRequest(
            f"'metadata' must be an object of at most 16 KiB, nested at most {METADATA_DEPTH} levels deep", param="metadata"
        )
    return value


def _deeper(value: Any, levels: int) -> bool:
    """Whether the arrays and objects in ``value`` nest more than ``levels`` deep (``value`` is level 1)."""
    if not isinstance(value, dict | list):
        return False
    if levels == 0:
        return True
    return any(_deeper(child, levels - 1) for child in (value.values() if isinstance(value, dict) else value))


def check_enabled(value: Any) -> Any:
    if not isinstance(value, bool):
        raise InvalidRequest("'enabled' must be a boolean", param="enabled")
    return value


def check_budget(value: Any) -> Any:
    if value is not None and not _number("budget_usd", value, 0, 1e9):
        raise InvalidRequest("'budget_usd' must be a number of dollars from 0 to 1e9, or null for no budget", param="budget_usd")
    return value


def check_period(value: Any) -> Any:
    if value not in PERIODS:
        raise InvalidRequest(f"'budget_period' must be one of {', '.join(PERIODS)}", param="budget_period")
    return value


def check_limit(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000_000):
            raise InvalidRequest(f"'{name}' must be a whole number from 1 to 1e9, or null for no limit", param=name)
        return value

    return check


Checkers = dict[str, Callable[[Any], Any]]
BUDGET_AND_LIMITS: Checkers = {  # the same fields, meaning the same, on keys and on teams
    "budget_usd": check_budget,
    "budget_period": check_period,
    "rpm": check_limit("rpm"),
    "tpm": check_limit("tpm"),
    "max_parallel": check_limit("max_parallel"),
}


def fields(given: dict[str, Any], settable: Checkers, refused: dict[str, str], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The checked values of ``given``; a field in ``refused`` is refused with its reason, any
    other unknown field by name (never ignored: that is how mass assignment slips through)."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name in refused:
            raise InvalidRequest(f"'{name}' cannot be set: {refused[name]}", param=name)
        check = settable.get(name)
        if check is None:
            raise InvalidRequest(f"'{name}' cannot be set; settable fields: {', '.join(sorted(settable))}", param=name)
        out[name] = check(value)
    for name in required:
        if out.get(name) is None:
            raise InvalidRequest(f"'{name}' is required", param=name)
    return out


KEY_SETTABLE: Checkers = {
    "name": check_name,
    "models": check_models,
    "expires_at": check_expires_at,
    "metadata": check_metadata,
    "enabled": check_enabled,
    **BUDGET_AND_LIMITS,
}
KEY_OWNER: Checkers = {"user_id": check_owner("user_id"), "team_id": check_owner("team_id")}
KEY_COMPUTED = {
    name: "it is kept by faregate"
    for name in ("id", "key", "key_hash", "prefix", "spent_usd", "reserved_usd", "period_start", "created_at", "updated_at", "revoked_at")
}
OWNER_FIXED = {name: "a key's owner is fixed at creation; create a new key for another owner" for name in KEY_OWNER}


def public_key(row: dict[str, Any]) -> dict[str, Any]:
    """A key as the API and the dashboard show it: never the hash, never the secret."""
    shown = ("id", "prefix", "name", "user_id", "models", "expires_at", "metadata", "enabled", "created_at", "updated_at", "revoked_at")
    out = {name: row[name] for name in shown}
    out["previous_secret_valid_until"] = row["previous_valid_until"]
    for name in ("budget_usd", "budget_period", "team_id", "rpm", "tpm", "max_parallel"):
        out[name] = row.get(name)
    out["spent_usd"], out["reserved_usd"] = row.get("spent_usd", 0.0), row.get("reserved_usd", 0.0)
    return out


def key_warnings(gw: Gateway, given: dict[str, Any], now: float) -> list[str]:
    """What is allowed but almost surely a mistake in a key's new fields: a ``models`` pattern that
    matches no configured public model (the key cannot use it), an ``expires_at`` already past."""
    configured = gw.keyring.current.generation.models
    out = [
        f"'models': {pattern!r} matches no configured model{did_you_mean(pattern, configured)}; the key cannot use it until one is configured"
        for pattern in given.get("models") or []
        if not any(fnmatch.fnmatchcase(name, pattern) for name in configured)
    ]
    if given.get("expires_at") is not None and given["expires_at"] <= now:
        out.append(f"'expires_at' ({utc(given['expires_at'])}) is in the past: the key is refused from the start")
    return out


def utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ended_grace(current: dict[str, Any], grace: float, now: float) -> list[str]:
    """A key keeps one old secret: rotating while an earlier rotation's grace runs ends that grace now."""
    until = current["previous_valid_until"]
    if not current["previous_hash"] or until is None or until <= now:
        return []
    replaced = f"the secret replaced now works {grace:g} s more" if grace else "with no grace, the secret replaced now stops at once too"
    return [
        f"this rotation ends the grace of the secret replaced by the previous rotation: it stops working now, not at {utc(until)} "
        f"(a key keeps one old secret; {replaced})"
    ]


async def announce(gw: Gateway, wait: float, action: str, *hashes: str | None) -> Confirmation:
    """Drop the key here, tell every worker, wait until every live one has dropped it too."""
    events: list[Event] = []
    for key_hash in hashes:
        if not key_hash:
            continue
        if gw.keys is not None:
            gw.keys.invalidate(key_hash)
        events.append(VirtualKeyChanged(key_hash=key_hash, action=action, origin=gw.control.worker_id))  # type: ignore[arg-type]
    return await gw.control.announce(events, wait)


async def create_key(gw: Gateway, engine: AsyncEngine, given: dict[str, Any], now: float) -> dict[str, Any]:
    """A new key from checked ``given`` fields: the shown key with its secret (``key``, the only
    time it is returned) and ``warnings``."""
    checked = fields(given, {**KEY_SETTABLE, **KEY_OWNER}, KEY_COMPUTED, required=("name",))
    if checked.get("team_id") is not None and await teams_db.get_team(engine, checked["team_id"]) is None:
        raise InvalidRequest(f"'team_id': no team with id '{checked['team_id']}'", param="team_id", code="team_not_found")
    secret = new_secret()
    new: dict[str, Any] = {"id": "key_" + secrets.token_hex(8), "key_hash": hash_key(secret), "prefix": display_prefix(secret)}
    new.update(models=[], metadata={}, enabled=True, user_id=None, expires_at=None, revoked_at=None, previous_valid_until=None)
    new.update(budget_usd=None, budget_period="total", spent_usd=0.0, reserved_usd=0.0, team_id=None, rpm=None, tpm=None, max_parallel=None)
    new.update(checked)
    new.update(created_at=now, updated_at=now)
    await db.insert_key(engine, new)
    return {**public_key(new), "key": secret, "warnings": key_warnings(gw, checked, now)}


async def update_key(
    gw: Gateway, engine: AsyncEngine, current: dict[str, Any], given: dict[str, Any], wait: float, now: float
) -> tuple[dict[str, Any], Confirmation]:
    checked = fields(given, KEY_SETTABLE, {**KEY_COMPUTED, **OWNER_FIXED})
    if checked.get("enabled") and current["revoked_at"] is not None:
        raise InvalidRequest("a revoked key cannot be enabled again; create a new key", param="enabled")
    row = await db.update_key(engine, current["id"], {**checked, "updated_at": now})
    done = await announce(gw, wait, "updated", current["key_hash"], current["previous_hash"])
    return {**public_key(row or current), "warnings": key_warnings(gw, checked, now)}, done


async def revoke_key(
    gw: Gateway, engine: AsyncEngine, current: dict[str, Any], wait: float, now: float
) -> tuple[dict[str, Any], Confirmation]:
    row = await db.update_key(engine, current["id"], {"enabled": False, "revoked_at": now, "updated_at": now, "previous_valid_until": None})
    done = await announce(gw, wait, "revoked", current["key_hash"], current["previous_hash"])
    return public_key(row or current), done


def check_grace(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_GRACE:
        raise InvalidRequest(f"'grace_seconds' must be a number of seconds from 0 to {MAX_GRACE}", param="grace_seconds")
    return float(value)


async def rotate_key(
    gw: Gateway, engine: AsyncEngine, current: dict[str, Any], grace: float, wait: float, now: float
) -> tuple[dict[str, Any], Confirmation]:
    """A new secret (in ``key``: the only time it is returned); the old one works ``grace`` seconds more."""
    secret = new_secret()
    values = {"key_hash": hash_key(secret), "prefix": display_prefix(secret), "updated_at": now}
    if grace:  # the old secret keeps working until then
        values.update(previous_hash=current["key_hash"], previous_valid_until=now + grace)
    else:
        values.update(previous_hash=None, previous_valid_until=None)
    row = await db.update_key(engine, current["id"], values)
    done = await announce(gw, wait, "rotated", current["key_hash"], current["previous_hash"])
    return {**public_key(row or current), "key": secret, "warnings": _ended_grace(current, grace, now)}, done


TEAM_SETTABLE: Checkers = {"name": check_name, "metadata": check_metadata, "enabled": check_enabled, **BUDGET_AND_LIMITS}
TEAM_COMPUTED = {
    name: "it is kept by faregate" for name in ("id", "keys", "spent_usd", "reserved_usd", "period_start", "created_at", "updated_at")
}


async def announce_team(gw: Gateway, wait: float, team_id: str, action: str) -> Confirmation:
    """Drop the team's keys here, tell every worker, wait until every live one has dropped them too."""
    if gw.keys is not None:
        gw.keys.invalidate_team(team_id)
    return await gw.control.announce([TeamChanged(team_id=team_id, action=action, origin=gw.control.worker_id)], wait)  # type: ignore[arg-type]


async def create_team(engine: AsyncEngine, given: dict[str, Any], now: float) -> dict[str, Any]:
    """A new team from checked ``given`` fields (store.keys.Conflict when the name is taken)."""
    checked = fields(given, TEAM_SETTABLE, TEAM_COMPUTED, required=("name",))
    new: dict[str, Any] = {"id": "team_" + secrets.token_hex(8), "metadata": {}, "enabled": True, "budget_usd": None}
    new.update(budget_period="total", spent_usd=0.0, reserved_usd=0.0, period_start=None, rpm=None, tpm=None, max_parallel=None)
    new.update(checked)
    new.update(created_at=now, updated_at=now)
    await teams_db.insert_team(engine, new)
    return new


async def update_team(gw: Gateway, engine: AsyncEngine, team_id: str, given: dict[str, Any], wait: float, now: float) -> Confirmation:
    """Store the checked ``given`` fields (store.keys.Conflict on a taken name) and announce the change."""
    checked = fields(given, TEAM_SETTABLE, TEAM_COMPUTED)
    await teams_db.update_team(engine, team_id, {**checked, "updated_at": now})
    return await announce_team(gw, wait, team_id, "updated")
