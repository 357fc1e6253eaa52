"""Per-provider credential choice and bookkeeping. Plain methods, no awaits (cancellation-safe).

A pool lives as long as its generation: a credential rejected with 401/403 stays out of
rotation until the next reload, which builds fresh pools.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from faregate.generation import Credential


@dataclass(slots=True)
class CredentialState:
    credential: Credential
    rejected: str | None = None  # reason, until the next reload
    cooled_until: float = 0.0
    cool_reason: str | None = None
    cool_code: str | None = None  # the provider's 429 code that cooled it
    requests: int = 0
    last_used: float | None = None


class CredentialPool:
    def __init__(self, credentials: tuple[Credential, ...], strategy: str, rng: random.Random | None = None) -> None:
        self.states = [CredentialState(c) for c in credentials]
        self.strategy = strategy
        self._next = 0
        self._rng = rng or random.Random()

    def _usable(self, now: float) -> list[CredentialState]:
        healthy = [s for s in self.states if s.rejected is None and s.cooled_until <= now]
        fresh = [s for s in healthy if not s.credential.retiring]
        return fresh or healthy

    def choose(self, now: float) -> Credential | None:
        """The credential for the next request, or None when none is usable (see ``unusable_reason``)."""
        if len(self.states) == 1:  # the common case, kept cheap
            only = self.states[0]
            if only.rejected is None and only.cooled_until <= now:
                return self._mark(only, now)
            return None
        usable = self._usable(now)
        if not usable:
            return None
        if self.strategy == "fill_first":
            chosen = usable[0]
        elif self.strategy == "weighted":
            weights = [max(s.credential.weight, 0) for s in usable]
            chosen = self._rng.choices(usable, weights=weights)[0] if sum(weights) > 0 else usable[0]
        else:
            chosen = usable[self._next % len(usable)]
            self._next += 1
        return self._mark(chosen, now)

    @staticmethod
    def _mark(state: CredentialState, now: float) -> Credential:
        state.requests += 1
        state.last_used = now
        return state.credential

    def _state(self, credential: Credential) -> CredentialState | None:
        for s in self.states:
            if s.credential is credential:
                return s
        return None

    def reject(self, credential: Credential, reason: str) -> None:
        state = self._state(credential)
        if state is not None:
            state.rejected = reason

    def cool(self, credential: Credential, until: float, reason: str, code: str | None = None) -> None:
        state = self._state(credential)
        if state is not None:
            state.cooled_until = max(state.cooled_until, until)
            state.cool_reason = reason
            state.cool_code = code or "rate_limited"

    def limit_code(self, now: float) -> str | None:
        """When no credential is usable only because the provider limited every one of them (429):
        ``insufficient_quota`` if that was every one's code, else ``rate_limited``. None otherwise."""
        if not self.states or any(s.rejected is not None or s.cooled_until <= now for s in self.states):
            return None
        codes = {s.cool_code for s in self.states}
        return "insufficient_quota" if codes == {"insufficient_quota"} else "rate_limited"

    def report(self, now: float) -> list[tuple[Credential, str, str, int, float | None]]:
        """(credential, state, reason, requests since load, last used) for each credential."""
        rows = []
        for s in self.states:
            if s.rejected is not None:
                state, reason = "rejected", s.rejected
            elif s.cooled_until > now:
                state, reason = "cooling", f"until {s.cooled_until:.0f} after {s.cool_reason}"
            elif s.credential.retiring:
                state, reason = "retiring", "takes traffic only when no other credential is healthy"
            else:
                state, reason = "active", ""
            rows.append((s.credential, state, reason, s.requests, s.last_used))
        return rows

    def unusable_reason(self, now: float) -> str:
        if not self.states:
            return "no credentials configured"
        parts = []
        for s in self.states:
            if s.rejected is not None:
                parts.append(f"{s.credential.label} {s.rejected}")
            elif s.cooled_until > now:
                parts.append(f"{s.credential.label} cooling down after {s.cool_reason}")
        return "no usable credential: " + "; ".join(parts)
