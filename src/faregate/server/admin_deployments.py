"""Admin routes (master key): every deployment's state across the live workers, and a probe of one.

``GET /admin/deployments``: one row per (public model, deployment) of this worker's generation,
with its state on every live worker (this one now, the others as their last heartbeat says,
``WorkerInfo.deployments``), the worst of them, and its traffic summed over them.
``POST /admin/deployments/{label}/probe``: probe it now (``faregate.probe``) with the credential
traffic would use; a verdict on its upstream model (found, or not found) applies on every worker
over the control bus (``store.base.DeploymentProbed``), and the answer waits until each has it.
"""

from __future__ import annotations

from typing import Any

import orjson

from faregate import fleet
from faregate import probe as probes
from faregate.errors import FaregateError, InvalidRequest, MethodNotAllowed, RouteNotFound
from faregate.gateway import Gateway
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error

JSON = b"application/json"
PREFIX = "/admin/deployments/"
PROBE = "/probe"
MAX_PROBE_TIMEOUT = 60.0


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send_bytes(send, status, orjson.dumps(body), JSON)


async def deployments(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        authenticate_admin(gw.keyring.current, scope)
    except FaregateError as err:
        await send_error(send, err)
        return
    gen = gw.keyring.current.generation
    workers, bus = await fleet.workers(gw)
    body = {"generation": gen.id, "workers_counted": len(workers), "bus": bus, "deployments": fleet.deployment_rows(gen, workers)}
    await _send_json(send, 200, body)


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``/admin/deployments/{label}/probe`` (the label URL-encoded: it may hold "/" and "#")."""
    try:
        authenticate_admin(gw.keyring.current, scope)  # before anything is said about the path
        label = _label(scope["path"])
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use POST")
        snap = gw.keyring.current
        dep = next((d for route in snap.generation.models.values() for d in route.deployments if d.label == label), None)
        if dep is None:
            raise RouteNotFound(
                f"no deployment {label!r} in generation {snap.generation.id}; GET /admin/deployments lists them",
                code="deployment_not_found",
            )
        timeout = await _timeout(scope, receive, min(dep.provider.timeout, probes.DEFAULT_TIMEOUT))
    except FaregateError as err:
        await send_error(send, err, [(b"allow", b"POST")] if isinstance(err, MethodNotAllowed) else [])
        return
    body = await fleet.probe(gw, snap, dep, timeout)
    await _send_json(send, 200, body)


def _label(path: str) -> str:
    label = path.removeprefix(PREFIX)
    if not label.endswith(PROBE) or len(label) == len(PROBE):
        raise RouteNotFound(f"unknown URL {path!r}; the route is POST {PREFIX}{{label}}{PROBE}, the label URL-encoded")
    return label.removesuffix(PROBE)


async def _timeout(scope: Scope, receive: Receive, default: float) -> float:
    body = await read_body(scope, receive, 64 * 1024)
    if not body.strip():
        return default
    try:
        data = orjson.loads(body)
        value = data.get("timeout", default) if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= MAX_PROBE_TIMEOUT:
        raise InvalidRequest(f'body must be empty or {{"timeout": seconds}} with 0 < seconds <= {MAX_PROBE_TIMEOUT:g}', param="timeout")
    return float(value)
