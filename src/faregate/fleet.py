"""What the live workers report, as the admin API and the dashboard show it: every deployment's
state over the workers (``deployment_rows``), every worker (``worker_rows``), every credential with
its traffic summed over the workers (``credential_rows``), and a probe of one deployment (``probe``).

Each worker beats its view into the registry (``WorkerInfo``); this worker speaks for itself as it
is now, the others as their last heartbeat says. Never a secret: credentials are fingerprints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from faregate import probe as probes
from faregate.control import apply_probe
from faregate.credentials import minted
from faregate.credentials.keyring import Snapshot
from faregate.gateway import Gateway
from faregate.generation import Credential, Deployment, Generation
from faregate.store.base import BusError, DeploymentProbed, WorkerInfo

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


async def workers(gw: Gateway) -> tuple[list[WorkerInfo], str]:
    """This worker (as it is now) and every other live one (as its last heartbeat says), and the bus's state."""
    own = gw.control.info()
    try:
        others = [w for w in await gw.control.live_workers() if w.id != own.id]
    except BusError as exc:
        return [own], f"degraded: {exc}"  # the bus is down: this worker can only speak for itself
    return [own, *others], gw.control.bus_status


def deployment_rows(gen: Generation, seen_by: list[WorkerInfo], label: str | None = None) -> list[dict[str, Any]]:
    now = time.time()
    return [row(d, seen_by, now) for route in gen.models.values() for d in route.deployments if label is None or d.label == label]


def probe_credential(snap: Snapshot, dep: Deployment) -> Credential | None:
    """The credential traffic would use now: one not rejected or resting, not retiring if another is
    healthy (as the pool chooses, without counting a request); else any, so its failure is named."""
    pool = snap.pools.get(dep.provider.name)
    if pool is None or not pool.states:
        return dep.provider.credentials[0] if dep.provider.credentials else None
    now = time.time()
    ranked = sorted(pool.states, key=lambda s: (s.rejected is not None, s.cooled_until > now, s.credential.retiring))
    return ranked[0].credential


async def probe(gw: Gateway, snap: Snapshot, dep: Deployment, timeout: float) -> dict[str, Any]:
    gen = snap.generation
    found = await probes.probe(
        gw.upstream,
        dep,
        probe_credential(snap, dep),
        timeout,
        scrub=gen.scrub,
        limit=min(gen.server.max_reply_bytes, probes.MAX_LISTING_BYTES),
    )
    shared: dict[str, Any] = {"ok": True, "laggards": []}
    if found.result in ("ok", "model_not_found"):
        closest = found.closest or (gw.health.misconfigured(dep.label) or ("", ()))[1]  # keep the price table's names
        event = DeploymentProbed(dep.label, found.result == "ok", f"probe: {found.message}", closest, origin=gw.control.worker_id)
        apply_probe(gw.health, event)
        outcome = await gw.control.announce([event], SHARE_TIMEOUT)
        shared = {"ok": outcome.ok, "laggards": outcome.laggards}
    seen_by, _ = await workers(gw)
    rows = deployment_rows(gen, seen_by, dep.label)
    return {"deployment": dep.label, "worker": gw.control.worker_id, "probe": found.body(), "state": rows[0], "shared": shared}


def worker_row(w: WorkerInfo, now: float, live: bool, on_generation: bool | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": w.id,
        "instance": w.instance,
        "pid": w.pid,
        "generation": w.generation,
        "credentials": list(w.credentials),
        "started": w.started,
        "last_heartbeat_age_s": round(now - w.heartbeat, 3),
        "live": live,
        "bus": w.bus,
        "last_reload_error": w.error or None,
    }
    if on_generation is not None:
        row["on_new_generation"] = on_generation
    return row


async def worker_rows(gw: Gateway) -> tuple[list[dict[str, Any]], str]:
    """Every worker in the registry (live or not) and the bus's state; this worker alone when the bus is down."""
    now = time.time()
    try:
        rows = [worker_row(w, now, gw.control.is_live(w, now)) for w in await gw.control.bus.workers()]
        bus = gw.control.bus_status
    except BusError as exc:
        rows = [worker_row(gw.control.info(), now, True)]  # the bus is down: this worker can only speak for itself
        bus = f"degraded: {exc}"
    return rows, bus


async def credential_rows(gw: Gateway) -> tuple[list[dict[str, Any]], int]:
    """Every credential of the current generation, with its state here and its traffic summed over
    every live worker (so a retiring key can be watched draining to zero), and how many workers
    were counted. Never the secret."""
    now = time.time()
    try:
        live = [w for w in await gw.control.live_workers() if w.id != gw.control.worker_id]
    except BusError:
        live = []
    rows = []
    for name, pool in gw.keyring.current.pools.items():
        for credential, state, reason, requests, last_used in pool.report(now):
            total, last = requests, last_used
            for w in live:
                seen = w.usage.get(credential.label)
                if seen is not None:
                    total += int(seen[2])  # type: ignore[call-overload]
                    if seen[3] is not None and (last is None or float(seen[3]) > last):  # type: ignore[arg-type]
                        last = float(seen[3])  # type: ignore[arg-type]
            rows.append(
                {
                    "provider": name,
                    "id": credential.id,
                    "fingerprint": credential.label,
                    "retiring": credential.retiring,
                    "state": state,
                    "reason": reason or None,
                    "requests_since_load": total,
                    "last_used": last,
                    # a minted credential (vertex): its token here, never the token itself (this worker's: each mints its own)
                    "token": minted.describe(credential.minted, now) if credential.minted is not None else None,
                }
            )
    return rows, 1 + len(live)
