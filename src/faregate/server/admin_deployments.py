"""Admin routes (master key): every deployment's state across the live workers, and a probe of one.

``GET /admin/deployments``: one row per (public model, deployment) of this worker's generation,
with its state on every live worker (this one now, the others as their last heartbeat says,
``WorkerInfo.deployments``), the worst of them, and its traffic summed over them.
``POST /admin/deployments/{label}/probe``: probe it now (``faregate.probe``) with the credential
traffic would use; a verdict on its upstream model (found, or not found) applies on every worker
over the control bus (``store.base.DeploymentProbed``), and the answer waits until each has it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from faregate import probe as probes
from faregate.control import apply_probe
from faregate.credentials.keyring import Snapshot
from faregate.errors import FaregateError, InvalidRequest, MethodNotAllowed, RouteNotFound
from faregate.gateway import Gateway
from faregate.generation import Credential, Deployment, Generation
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, read_body, send_bytes, send_error
from faregate.store.base import BusError, DeploymentProbed, WorkerInfo

JSON = b"application/json"
PREFIX = "/admin/deployments/"
PROBE = "/probe"
MAX_PROBE_TIMEOUT = 60.0
SHARE_TIMEOUT = 2.0  # how long a probe's answer waits for every worker to apply its verdict (doctor --live allows 5 s beyond the probe)
RANK = {"healthy": 0, "rate_limited": 1, "cooling_down": 2, "misconfigured": 3}  # the worst state over the workers wins
DISABLED = "weight 0: takes no traffic"


@dataclass(frozen=True, slots=True)
class Seen:
    """One worker's view of one deployment, read from its heartbeat entry (a list; see WorkerInfo)."""

    state: str = "healthy"
    reason: str | None = None
    until: float | None = None
    successes: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    latencies: tuple[float, ...] = ()
    closest: tuple[str, ...] = ()

    @staticmethod
    def of(entry: list[object] | None, now: float) -> Seen:
        """Read defensively (another version may beat a longer or odd entry); a cooldown or limit
        that has ended since the heartbeat is healthy again."""
        if not isinstance(entry, list) or len(entry) < 9:
            return Seen()
        state, reason, until, successes, errors, last_error, last_at, latencies, closest = entry[:9]
        until_at = float(until) if isinstance(until, int | float) else None
        kind = state if isinstance(state, str) and state in RANK else "healthy"
        if kind in ("cooling_down", "rate_limited") and (until_at is None or until_at <= now):
            kind, reason, until_at = "healthy", None, None
        return Seen(
            state=kind,
            reason=reason if isinstance(reason, str) and kind != "healthy" else None,
            until=until_at if kind != "healthy" else None,
            successes=successes if isinstance(successes, int) else 0,
            errors=errors if isinstance(errors, int) else 0,
            last_error=last_error if isinstance(last_error, str) else None,
            last_error_at=float(last_at) if isinstance(last_at, int | float) else None,
            latencies=tuple(float(x) for x in latencies if isinstance(x, int | float)) if isinstance(latencies, list) else (),
            closest=tuple(str(x) for x in closest) if isinstance(closest, list) else (),
        )


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest rank of ``ordered`` (ascending): the smallest value at or above the q-th share."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None


def row(dep: Deployment, workers: list[WorkerInfo], now: float) -> dict[str, Any]:
    seen = [(w.id, Seen.of(w.deployments.get(dep.label), now)) for w in workers]
    worst = max((s for _, s in seen), key=lambda s: (RANK[s.state], s.until or 0.0), default=Seen())
    state, reason, until = ("disabled", DISABLED, None) if dep.weight <= 0 else (worst.state, worst.reason, worst.until)
    failed = max((s for _, s in seen if s.last_error), key=lambda s: s.last_error_at or 0.0, default=None)
    latencies = sorted(x for _, s in seen for x in s.latencies)
    price = dep.price
    return {
        "label": dep.label,
        "model": dep.public_model,
        "provider": dep.provider.name,
        "type": dep.provider.type,
        "upstream_model": dep.model,
        "priority": dep.priority,
        "weight": dep.weight,
        "price": {"input": price.input, "output": price.output} if price is not None else None,
        "state": state,
        "reason": reason,
        "until": until,
        "closest": list(worst.closest),
        "successes": sum(s.successes for _, s in seen),
        "errors": sum(s.errors for _, s in seen),
        "last_error": failed.last_error if failed is not None else None,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95), "samples": len(latencies)},
        "workers": [{"id": wid, "state": s.state, "reason": s.reason, "successes": s.successes, "errors": s.errors} for wid, s in seen],
    }


async def _workers(gw: Gateway) -> tuple[list[WorkerInfo], str]:
    """This worker (as it is now) and every other live one (as its last heartbeat says), and the bus's state."""
    own = gw.control.info()
    try:
        others = [w for w in await gw.control.live_workers() if w.id != own.id]
    except BusError as exc:
        return [own], f"degraded: {exc}"  # the bus is down: this worker can only speak for itself
    return [own, *others], gw.control.bus_status


def _rows(gen: Generation, workers: list[WorkerInfo], label: str | None = None) -> list[dict[str, Any]]:
    now = time.time()
    return [row(d, workers, now) for route in gen.models.values() for d in route.deployments if label is None or d.label == label]


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send_bytes(send, status, orjson.dumps(body), JSON)


async def deployments(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        authenticate_admin(gw.keyring.current, scope)
    except FaregateError as err:
        await send_error(send, err)
        return
    gen = gw.keyring.current.generation
    workers, bus = await _workers(gw)
    body = {"generation": gen.id, "workers_counted": len(workers), "bus": bus, "deployments": _rows(gen, workers)}
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
    body = await _probe(gw, snap, dep, timeout)
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


def _credential(snap: Snapshot, dep: Deployment) -> Credential | None:
    """The credential traffic would use now: one not rejected or resting, not retiring if another is
    healthy (as the pool chooses, without counting a request); else any, so its failure is named."""
    pool = snap.pools.get(dep.provider.name)
    if pool is None or not pool.states:
        return dep.provider.credentials[0] if dep.provider.credentials else None
    now = time.time()
    ranked = sorted(pool.states, key=lambda s: (s.rejected is not None, s.cooled_until > now, s.credential.retiring))
    return ranked[0].credential


async def _probe(gw: Gateway, snap: Snapshot, dep: Deployment, timeout: float) -> dict[str, Any]:
    gen = snap.generation
    found = await probes.probe(
        gw.upstream, dep, _credential(snap, dep), timeout, scrub=gen.scrub, limit=min(gen.server.max_reply_bytes, probes.MAX_LISTING_BYTES)
    )
    shared: dict[str, Any] = {"ok": True, "laggards": []}
    if found.result in ("ok", "model_not_found"):
        closest = found.closest or (gw.health.misconfigured(dep.label) or ("", ()))[1]  # keep the price table's names
        event = DeploymentProbed(dep.label, found.result == "ok", f"probe: {found.message}", closest, origin=gw.control.worker_id)
        apply_probe(gw.health, event)
        outcome = await gw.control.announce([event], SHARE_TIMEOUT)
        shared = {"ok": outcome.ok, "laggards": outcome.laggards}
    workers, _ = await _workers(gw)
    rows = _rows(gen, workers, dep.label)
    return {"deployment": dep.label, "worker": gw.control.worker_id, "probe": found.body(), "state": rows[0], "shared": shared}
