"""Admin routes (master key): reload, cache purge, workers, credentials."""

from __future__ import annotations

import time
from typing import Any

import orjson

from faregate import fleet
from faregate.control import ReloadOutcome
from faregate.errors import ConfigError, FaregateError, InvalidRequest
from faregate.gateway import Gateway
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error

JSON = b"application/json"
DEFAULT_ACK_TIMEOUT = 10.0
MAX_ACK_TIMEOUT = 120.0


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send_bytes(send, status, orjson.dumps(body), JSON)


async def _timeout(scope: Scope, receive: Receive) -> float:
    body = await read_body(scope, receive, 64 * 1024)
    if not body.strip():
        return DEFAULT_ACK_TIMEOUT
    try:
        data = orjson.loads(body)
        value = data.get("timeout", DEFAULT_ACK_TIMEOUT) if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= MAX_ACK_TIMEOUT:
        raise InvalidRequest(f'body must be empty or {{"timeout": seconds}} with 0 < seconds <= {MAX_ACK_TIMEOUT:g}', param="timeout")
    return float(value)


def _outcome_body(outcome: ReloadOutcome) -> dict[str, Any]:
    now = time.time()
    return {
        "ok": outcome.ok,
        "generation": outcome.generation,
        "workers": [fleet.worker_row(w, now, True, done) for w, done in outcome.workers],
        "laggards": outcome.laggards,
        "warnings": [str(p) for p in outcome.warnings],
        "bus": outcome.bus,
    }


def _coordinated(purge: bool) -> Any:
    async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            authenticate_admin(gw.keyring.current, scope)
            timeout = await _timeout(scope, receive)
            purged = await gw.cache.purge() if purge else None  # the response cache: this worker's, or faregate's keys in Redis
            outcome = await gw.control.reload_all(timeout, purge=purge)
        except ConfigError as exc:
            errors = [str(p) for p in exc.problems if p.severity == "error"]
            message = f"the new config is invalid; generation {gw.keyring.current.generation.id} keeps serving: " + "; ".join(errors)
            body = {
                "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_config"},
                "problems": [str(p) for p in exc.problems],
            }
            await _send_json(send, 422, body)
            return
        except FaregateError as err:
            await send_error(send, err)
            return
        body = _outcome_body(outcome)
        if purge:
            body["response_cache"] = {"purged": purged} if purged is not None else {"error": "redis unreachable: not purged"}
        if not outcome.ok:
            body["error"] = {
                "message": "not every worker confirmed the new generation: " + "; ".join(outcome.laggards),
                "type": "service_unavailable",
                "param": None,
                "code": "reload_incomplete",
            }
        await _send_json(send, 200 if outcome.ok else 503, body)

    return handle


reload = _coordinated(purge=False)
purge = _coordinated(purge=True)


async def _refused(gw: Gateway, scope: Scope, send: Send) -> bool:
    """Check the master key; on failure send the error and return True."""
    try:
        authenticate_admin(gw.keyring.current, scope)
    except FaregateError as err:
        await send_error(send, err)
        return True
    return False


async def workers(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    if await _refused(gw, scope, send):
        return
    rows, bus = await fleet.worker_rows(gw)
    body = {"this_worker": gw.control.worker_id, "generation": gw.keyring.current.generation.id, "bus": bus, "workers": rows}
    await _send_json(send, 200, body)


async def credentials(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every credential of the current generation, with its state here and its traffic summed over
    every live worker (``fleet.credential_rows``). Never the secret."""
    if await _refused(gw, scope, send):
        return
    rows, counted = await fleet.credential_rows(gw)
    await _send_json(send, 200, {"generation": gw.control.info().generation, "workers_counted": counted, "credentials": rows})
