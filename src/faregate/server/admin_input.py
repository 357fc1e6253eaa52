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
from faregate.keyadmin import BUDGET_AND_LIMITS as BUDGET_AND_LIMITS  # the checkers live below the server: the dashboard uses them too
from faregate.keyadmin import PERIODS as PERIODS
from faregate.keyadmin import Checkers as Checkers
from faregate.keyadmin import check_budget as check_budget
from faregate.keyadmin import check_enabled as check_enabled
from faregate.keyadmin import check_expires_at as check_expires_at
from faregate.keyadmin import check_limit as check_limit
from faregate.keyadmin import check_metadata as check_metadata
from faregate.keyadmin import check_models as check_models
from faregate.keyadmin import check_name as check_name
from faregate.keyadmin import check_owner as check_owner
from faregate.keyadmin import check_period as check_period
from faregate.keyadmin import fields as fields
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error

MAX_PAGE = 100
MAX_OFFSET = 10_000_000  # far beyond any real page, far below the databases' 64-bit OFFSET
MAX_BODY = 64 * 1024
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
