"""Rate limits in this process (one worker): plain methods, no awaits, so concurrent tasks cannot
interleave between the check and the record. Also the ``RedisLimiter``'s fallback while Redis is down.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from faregate.ratelimit.base import (
    LEASE_SECONDS,
    NEVER,
    WINDOW_SECONDS,
    Limit,
    Seen,
    Ticket,
    active,
    new_id,
    refusal,
    unlimited,
    window_of,
)


class _Scope:
    """One scope's records in this process; all three kept in time order."""

    __slots__ = ("buckets", "leases", "requests")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()  # admission times
        self.buckets: dict[int, int] = {}  # second -> tokens charged in it
        self.leases: dict[str, float] = {}  # ticket id -> expiry

    def prune(self, now: float, window: float) -> bool:
        """Forget what no longer counts; True when nothing is left."""
        requests, buckets, leases = self.requests, self.buckets, self.leases
        while requests and requests[0] <= now - window:
            requests.popleft()
        while buckets and (first := next(iter(buckets))) + 1 + window <= now:
            del buckets[first]
        while leases and (lease := next(iter(leases.items())))[1] <= now:
            del leases[lease[0]]
        return not (requests or buckets or leases)


class LocalLimiter:
    """Limits in this process only (one worker). ``admit`` and ``free`` are plain methods."""

    def __init__(
        self, *, window: float = WINDOW_SECONDS, lease: float = LEASE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window <= 0 or lease <= 0:
            raise ValueError("window and lease must be positive")
        self.window = window
        self.lease = lease
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
        self._sweep_at = clock() + window

    @property
    def degraded(self) -> bool:
        return False

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Ticket:
        return self.admit(limits, tokens)

    async def release(self, ticket: Ticket, actual_tokens: int | None) -> None:
        self.free(ticket, actual_tokens)

    async def close(self) -> None:
        self._scopes.clear()

    def admit(self, limits: Sequence[Limit], tokens: int) -> Ticket:
        found = active(limits)
        if not found:
            return unlimited(tokens)
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens}")
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        seen = [self._see(limit, now, tokens) for limit in found]
        refused = refusal(found, seen, tokens, self.window)
        if refused is not None:
            raise refused
        ticket = Ticket(new_id(), tuple(found), tokens, window_of(found, seen, tokens, admitted=True), math.floor(now))
        for limit in found:
            state = self._scopes.get(limit.scope)
            if state is None:
                state = self._scopes[limit.scope] = _Scope()
            if limit.rpm is not None:
                state.requests.append(now)
            if limit.tpm is not None and tokens:
                state.buckets[ticket.second] = state.buckets.get(ticket.second, 0) + tokens
            if limit.parallel is not None:
                state.leases[ticket.id] = now + self.lease
        return ticket

    def free(self, ticket: Ticket, actual_tokens: int | None) -> None:
        delta = 0 if actual_tokens is None else max(0, actual_tokens) - ticket.tokens
        for limit in ticket.limits:
            state = self._scopes.get(limit.scope)
            if state is None:
                continue
            if limit.parallel is not None:
                state.leases.pop(ticket.id, None)
            if limit.tpm is not None and delta and ticket.second in state.buckets:
                state.buckets[ticket.second] += delta

    def _see(self, limit: Limit, now: float, tokens: int) -> Seen:
        window = self.window
        state = self._scopes.get(limit.scope)
        if state is not None and state.prune(now, window):
            del self._scopes[limit.scope]
            state = None
        requests, requests_reset, requests_retry = 0, window, 0.0
        if limit.rpm is not None and state is not None and state.requests:
            requests, requests_reset = len(state.requests), state.requests[0] + window - now
        if limit.rpm is not None and requests >= limit.rpm:
            requests_retry = NEVER if state is None or limit.rpm == 0 else state.requests[requests - limit.rpm] + window - now
        charged, tokens_reset, tokens_retry = 0, math.floor(now) + 1 + window - now, 0.0
        if limit.tpm is not None and state is not None and state.buckets:
            charged, tokens_reset = sum(state.buckets.values()), next(iter(state.buckets)) + 1 + window - now
            left = charged
            for second, amount in state.buckets.items():
                if left + tokens <= limit.tpm:
                    break
                left -= amount
                tokens_retry = second + 1 + window - now
        leases = len(state.leases) if limit.parallel is not None and state is not None else 0
        return Seen(requests, requests_reset, requests_retry, charged, tokens_reset, tokens_retry, leases)

    def _sweep(self, now: float) -> None:
        """Drop the scopes nobody has used for a window (and no lease holds)."""
        for scope in [scope for scope, state in self._scopes.items() if state.prune(now, self.window)]:
            del self._scopes[scope]
        self._sweep_at = now + self.window
