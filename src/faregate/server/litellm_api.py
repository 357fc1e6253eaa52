"""LiteLLM-compatible management routes, so scripts written for LiteLLM Proxy keep working.

A thin layer over faregate's own admin API: each route translates LiteLLM's field names into
faregate's and calls the same functions as `/admin/keys` (``server.admin_keys``) and
`/admin/spend/logs` (``server.admin_spend``), so checks, bus confirmation and secrets handling
are the same. Master key only (liveliness and readiness: no key, as in LiteLLM). What LiteLLM
calls a key's ``token`` is faregate's key id (``key_…``): faregate never shows a key's hash. A
field faregate cannot honour is refused by name (a restriction silently ignored would be a
hole); only cosmetic ones are accepted and ignored (``IGNORED``). The README's "LiteLLM
compatibility" section lists every field.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate import keyadmin
from faregate.credentials.virtual import PREFIX, hash_key
from faregate.errors import InvalidRequest, RouteNotFound
from faregate.gateway import Gateway
from faregate.server import admin_changes as changes
from faregate.server import admin_input as inputs
from faregate.server import admin_spend
from faregate.server.http import Receive, Scope, Send
from faregate.store import keys as db

RENAMED = {  # LiteLLM's name -> faregate's, same meaning
    "key_alias": "name",
    "models": "models",
    "metadata": "metadata",
    "max_budget": "budget_usd",
    "tpm_limit": "tpm",
    "rpm_limit": "rpm",
    "max_parallel_requests": "max_parallel",
    "team_id": "team_id",
    "user_id": "user_id",
}
SPECIAL = ("duration", "budget_duration", "blocked")  # converted below
IGNORED = frozenset({"send_invite_email", "tags", "key_type", "soft_budget", "allowed_cache_controls", "key_name", "budget_id", "spend"})
REFUSED_UNLESS_EMPTY: tuple[str, ...] = (
    "aliases",
    "config",
    "permissions",
    "model_max_budget",
    "model_rpm_limit",
    "model_tpm_limit",
    "guardrails",
)
REFUSED_UNLESS_EMPTY += ("allowed_routes", "object_permission", "enforced_params", "organization_id")
PERIODS = {"1d": "daily", "24h": "daily", "7d": "weekly", "1w": "weekly", "30d": "monthly", "1mo": "monthly"}
PERIOD_BACK = {"daily": "1d", "weekly": "7d", "monthly": "30d", "total": None}
DURATION = re.compile(r"^(\d+)(s|m|h|d|w|mo)$")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "mo": 30 * 86_400}
ALL_MODELS = "all-proxy-models"
CALL_TYPES = {"chat": "acompletion", "completions": "atext_completion", "embeddings": "aembedding", "responses": "aresponses"}
CALL_TYPES |= {"messages": "anthropic_messages", "moderations": "amoderation", "images_generations": "aimage_generation"}
SPEND_PARAMS = frozenset({"api_key", "request_id", "start_date", "end_date", "summarize", "limit", "offset"})


def seconds(name: str, value: Any) -> float:
    """LiteLLM's duration strings: ``30s``, ``30m``, ``30h``, ``30d``, ``2w``, ``1mo``."""
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise InvalidRequest(f"'{name}' must be a duration such as 30s, 30m, 24h, 30d, 2w or 1mo, or null", param=name)
    return float(int(match.group(1)) * UNIT[match.group(2)])


