"""How a key or team change answers: only once every live worker of every instance has applied it.

The change is stored first and this worker's cache updated; then its events go on the control
bus and the answer waits (``?timeout=`` seconds, default 10) until every live worker has dropped
the key from its cache, as `/admin/reload` waits for the new generation. If some worker has not
confirmed in time, the answer is 503 ``change_unconfirmed`` naming the laggards, with the stored
result in the body (and ``confirmed: false``): the change is committed and not undone; a laggard
applies it when it catches up, at the latest as its cached entries expire. Repeating the call is
safe (except a rotation, which would rotate again: its new secret is in this answer).
"""

from __future__ import annotations

import math
from typing import Any

from faregate.control import Confirmation
from faregate.errors import InvalidRequest
from faregate.server.admin_input import query
from faregate.server.http import Scope

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 120.0


def timeout(scope: Scope) -> float:
    """The ``timeout`` query parameter: how long to wait for every worker's acknowledgement."""
    raw = query(scope).get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:
        raise InvalidRequest(f"'timeout' must be a number of seconds, 0 < timeout <= {MAX_TIMEOUT:g}", param="timeout")
    return value


def answer(status: int, body: dict[str, Any], outcome: Confirmation) -> tuple[int, dict[str, Any]]:
    """The route's answer with how far the change has reached; 503 if not every worker confirmed it."""
    body = {**body, "confirmed": outcome.ok, "laggards": outcome.laggards}
    if outcome.ok:
        return status, body
    body["error"] = {
        "message": "the change is stored, but not every worker has confirmed it yet (they apply it when they catch up, "
        "at the latest as their cached entries expire): " + "; ".join(outcome.laggards),
        "type": "service_unavailable",
        "param": None,
        "code": "change_unconfirmed",
    }
    return 503, body
