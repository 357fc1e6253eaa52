"""Per-worker deployment health: consecutive failures, cooldowns, misconfiguration, and the recent
outcomes ``/admin/deployments`` shows. Plain methods, no awaits.

Keyed by deployment label (`provider/upstream model`), so a reload that keeps a deployment keeps
its cooldown and counts, and one that removes it forgets it. A *misconfigured* deployment (its
upstream said the model does not exist there) takes no traffic until the next reload or until a
probe of it succeeds; it is not a cooldown: waiting does not fix a misspelt model name.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from faregate.errors import UpstreamError, UpstreamRateLimited
from faregate.generation import Policy

RECENT = 64  # latencies kept per deployment for its p50/p95


def clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))


@dataclass(slots=True)
class _State:
    failures: int = 0
    until: float = 0.0
    reason: str = ""
    limit_code: str | None = None  # the provider's 429 code when the cooldown is its rate limit or quota
    misconfigured: str = ""  # why the upstream says this deployment's model does not exist ("" = it does)
    closest: tuple[str, ...] = ()  # the model names the provider or the price table knows closest to it
    successes: int = 0  # attempts answered since this worker started (or the label reappeared)
    errors: int = 0  # attempts failed, of every kind
    last_error: str = ""
    last_error_at: float = 0.0
    limited_until: float = 0.0  # our own rpm/tpm limit for it refused a request; its retry-after
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))  # seconds to the reply's headers


@dataclass(frozen=True, slots=True)
class Report:
    """One deployment's state on this worker, as ``/admin/deployments`` and the heartbeat show it."""

    state: str  # "healthy" | "cooling_down" | "misconfigured" | "rate_limited" (at its own rpm/tpm limit)
    reason: str | None
    until: float | None  # cooling down / rate limited until (epoch seconds)
    closest: tuple[str, ...]
    successes: int
    errors: int
    last_error: str | None
    last_error_at: float | None
    latencies: tuple[float, ...]  # the recent ones, oldest first


class Health:
    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def blocked(self, label: str, now: float) -> str | None:
        """Why this deployment must not be tried now, or None."""
        state = self._states.get(label)
        if state is None:
            return None
        if state.misconfigured:
            return f"misconfigured: {state.misconfigured}"
        if state.until <= now:
            return None
        return f"cooling down until {clock_time(state.until)} after {state.reason}"

    def limit_code(self, label: str, now: float) -> str | None:
        """The provider's 429 code (e.g. ``insufficient_quota``) if this deployment cools down
        because its provider limited it, else None."""
        state = self._states.get(label)
        return state.limit_code if state is not None and state.until > now else None

    def cooldown_remaining(self, label: str, now: float) -> float:
        state = self._states.get(label)
        return max(0.0, state.until - now) if state else 0.0

    def success(self, label: str, latency: float | None = None) -> None:
        """An attempt answered (``latency``: seconds from sending to the reply's headers)."""
        state = self._states.get(label)
        if state is None:
            state = self._states[label] = _State()
        state.successes += 1
        if latency is not None:
            state.latencies.append(latency)
        if state.failures:
            state.failures = 0

    def failure(self, label: str, error: UpstreamError, now: float, policy: Policy) -> None:
        state = self._states.setdefault(label, _State())
        self._count_error(state, error.reason, now)
        if isinstance(error, UpstreamRateLimited):
            seconds = error.retry_after if error.retry_after is not None else policy.cooldown_seconds
            self._cool(state, now + max(seconds, 0.0), error.reason)
            state.limit_code = error.code or "rate_limited"
            return
        state.failures += 1
        if state.failures >= policy.cooldown_failures and policy.cooldown_seconds > 0:
            self._cool(state, now + policy.cooldown_seconds, f"{state.failures} consecutive failures, last: {error.reason}")

    def misconfigure(self, label: str, reason: str, closest: tuple[str, ...] = (), now: float | None = None) -> None:
        """The upstream says this deployment's model does not exist there: no traffic until the
        next reload (``forget_misconfigured``) or a probe that succeeds (``configured``)."""
        state = self._states.setdefault(label, _State())
        self._count_error(state, reason, time.time() if now is None else now)
        state.misconfigured = reason
        state.closest = closest

    def suggest(self, label: str, closest: tuple[str, ...]) -> None:
        """Closer names found later (the provider's model listing): shown with the reason."""
        state = self._states.get(label)
        if state is not None and state.misconfigured:
            state.closest = closest

    def misconfigured(self, label: str) -> tuple[str, tuple[str, ...]] | None:
        """(why, closest names) while this deployment is misconfigured, else None."""
        state = self._states.get(label)
        return (state.misconfigured, state.closest) if state is not None and state.misconfigured else None

    def configured(self, label: str) -> None:
        """A probe of this deployment succeeded: it takes traffic again."""
        state = self._states.get(label)
        if state is not None:
            state.misconfigured, state.closest = "", ()

    def forget_misconfigured(self) -> None:
        """A reload: every deployment is given its chance again (the config may have fixed it)."""
        for state in self._states.values():
            state.misconfigured, state.closest = "", ()

    def at_limit(self, label: str, until: float) -> None:
        """Our own rpm/tpm limit for this deployment refused a request; free again at ``until``."""
        state = self._states.setdefault(label, _State())
        state.limited_until = max(state.limited_until, until)

    @staticmethod
    def _count_error(state: _State, reason: str, now: float) -> None:
        state.errors += 1
        state.last_error, state.last_error_at = reason, now

    @staticmethod
    def _cool(state: _State, until: float, reason: str) -> None:
        state.until = max(state.until, until)
        state.reason = reason
        state.failures = 0
        state.limit_code = None

    def clear(self) -> None:
        """Forget every failure, cooldown and misconfiguration (``POST /cache/purge``)."""
        self._states.clear()

    def cooling(self, now: float) -> list[tuple[str, float, str]]:
        return [(label, s.until, s.reason) for label, s in self._states.items() if s.until > now and not s.misconfigured]

    def misconfigured_labels(self) -> list[str]:
        return [label for label, s in self._states.items() if s.misconfigured]

    def report(self, label: str, now: float) -> Report:
        state = self._states.get(label) or _State()
        if state.misconfigured:
            kind, reason, until = "misconfigured", state.misconfigured, None
        elif state.until > now:
            kind, reason, until = "cooling_down", state.reason, state.until
        elif state.limited_until > now:
            kind, reason, until = "rate_limited", "at its configured rpm/tpm limit", state.limited_until
        else:
            kind, reason, until = "healthy", None, None
        return Report(
            state=kind,
            reason=reason,
            until=until,
            closest=state.closest,
            successes=state.successes,
            errors=state.errors,
            last_error=state.last_error or None,
            last_error_at=state.last_error_at or None,
            latencies=tuple(state.latencies),
        )