def fields(body: dict[str, Any], now: float, *, allowed: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A LiteLLM key body -> faregate's settable fields (checked by admin_keys as ever)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in allowed or name in IGNORED:
            continue
        if name in RENAMED:
            out[RENAMED[name]] = value
        elif name == "duration":
            out["expires_at"] = None if value is None else now + seconds(name, value)
        elif name == "budget_duration":
            if value is not None and value not in PERIODS:
                raise InvalidRequest(
                    f"'budget_duration' must be one of {', '.join(PERIODS)} (faregate's daily, weekly and monthly periods) or null",
                    param=name,
                )
            out["budget_period"] = PERIODS[value] if value is not None else "total"
        elif name == "blocked":
            if not isinstance(value, bool):
                raise InvalidRequest("'blocked' must be a boolean", param=name)
            out["enabled"] = not value
        elif name in REFUSED_UNLESS_EMPTY:
            if value not in (None, {}, []):
                raise InvalidRequest(
                    f"'{name}' is not supported by faregate's keys; leave it out (see the README's LiteLLM section)", param=name
                )
        elif name == "key":
            raise InvalidRequest("'key': faregate generates every secret itself; leave it out", param=name)
        else:
            raise InvalidRequest(f"'{name}' is not a key field faregate knows; see the README's LiteLLM section", param=name)
    if out.get("models") is not None and ALL_MODELS in out["models"]:
        out["models"] = []  # no restriction, as LiteLLM's special name means
    return out


BACK = {ours: theirs for theirs, ours in RENAMED.items() if ours != theirs} | {"expires_at": "duration", "budget_period": "budget_duration"}


def _theirs(err: InvalidRequest) -> InvalidRequest:
    """An error from faregate's checks, named in the LiteLLM field the client sent."""
    if err.param in BACK:
        err.message = f"'{BACK[err.param]}' (faregate's '{err.param}'): {err.message}"
        err.param = BACK[err.param]
    return err


def _iso(seconds_: float | None) -> str | None:
    return dt.datetime.fromtimestamp(seconds_, dt.UTC).isoformat().replace("+00:00", "Z") if seconds_ is not None else None


def view(key: dict[str, Any]) -> dict[str, Any]:
    """faregate's public view of a key (admin_keys.public) in LiteLLM's names."""
    return {
        "token": key["id"],
        "key_alias": key["name"],
        "key_name": key["prefix"],
        "models": key["models"],
        "max_budget": key["budget_usd"],
        "budget_duration": PERIOD_BACK.get(key["budget_period"]),
        "spend": key["spent_usd"],
        "tpm_limit": key["tpm"],
        "rpm_limit": key["rpm"],
        "max_parallel_requests": key["max_parallel"],
        "metadata": key["metadata"],
        "team_id": key["team_id"],
        "user_id": key["user_id"],
        "expires": _iso(key["expires_at"]),
        "blocked": not key["enabled"],
        "created_at": _iso(key["created_at"]),
        "updated_at": _iso(key["updated_at"]),
    }


def _changed(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An admin_keys answer in LiteLLM's names, with faregate's confirmation (and its 503 error) kept."""
    extra: dict[str, Any] = {name: body[name] for name in ("key", "warnings", "confirmed", "laggards", "error") if name in body}
    return status, {**view(body), **extra}


async def find(engine: AsyncEngine, ref: Any, param: str = "key") -> dict[str, Any]:
    """A key named by its secret (``sk-fg-…``) or its token (faregate's id)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest(f"'{param}' is required: a key's secret or its token", param=param)
    row = None
    if ref.startswith(PREFIX):
        found = await db.by_hash(engine, hash_key(ref), time.time())
        row = await db.get_key(engine, found["id"]) if found is not None else None
    elif len(ref) <= 40:
        row = await db.get_key(engine, ref)
    if row is None:
        raise RouteNotFound("no such virtual key (give its secret or its token)", code="key_not_found")
    return row


async def generate(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        now = time.time()
        given = fields(await inputs.body(scope, receive), now)
        given.setdefault("name", "litellm-key")  # LiteLLM's alias is optional; faregate's name is not
        try:
            created = await keyadmin.create_key(gw, engine, given, now)
        except InvalidRequest as err:
            raise _theirs(err) from None
        return 200, {**view(created), "key": created["key"], "warnings": created["warnings"]}

    await inputs.answer(gw, scope, send, run)


async def info(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        row = await find(engine, inputs.query(scope).get("key"))
        return 200, {"key": row["id"], "info": view(keyadmin.public_key(row))}

    await inputs.answer(gw, scope, send, run)


async def update(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        wait, now = changes.timeout(scope), time.time()
        body = await inputs.body(scope, receive)
        current = await find(engine, body.get("key"))
        try:
            changed, done = await keyadmin.update_key(gw, engine, current, fields(body, now, allowed=frozenset({"key"})), wait, now)
        except InvalidRequest as err:
            raise _theirs(err) from None
        return _changed(*changes.answer(200, changed, done))

    await inputs.answer(gw, scope, send, run)


async def delete(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        wait = changes.timeout(scope)
        body = await inputs.body(scope, receive)
        if body.get("key_aliases"):
            raise InvalidRequest("'key_aliases': faregate deletes keys by secret or token; give 'keys'", param="key_aliases")
        refs = body.get("keys")
        if not isinstance(refs, list) or not refs or len(refs) > 100:
            raise InvalidRequest("'keys' must be a list of 1 to 100 keys (secrets or tokens)", param="keys")
        rows = [await find(engine, ref, "keys") for ref in refs]  # every one exists before any is deleted
        deleted: list[str] = []
        status, last = 200, dict[str, Any]()
        for row in rows:
            await db.delete_key(engine, row["id"])
            done = await keyadmin.announce(gw, wait, "deleted", row["key_hash"], row["previous_hash"])
            status, last = changes.answer(200, {}, done)
            deleted.append(row["id"])
            if status != 200:
                break
        out = {"deleted_keys": deleted, "confirmed": last.get("confirmed", True), "laggards": last.get("laggards", [])}
        return status, {**out, **({"error": last["error"]} if "error" in last else {})}

    await inputs.answer(gw, scope, send, run)


async def regenerate(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /key/regenerate`` (``{"key": ...}``) and ``POST /key/{key}/regenerate``."""
    path = scope["path"]
    named = None
    if path != "/key/regenerate":
        named = path.removeprefix("/key/").removesuffix("/regenerate")
        if not path.endswith("/regenerate") or not named or "/" in named or scope["method"] != "POST":
            await inputs.answer(gw, scope, send, _unknown(scope))
            return

    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        wait, now = changes.timeout(scope), time.time()
        body = await inputs.body(scope, receive)
        current = await find(engine, named or body.get("key"))
        grace = body.get("grace_period")
        grace_s = 0.0 if grace is None else seconds("grace_period", grace)
        updates = fields(body, now, allowed=frozenset({"key", "grace_period", "new_master_key"}))
        if body.get("new_master_key") is not None:
            raise InvalidRequest("'new_master_key': faregate's master key is set in its config", param="new_master_key")
        if updates:
            try:
                changed, done = await keyadmin.update_key(gw, engine, current, updates, wait, now)
            except InvalidRequest as err:
                raise _theirs(err) from None
            if not done.ok:
                return _changed(*changes.answer(200, changed, done))
            current = await db.get_key(engine, current["id"]) or current
        rotated, done = await keyadmin.rotate_key(gw, engine, current, keyadmin.check_grace(grace_s), wait, now)
        return _changed(*changes.answer(200, rotated, done))

    await inputs.answer(gw, scope, send, run)


def _unknown(scope: Scope) -> inputs.Action:
    async def run(engine: AsyncEngine) -> tuple[int, dict[str, Any]]:
        raise RouteNotFound(
            f"unknown URL {scope['method']} /key/... (not echoed: it may hold a key); LiteLLM's key routes are listed in the README"
        )

    return run


async def spend_logs(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /spend/logs``: the spend log's rows in LiteLLM's shape (a JSON list, newest first)."""

    async def run(engine: AsyncEngine) -> tuple[int, Any]:
        given = admin_spend.checked_query(scope, SPEND_PARAMS)
        query: dict[str, str] = {}
        if "api_key" in given:
            query["key_id"] = (await find(engine, given["api_key"], "api_key"))["id"]
        for theirs, ours in (
            ("request_id", "request_id"),
            ("start_date", "start"),
            ("end_date", "end"),
            ("limit", "limit"),
            ("offset", "offset"),
        ):
            if theirs in given:
                query[ours] = given[theirs]
        if "start_date" in given and "end_date" in given and given.get("summarize", "true") != "false":
            raise InvalidRequest(
                "with start_date and end_date LiteLLM sums spend per day: send summarize=false for the rows, or use "
                "GET /admin/spend?group_by=day,model&start=...&end=... for the sums",
                param="summarize",
            )
        rows, _, _, _ = await admin_spend.log_rows(engine, {"limit": "100", **query}, admin_spend.MAX_GROUPS)
        return 200, [spend_row(r) for r in rows]

    await inputs.answer(gw, scope, send, run)


def spend_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    end = row["ts"]
    start = end - (row["latency_ms"] or 0.0) / 1000
    status = row["status"]
    return {
        "request_id": row["request_id"],
        "call_type": CALL_TYPES.get(row["endpoint"], row["endpoint"]),
        "api_key": row["key_id"] or "",
        "spend": row["cost_usd"] or 0.0,
        "total_tokens": (prompt or 0) + (completion or 0),
        "prompt_tokens": prompt or 0,
        "completion_tokens": completion or 0,
        "startTime": _iso(start),
        "endTime": _iso(end),
        "completionStartTime": _iso(start + row["ttfb_ms"] / 1000) if row["ttfb_ms"] is not None else None,
        "model": row["upstream_model"] or "",
        "model_group": row["model"] or "",
        "custom_llm_provider": row["provider"] or "",
        "user": row["user_id"] or "",
        "team_id": row["team_id"],
        "status": "success" if 200 <= status < 400 else "failure",
        "cache_hit": "False",
        "metadata": {
            "status_code": status,
            "error_code": row["error_code"],
            "deployment": row["deployment"],
            "credential": row["credential"],
            "cost_known": row["cost_usd"] is not None,
            "fallback_from": row["fallback_from"],
            "attempts": row["attempts"],
        },
    }
