"""What is worth an alert, looked for on a timer in the worker's own state (never on a request).

Every ``TICK`` seconds: the last reload's error, the spend outbox, each deployment's health on this
worker, each credential pool of the current snapshot; every ``BUDGET_TICK`` seconds, the keys and
teams over a budget threshold (one query). What was already raised is remembered here, so an
ongoing condition is queued once per worker; the notifier then deduplicates across workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.alerts.message import Alert
from faregate.alerts.sender import Notifier
from faregate.credentials.keyring import Snapshot
from faregate.health import Health
from faregate.store import budgets

log = logging.getLogger("faregate.alerts")
TICK = 1.0
BUDGET_TICK = 5.0
BUDGET_CLAIM_SECONDS = 40 * 86_400.0  # one alert per threshold per budget period (the subject names the period)


@dataclass(slots=True)
class Sources:
    """Where the watcher looks: all of it the worker's own, read without awaiting anything but the budget query."""

    snapshot: Callable[[], Snapshot]
    health: Health
    reload_error: Callable[[], str]
    outbox_rows: Callable[[], int]
    engine: Callable[[], AsyncEngine | None]


class Watcher:
    def __init__(self, sources: Sources, notifier: Notifier) -> None:
        self.sources = sources
        self.notifier = notifier
        self.raised: set[str] = set()  # dedupe keys of conditions still standing, raised by this worker
        self.unhealthy_since: dict[str, tuple[float, int]] = {}  # deployment label -> (first seen cooling, successes then)
        self._budget_at = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if not self.sources.snapshot().generation.alerts:
                continue
            self.check(time.time())
            if time.monotonic() >= self._budget_at:
                self._budget_at = time.monotonic() + BUDGET_TICK
                await self.check_budgets()

    def _raise(self, alert: Alert, standing: set[str]) -> None:
        standing.add(alert.dedupe_key)
        if alert.dedupe_key not in self.raised:
            self.raised.add(alert.dedupe_key)
            self.notifier.notify(alert)

    def check(self, now: float) -> None:
        snap = self.sources.snapshot()
        generation = snap.generation
        standing: set[str] = set()
        error = self.sources.reload_error()
        if error:
            digest = hashlib.sha256(error.encode()).hexdigest()[:12]
            summary = f"a reload failed: generation {generation.id} keeps serving"
            self._raise(Alert("reload_failed", digest, summary, {"error": error[:1000], "generation": generation.id}), standing)
        rows = self.sources.outbox_rows()
        if rows:
            summary = f"{rows} spend row(s) wait in the outbox: the database is not taking them (they are kept and replayed)"
            self._raise(Alert("spend_outbox", "outbox", summary, {"rows": rows, "generation": generation.id}), standing)
        minutes = min((t.cooldown_minutes for t in generation.alerts), default=5.0)
        for route in generation.models.values():
            for dep in route.deployments:
                self._deployment(dep.label, dep.model, now, minutes, standing)
        for pool in snap.pools.values():
            for credential, state, reason, _, _ in pool.report(now):
                if state == "rejected":
                    summary = f"credential {credential.label} was rejected ({reason}): it takes no traffic until a reload"
                    details = {"credential": credential.label, "provider": credential.provider, "generation": generation.id}
                    self._raise(Alert("credential_rejected", f"{generation.id}:{credential.label}", summary, details), standing)
        self.raised = {key for key in self.raised if key in standing or key.startswith("budget_threshold:")}

    def _deployment(self, label: str, model: str, now: float, minutes: float, standing: set[str]) -> None:
        report = self.sources.health.report(label, now)
        if report.state == "misconfigured":
            closest = ", ".join(report.closest[:5]) or "none known"
            summary = f"deployment {label} is misconfigured: {report.reason}; closest names: {closest}"
            self._raise(Alert("deployment_misconfigured", label, summary, {"deployment": label, "upstream_model": model}), standing)
            return
        since = self.unhealthy_since.get(label)
        if since is not None and report.successes > since[1]:  # it answered again: healthy, whatever the cooldown says
            del self.unhealthy_since[label]
            since = None
        if report.state == "cooling_down" and since is None:
            self.unhealthy_since[label] = since = (now, report.successes)
        if since is None:
            return
        key = f"deployment_cooldown:{label}"
        if now - since[0] >= minutes * 60:
            summary = f"deployment {label} has been failing for {(now - since[0]) / 60:.1f} minutes with no success: {report.last_error or report.reason}"
            details = {"deployment": label, "upstream_model": model, "errors": report.errors}
            self._raise(Alert("deployment_cooldown", label, summary, details), standing)
        elif key in self.raised:
            standing.add(key)

    async def check_budgets(self) -> None:
        generation = self.sources.snapshot().generation
        shares = sorted({t for target in generation.alerts if "budget_threshold" in target.events for t in target.budget_thresholds})
        engine = self.sources.engine()
        if not shares or engine is None:
            return
        try:
            over = await budgets.near_limit(engine, shares[0])
        except (SQLAlchemyError, OSError) as exc:
            log.warning(f"budget alerts: the database did not answer ({type(exc).__name__})")
            return
        for row in over:
            ratio = float(row["spent_usd"]) / float(row["budget_usd"])
            crossed = max(t for t in shares if ratio >= t)
            period = row["budget_period"] or "total"
            subject = f"{row['kind']}:{row['id']}:{round(crossed * 100)}:{row['period_start'] or 0:.0f}"
            summary = (
                f"{row['kind']} {row['name']} ({row['id']}) has spent ${float(row['spent_usd']):.4f}, "
                f"{ratio:.0%} of its {period} budget of ${float(row['budget_usd']):.2f} (threshold {crossed:.0%})"
            )
            details = {
                "kind": row["kind"],
                "id": row["id"],
                "threshold": crossed,
                "spent_usd": row["spent_usd"],
                "budget_usd": row["budget_usd"],
            }
            alert = Alert("budget_threshold", subject, summary, details, ttl=BUDGET_CLAIM_SECONDS)
            if alert.dedupe_key not in self.raised:
                self.raised.add(alert.dedupe_key)
                self.notifier.notify(alert)
