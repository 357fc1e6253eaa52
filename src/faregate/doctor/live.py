"""``faregate doctor --live``: the failure decision tree, walked against the running gateway.

Everything goes through ``--url``, the address clients use (so through any proxy in front of
faregate), in the order an operator would look at 2 AM:

1. gateway: ``/healthz`` answers, ``/readyz`` says ready, the master key opens ``/admin/workers``;
2. workers: every live worker on the file's generation and its credentials (``verify``'s compare);
3. state: database, control bus and Redis, each checked by the gateway now (``/admin/status``);
4. deployments: one probe per deployment (``POST /admin/deployments/{label}/probe``): the
   provider's cheapest request, with the timeout, so each failure is named per deployment;
5. stream: the streaming self-test (``doctor.stream``).

A step that cannot be walked (the gateway is down, the key is refused) ends the walk: each group
after it says it was not checked and why, so a report never looks cleaner than what was checked.
No secret is printed: the key travels only in the Authorization header, URLs are shown without
their user and password, and every text from the gateway goes through the generation's scrubber.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from faregate import remote
from faregate.doctor import stream
from faregate.doctor.findings import GROUPS, Finding, Severity
from faregate.generation import Deployment, Generation

LIVE_GROUPS = ("gateway", "workers", "state", "deployments", "stream")
CALL_MARGIN = 5.0  # seconds the HTTP call to the gateway waits beyond a probe's own timeout
MAX_PROBE_SECONDS = 60.0  # the most the probe route accepts
ADMIN_SECONDS = 10.0  # the gateway's own routes (not a provider's): at least this long before calling it silent


def shown(url: str) -> str:
    """``url`` without a user, password, query or fragment: what doctor prints."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    netloc = f"[{host}]{port}" if ":" in host else f"{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class _Walk:
    generation: Generation
    url: str
    key: str | None
    timeout: float
    shown: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        try:
            status, answer = remote.call(method, self.url, path, self.key, body, timeout or max(self.timeout, ADMIN_SECONDS))
        except http.client.HTTPException as exc:  # a reply cut midway; remote.call catches the OSErrors
            return 0, {"error": {"message": f"the reply was cut ({exc.__class__.__name__})"}}
        return status, answer if isinstance(answer, dict) else {}

    def text(self, value: object) -> str:
        """A text from the gateway, fit to print: scrubbed, bounded, with any URL userinfo cut."""
        return self.generation.scrub(str(value))[:300].replace(self.url, self.shown)


def _message(body: dict[str, Any]) -> str:
    error = body.get("error")
    return str(error.get("message", "")) if isinstance(error, dict) else ""


def _code(body: dict[str, Any]) -> str:
    error = body.get("error")
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _not_walked(subject: str, groups: tuple[str, ...], reason: str, fix: str) -> list[Finding]:
    return [Finding(g, "not_walked", "warning", subject, f"{GROUPS[g]}: not checked, {reason}", fix) for g in groups]


def findings(generation: Generation, url: str, key: str | None, timeout: float, progress: Callable[[str], None]) -> list[Finding]:
    if not key and generation.master_key is not None:
        key = generation.master_key.reveal()  # the file's own master key, as the gateway it describes uses it
    walk = _Walk(generation, url, key, timeout, shown(url))
    progress(f"checking the gateway at {walk.shown}")
    found, workers = _gateway(walk)
    if workers is None:
        failed = ", ".join(f.code for f in found if f.severity == "error")
        reason = f"because the gateway step failed ({failed})"
        return found + _not_walked(walk.shown, LIVE_GROUPS[1:], reason, "fix the gateway finding first, then run doctor again")
    progress("checking the workers")
    found += _workers(walk, workers)
    progress("checking the database, the control bus and Redis")
    found += _state(walk, workers)
    found += _deployments(walk, progress)
    progress(f"streaming self-test through {walk.shown}")
    found += stream.findings(url, walk.shown, key, max(timeout, ADMIN_SECONDS))
    return found


# 1. gateway ------------------------------------------------------------------------------------


def _gateway(walk: _Walk) -> tuple[list[Finding], dict[str, Any] | None]:
    """The gateway's findings, and /admin/workers' body when the walk can go on (None: it cannot)."""
    subject = walk.shown
    status, body = walk.call("GET", "/healthz")
    if status == 0:
        message = walk.text(_message(body)) or f"nothing answers at {subject}"
        fix = "start it (faregate serve -c FILE), or pass the address clients use with --url"
        return [Finding("gateway", "gateway_unreachable", "error", subject, message, fix)], None
    if status in (502, 503, 504):
        message = f"{subject} answers {status} on /healthz: the proxy in front is up, faregate behind it is not answering"
        fix = "start faregate, or point the proxy at the address faregate listens on (serve --host/--port)"
        return [Finding("gateway", "gateway_unreachable", "error", subject, message, fix)], None
    if status != 200 or body.get("status") != "ok":
        message = f'{subject} answers {status} on /healthz, not faregate\'s {{"status": "ok"}}'
        fix = "check --url (scheme, host, port, and any path prefix the proxy adds)"
        return [Finding("gateway", "gateway_not_faregate", "error", subject, message, fix)], None
    found = []
    status, ready = walk.call("GET", "/readyz")
    if status != 200 or ready.get("status") != "ready":
        message = f"/readyz answers {status}: {walk.text(_message(ready) or ready)}"
        found.append(Finding("gateway", "gateway_not_ready", "error", subject, message, "see the gateway's log for why it is not ready"))
    else:
        detail = f"generation {ready.get('generation')}, {ready.get('models')} model(s), {ready.get('providers')} provider(s)"
        found.append(Finding("gateway", "gateway_ready", "ok", subject, f"up and ready: {detail}"))
    if not walk.key and walk.generation.server.auth != "none":  # with auth: none the admin routes are open on loopback
        fix = "pass the gateway's master key with --key or $FAREGATE_MASTER_KEY"
        return [*found, Finding("gateway", "no_master_key", "error", subject, "no master key to read the admin routes with", fix)], None
    status, workers = walk.call("GET", "/admin/workers")
    if status == 200 and isinstance(workers.get("workers"), list):
        return found, workers
    if status == 401:
        message, fix = "the master key was refused on /admin/workers", "pass the master key this gateway was started with (--key)"
    elif status in (403, 404):
        message = f"/admin/workers answers {status} through {subject}: the path in front does not let admin routes through"
        fix = "run doctor from where the admin routes are reachable, or let /admin/ through for the operator's address"
    else:
        message, fix = f"/admin/workers answers {status}: {walk.text(_message(workers))}", "see the gateway's log"
    return [*found, Finding("gateway", "admin_unreachable", "error", subject, message, fix)], None


# 2. workers ------------------------------------------------------------------------------------


def _workers(walk: _Walk, body: dict[str, Any]) -> list[Finding]:
    gen = walk.generation
    rows, ok = remote.compare(gen, body)
    found: list[Finding] = []
    reload = f"faregate reload -c {gen.source.name} --url {walk.shown}"
    listed = {str(w.get("id")): w for w in body.get("workers", []) if isinstance(w, dict)}
    live = 0
    for row in rows:
        if row.state == "gone":
            continue
        if row.worker == "-":
            found.append(
                Finding("workers", "no_live_worker", "error", walk.shown, "no live worker reported itself", "see the gateway's log")
            )
            continue
        live += 1
        subject = f"worker {row.worker}"
        if row.state == "UNRESPONSIVE":
            fix = "the worker is stuck or starved of CPU: see its log, then restart it"
            found.append(Finding("workers", "worker_unresponsive", "error", subject, walk.text(row.detail), fix))
            continue
        if row.generation != gen.id:
            message = f"serves generation {row.generation}; {gen.source.name} compiles to generation {gen.id}"
            fix = f"{reload} (the file changed since the worker loaded it), or run doctor on the file the gateway serves"
            found.append(Finding("workers", "generation_mismatch", "error", subject, message, fix))
        if row.state == "MISMATCH":
            message = f"its credentials differ from the file's: {walk.text(row.detail)}"
            fix = f"{reload}; if the keys come from the environment or key files, the gateway's may differ from this shell's"
            found.append(Finding("workers", "credentials_mismatch", "error", subject, message, fix))
        error = listed.get(row.worker, {}).get("last_reload_error")
        if error:
            fix = "fix the config (faregate check -c FILE), then reload"
            found.append(Finding("workers", "reload_failed", "warning", subject, f"its last reload failed: {walk.text(error)}", fix))
    if ok and not found:
        credentials = sum(len(p.credentials) for p in gen.providers.values())
        message = f"{live} live worker(s) on generation {gen.id} with the file's {credentials} credential(s)"
        found.append(Finding("workers", "workers_match", "ok", walk.shown, message))
    return found


# 3. state --------------------------------------------------------------------------------------

STATE_FIX = {
    "database": "check state.database: the server is up and reachable from the gateway, its user and password are right; "
    "spend rows wait in the outbox meanwhile, virtual keys and budgets cannot be read",
    "bus": "the control bus carries reloads and key changes between workers: check state.redis (or, without Redis, the "
    "disk and permissions of control.db beside the database)",
    "redis": "check state.redis: the server is up and reachable, its password is right; rate limits fall back to each "
    "process and other instances miss reloads until it answers",
}


def _state(walk: _Walk, workers: dict[str, Any]) -> list[Finding]:
    status, body = walk.call("GET", "/admin/status")
    if status != 200:
        message = f"/admin/status answers {status}: {walk.text(_message(body))}"
        return [Finding("state", "state_not_checked", "warning", "state", message, "upgrade faregate to a version with /admin/status")]
    found: list[Finding] = []
    for name in ("database", "bus", "redis"):
        entry = body.get(name)
        if not isinstance(entry, dict):
            continue
        where = walk.text(entry.get("where") or "")
        subject = f"{name} ({entry.get('kind')}{' at ' + where if where else ''})"
        if entry.get("ok"):
            found.append(Finding("state", f"{name}_ok", "ok", subject, f"answered in {entry.get('latency_ms')} ms"))
        else:
            message = f"does not answer: {walk.text(entry.get('error'))}"
            found.append(Finding("state", f"{name}_unreachable", "error", subject, message, STATE_FIX[name]))
    bus = workers.get("bus", "ok")
    if bus != "ok":
        found.append(Finding("state", "bus_degraded", "error", "bus", f"the workers' bus is {walk.text(bus)}", STATE_FIX["bus"]))
    limiter = body.get("limiter")
    if isinstance(limiter, dict) and limiter.get("degraded"):
        message = "rate limits are enforced per process only: Redis did not answer the limiter"
        found.append(Finding("state", "limiter_degraded", "warning", "rate limiter", message, STATE_FIX["redis"]))
    return found


# 4. deployments --------------------------------------------------------------------------------


def _targets(gen: Generation) -> list[tuple[Deployment, list[str]]]:
    """Each deployment label once, with where it appears in the file (``models.NAME[i]``)."""
    seen: dict[str, tuple[Deployment, list[str]]] = {}
    for name, route in gen.models.items():
        for i, dep in enumerate(route.deployments):
            seen.setdefault(dep.label, (dep, []))[1].append(f"models.{name}[{i}]")
    return list(seen.values())


def _deployments(walk: _Walk, progress: Callable[[str], None]) -> list[Finding]:
    targets = _targets(walk.generation)
    found: list[Finding] = []
    for i, (dep, places) in enumerate(targets, 1):
        progress(f"probing {dep.label} ({i}/{len(targets)})")
        path = f"/admin/deployments/{quote(dep.label, safe='')}/probe"
        status, body = walk.call("POST", path, {"timeout": min(walk.timeout, MAX_PROBE_SECONDS)}, timeout=walk.timeout + CALL_MARGIN)
        if status == 404 and _code(body) == "unknown_url":  # a gateway from before the probe route
            reason = "because this gateway has no probe route (POST /admin/deployments/{label}/probe)"
            return _not_walked(walk.shown, ("deployments",), reason, "upgrade faregate")
        found.append(_probed(walk, dep, places, status, body))
    return found


FIX = {
    "credential_rejected": "replace the key of credential {credential} in providers.{provider}.credentials (wrong, revoked, or for "
    "another organisation or project), then faregate reload",
    "model_not_found": "set {place}.model to a name provider {provider} serves{closest}, then faregate reload",
    "quota_exhausted": "add credit or raise the quota at {provider}'s billing page, or give the model a deployment elsewhere",
    "rate_limited": "the provider limits this key right now: raise its limits there, or set rpm/tpm on {place} so faregate spreads load",
    "unreachable": "check providers.{provider}.base_url ({base_url}), DNS, firewalls and any outbound proxy from the gateway's host",
    "timeout": "check {provider}'s status and providers.{provider}.timeout; a slow but working provider passes with a larger --timeout",
    "error": "see the message; POST /admin/deployments/{label}/probe runs the probe again",
}
SEVERITY: dict[str, Severity] = {"ok": "ok", "rate_limited": "warning"}


def _probed(walk: _Walk, dep: Deployment, places: list[str], status: int, body: dict[str, Any]) -> Finding:
    what = f"upstream model '{dep.model}' at provider {dep.provider.name} ({dep.provider.type}), {', '.join(places)}"
    if status == 0:
        message = f"{what}: the gateway did not answer the probe within {walk.timeout + CALL_MARGIN:g}s ({walk.text(_message(body))})"
        return Finding("deployments", "deployment_timeout", "error", dep.label, message, FIX["timeout"].format(provider=dep.provider.name))
    probe = body.get("probe")
    if status != 200 or not isinstance(probe, dict):
        if status == 404:
            message = f"{what}: the gateway does not serve this deployment ({walk.text(_message(body))})"
            fix = "the file is not the gateway's current generation: faregate reload, or run doctor on the file it serves"
            return Finding("deployments", "deployment_not_served", "error", dep.label, message, fix)
        message = f"{what}: the probe route answered {status}: {walk.text(_message(body))}"
        return Finding("deployments", "deployment_error", "error", dep.label, message, "see the gateway's log")
    result = str(probe.get("result", "error"))
    if result not in FIX and result != "ok":
        result = "error"
    closest = [walk.text(n) for n in probe.get("closest") or [] if isinstance(n, str)]
    message = f"{what}: {walk.text(probe.get('message') or result)}"
    if closest and not all(name in message for name in closest):  # the probe's message may name them already
        message += f"; closest names: {', '.join(closest)}"
    latency = probe.get("latency_ms")
    if result == "ok":
        return Finding("deployments", "deployment_ok", "ok", dep.label, f"{message} ({probe.get('method')}, {latency} ms)")
    fix = FIX[result].format(
        credential=walk.text(probe.get("credential") or "(none)"),
        provider=dep.provider.name,
        place=places[0],
        closest=f" (closest: {', '.join(closest)})" if closest else "",
        base_url=shown(dep.provider.base_url),
        label=dep.label,
    )
    return Finding("deployments", f"deployment_{result}", SEVERITY.get(result, "error"), dep.label, message, fix)
