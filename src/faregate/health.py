"""Per-worker deployment health: consecutive failures and cooldowns. Plain methods, no awaits.

Keyed by deployment label (`provider/upstream model`), so a reload that keeps a deployment keeps
its cooldown, and one that removes it forgets it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from faregate.errors import UpstreamError, UpstreamRateLimited
from faregate.generation import Policy


def clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(epoch))


@dataclass(slots=True)
class _State:
    failures: int = 0
    until: float = 0.0
    reason: str = ""
    limit_code: str | None = None  # the provider's 429 code when the cooldown is its rate limit or quota


class Health:
    def __init__(self) -> None:
        self._states: dict[str, _State] = {}

    def blocked(self, label: str, now: float) -> str | None:
        """Why this deployment must not be tried now, or None."""
        state = self._states.get(label)
        if state is None or state.until <= now:
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

    def success(self, label: str) -> None:
        state = self._states.get(label)
        if state is not None and state.failures:
            state.failures = 0

    def failure(self, label: str, error: UpstreamError, now: float, policy: Policy) -> None:
        state = self._states.setdefault(label, _State())
        if isinstance(error, UpstreamRateLimited):
            seconds = error.retry_after if error.retry_after is not None else policy.cooldown_seconds
            self._cool(state, now + max(seconds, 0.0), error.reason)
            state.limit_code = error.code or "rate_limited"
            return
        state.failures += 1
        if state.failures >= policy.cooldown_failures and policy.cooldown_seconds > 0:
            self._cool(state, now + policy.cooldown_seconds, f"{state.failures} consecutive failures, last: {error.reason}")

    @staticmethod
    def _cool(state: _State, until: float, reason: str) -> None:
        state.until = max(state.until, until)
        state.reason = reason
        state.failures = 0
        state.limit_code = None

    def clear(self) -> None:
        """Forget every failure and cooldown (``POST /cache/purge``)."""
        self._states.clear()

    def cooling(self, now: float) -> list[tuple[str, float, str]]:
        return [(label, s.until, s.reason) for label, s in self._states.items() if s.until > now]
