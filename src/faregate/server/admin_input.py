"""What the admin API accepts and how it answers: JSON bodies, bounded pages, one checker per
settable field, and the one boundary every database-backed admin route runs in (``answer``).

Each checker returns the value to store or raises InvalidRequest naming the field and saying
what it must be. Both `/admin/keys` and `/admin/teams` use them, so a field means the same thing
on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.errors import FaregateError, InvalidRequest, KeyStoreUnavailable
from faregate.gateway import Gateway
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error

MAX_PAGE = 100
MAX_OFFSET = 10_000_000  # far beyond any real page, far below the databases' 64-bit OFFSET
PERIODS = ("daily", "weekly", "monthly", "total")
MAX_BODY = 64 * 1024
METADATA_DEPTH = 32  # a key or team is shown inside a list page: it must stay far from orjson's 254-level write limit
Action = Callable[[AsyncEngine], Awaitable[tuple[int, dict[str, Any]]]]


async def answer(gw: Gateway, scope: Scope, send: Send, action: Action) -> None:
    """Run one admin action: master key only, a started database, and a database failure answered
    503 ``key_store_unavailable`` (never a traceback, never a 401); the action's (status, body) as JSON."""
    try:
        authenticate_admin(gw.keyring.current, scope)
        if gw.engine is None:
            raise KeyStoreUnavailable("the state database is not started")
        status, body = await action(gw.engine)
    except (SQLAlchemyError, OSError) as exc:
        await send_error(send, KeyStoreUnavailable(f"the state database failed ({exc.__class__.__name__}); retry shortly"))
        return
    except FaregateError as err:
        await send_error(send, err)
        return
    await send_bytes(send, status, orjson.dumps(body), b"application/json")


async def body(scope: Scope, receive: Receive) -> dict[str, Any]:
    raw = await read_body(scope, receive, MAX_BODY)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return data


def query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (the last value of each)."""
    return {name: values[-1] for name, values in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def page(scope: Scope, max_page: int = MAX_PAGE) -> tuple[int, int]:
    params = query(scope)
    return integer(params, "limit", 50, 1, max_page), integer(params, "offset", 0, 0, MAX_OFFSET)


def integer(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter in ``low..high`` (``default`` when absent); anything else,
    including a number too large for the database, is refused naming the parameter and its range."""
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:  # not a number, or more digits than Python converts
        value = low - 1
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}", param=name)
    return value


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
