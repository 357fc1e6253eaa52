"""Admin pages on traffic and the fleet: Overview, Deployments (with a probe), Credentials (with a
reload on every worker). The numbers come from the database (``store.overview``) and from what
the workers report (``faregate.fleet``, the same source as /admin/deployments and /admin/workers)."""

from __future__ import annotations

import time
from typing import Any

from faregate import fleet
from faregate import probe as probes
from faregate.dashboard import charts
from faregate.dashboard.web import Request, Response, redirect, render
from faregate.errors import ConfigError
from faregate.store import overview as agg

STAMPS = {"hour": "%H:%M", "day": "%H:00", "month": "%m-%d"}


async def overview(request: Request) -> Response:
    session = request.session
    assert session is not None
    if not session.admin:
        return redirect(request, "key")
    engine = request.gw.engine
    assert engine is not None
    window = agg.WINDOWS.get(request.query.get("window", "day"), agg.WINDOWS["day"])
    found = await agg.overview(engine, window, time.time())
    totals, points = found.totals, found.points
    stamp = STAMPS[window.name]
    graphs = [
        charts.bars("Requests", points, "requests", "{:.0f}", stamp),
        charts.bars("Errors", points, "errors", "{:.0f}", stamp),
        charts.bars(
            "Tokens (prompt + completion)",
            [{**p, "tokens": p["prompt_tokens"] + p["completion_tokens"]} for p in points],
            "tokens",
            "{:.0f}",
            stamp,
        ),
        charts.bars("Spend (USD)", points, "cost_usd", "${:.6f}", stamp),
    ]
    gen = request.gw.keyring.current.generation
    seen_by, _ = await fleet.workers(request.gw)
    unhealthy = [r for r in fleet.deployment_rows(gen, seen_by) if r["state"] != "healthy"]
    return render(
        request,
        "overview.html",
        window=window.name,
        windows=list(agg.WINDOWS),
        totals=totals,
        error_rate=(totals["errors"] / totals["requests"]) if totals["requests"] else None,
        latency=found.latency,
        ttfb=found.ttfb,
        sampled=found.sampled,
        since=found.since,
        whole_days=bool(window.days),
        charts=graphs,
        top_models=found.tops["model"],
        top_keys=found.tops["key"],
        top_teams=found.tops["team"],
        unhealthy=unhealthy,
    )


async def deployments(request: Request) -> Response:
    """Every deployment's state over the workers; POST ``label``: probe it (as POST /admin/deployments/{label}/probe)."""
    gw = request.gw
    snap = gw.keyring.current
    probed: dict[str, Any] | None = None
    error = ""
    if request.method == "POST":
        label = request.form.get("label", "")
        dep = next((d for route in snap.generation.models.values() for d in route.deployments if d.label == label), None)
        if dep is None:
            error = "There is no such deployment in the current generation."
        else:
            probed = await fleet.probe(gw, snap, dep, min(dep.provider.timeout, probes.DEFAULT_TIMEOUT))
    seen_by, bus = await fleet.workers(gw)
    rows = fleet.deployment_rows(snap.generation, seen_by)
    status = 404 if error else 200
    return render(request, "deployments.html", status, rows=rows, bus=bus, workers_counted=len(seen_by), probed=probed, error=error)


async def credentials(request: Request) -> Response:
    """Every credential and every worker's generation; POST: reload on every worker (as POST /admin/reload)."""
    gw = request.gw
    outcome: dict[str, Any] | None = None
    if request.method == "POST":
        outcome = await _reload(request)
    rows, counted = await fleet.credential_rows(gw)
    workers, bus = await fleet.worker_rows(gw)
    return render(
        request,
        "credentials.html",
        rows=rows,
        counted=counted,
        workers=workers,
        bus=bus,
        generation=gw.keyring.current.generation.id,
        outcome=outcome,
    )


async def _reload(request: Request) -> dict[str, Any]:
    gw = request.gw
    try:
        outcome = await gw.control.reload_all(10.0, purge=False)
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems if p.severity == "error"]
        return {
            "ok": False,
            "message": f"the new config is invalid; generation {gw.keyring.current.generation.id} keeps serving",
            "problems": problems,
            "workers": [],
        }
    now = time.time()
    return {
        "ok": outcome.ok,
        "message": f"generation {outcome.generation}" + ("" if outcome.ok else ": not every worker confirmed it"),
        "problems": [*outcome.laggards, *(str(p) for p in outcome.warnings)],
        "workers": [fleet.worker_row(w, now, True, done) for w, done in outcome.workers],
    }
