"""The types both backends share, the verdict on one admission, and the x-ratelimit-* headers.

The verdict is computed here, from what each backend saw of every scope (``Seen``), so the two
backends cannot disagree on a message, a ``retry_after`` or a header; the Lua script in
``redis_limiter`` decides admission by the same three comparisons as ``refusal``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from faregate.errors import RateLimitExceeded

WINDOW_SECONDS = 60.0
LEASE_SECONDS = 900.0  # a parallel slot not released after this long is freed (its worker crashed)
PARALLEL_RETRY_SECONDS = 1.0
NEVER = math.inf

Kind = Literal["rpm", "tpm", "parallel"]


@dataclass(frozen=True, slots=True)
class Limit:
    """The limits of one scope, e.g. ``Limit("key:key_ab12", rpm=60)``; None means unlimited."""

    scope: str  # "key:key_ab12", "team:team_x", "deployment:openai/gpt-4o"
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "parallel"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{self.scope}: {name} must be a whole number >= 0 or None, not {value!r}")


@dataclass(frozen=True, slots=True)
class Window:
    """What the ``x-ratelimit-*`` headers say: the tightest rpm and the tightest tpm limit.

    ``reset_*`` is the time until the oldest request (or token bucket) counted leaves the window,
    i.e. until one more request fits when none remains."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


EMPTY_WINDOW = Window()


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request. Release it exactly once, at its end, with its real token count."""

    id: str
    limits: tuple[Limit, ...]  # only those with a value: empty when nothing limits the request
    tokens: int  # the estimate charged at admission
    window: Window
    second: int = 0  # the tpm bucket charged (by the clock of the backend that admitted it)
    local: bool = True  # recorded in this process (a LocalLimiter, or a RedisLimiter's fallback)


class Refused(RateLimitExceeded):
    """One of our limits refused a request (429 rate_limit_exceeded, with x-ratelimit-* headers)."""

    def __init__(self, message: str, *, scope: str, kind: Kind, limit: int, retry_after: float | None, window: Window) -> None:
        super().__init__(message, retry_after=retry_after, headers=headers(window))
        self.scope = scope
        self.kind = kind
        self.limit = limit
        self.window = window


class Limiter(Protocol):
    @property
    def degraded(self) -> bool:
        """True while limits are enforced per process only, because their shared store is unreachable."""
        ...

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Ticket:
        """Admit and record a request estimated at ``tokens``, or raise ``Refused``."""
        ...

    async def release(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """Free the ticket's parallel slots; charge ``actual_tokens`` instead of the estimate (None: keep it)."""
        ...

    async def close(self) -> None: ...


# -- headers --------------------------------------------------------------------------------------


def format_reset(seconds: float) -> str:
    """A duration as OpenAI's reset headers write it: ``20ms``, ``1s``, ``8.64s``, ``1m30s``, ``6m0s``."""
    ms = round(seconds * 1000) if seconds > 0 else 0
    if ms == 0:
        return "1ms" if seconds > 0 else "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def headers(window: Window) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*`` response headers that apply (none when no rpm or tpm limit does)."""
    out: list[tuple[bytes, bytes]] = []
    if window.limit_requests is not None:
        out.append((b"x-ratelimit-limit-requests", str(window.limit_requests).encode()))
        out.append((b"x-ratelimit-remaining-requests", str(window.remaining_requests).encode()))
        if window.reset_requests is not None:
            out.append((b"x-ratelimit-reset-requests", format_reset(window.reset_requests).encode()))
    if window.limit_tokens is not None:
        out.append((b"x-ratelimit-limit-tokens", str(window.limit_tokens).encode()))
        out.append((b"x-ratelimit-remaining-tokens", str(window.remaining_tokens).encode()))
        if window.reset_tokens is not None:
            out.append((b"x-ratelimit-reset-tokens", format_reset(window.reset_tokens).encode()))
    return out


# -- the verdict, shared by both backends ---------------------------------------------------------


class Seen(NamedTuple):
    """One scope's state at an admission, before recording it (times in seconds, NEVER = math.inf)."""

    requests: int  # admitted in the window
    requests_reset: float  # until the oldest of them leaves it (the window length when none)
    requests_retry: float  # until one more request fits: 0 when it fits now
    tokens: int  # charged in the window
    tokens_reset: float  # until the oldest bucket leaves it
    tokens_retry: float  # until this request's tokens fit: 0 when they fit now
    leases: int  # parallel requests in flight


def active(limits: Sequence[Limit]) -> list[Limit]:
    """The limits that limit something; ValueError if a scope appears twice."""
    found = [limit for limit in limits if limit.rpm is not None or limit.tpm is not None or limit.parallel is not None]
    if len(found) > 1 and len({limit.scope for limit in found}) != len(found):
        raise ValueError(f"each scope may appear once in a request's limits: {[limit.scope for limit in found]}")
    return found


def unlimited(tokens: int) -> Ticket:
    return Ticket("", (), tokens, EMPTY_WINDOW)


def new_id() -> str:
    return os.urandom(9).hex()


def window_of(limits: Sequence[Limit], seen: Sequence[Seen], tokens: int, admitted: bool) -> Window:
    """The tightest rpm and tpm limits, counting the request itself if it was admitted."""
    requests: tuple[int, int, float] | None = None
    charged: tuple[int, int, float] | None = None
    for limit, s in zip(limits, seen, strict=True):
        if limit.rpm is not None:
            left = max(0, limit.rpm - s.requests - (1 if admitted else 0))
            if requests is None or (left, limit.rpm) < requests[:2]:
                requests = (left, limit.rpm, s.requests_reset)
        if limit.tpm is not None:
            left = max(0, limit.tpm - s.tokens - (tokens if admitted else 0))
            if charged is None or (left, limit.tpm) < charged[:2]:
                charged = (left, limit.tpm, s.tokens_reset)
    if requests is None and charged is None:
        return EMPTY_WINDOW
    r_left, r_limit, r_reset = requests or (None, None, None)
    t_left, t_limit, t_reset = charged or (None, None, None)
    return Window(r_limit, r_left, r_reset, t_limit, t_left, t_reset)


def refusal(limits: Sequence[Limit], seen: Sequence[Seen], tokens: int, window: float) -> Refused | None:
    """None if every limit has room; else the refusal whose wait is longest."""
    worst: tuple[float, Kind, Limit, int] | None = None
    for limit, s in zip(limits, seen, strict=True):
        found: list[tuple[float, Kind, Limit, int]] = []
        if limit.rpm is not None and s.requests >= limit.rpm:
            found.append((s.requests_retry, "rpm", limit, limit.rpm))
        if limit.tpm is not None and (tokens > limit.tpm or s.tokens + tokens > limit.tpm):
            found.append((NEVER if tokens > limit.tpm else s.tokens_retry, "tpm", limit, limit.tpm))
        if limit.parallel is not None and s.leases >= limit.parallel:
            found.append((NEVER if limit.parallel == 0 else PARALLEL_RETRY_SECONDS, "parallel", limit, limit.parallel))
        for item in found:
            if worst is None or item[0] > worst[0]:
                worst = item
    if worst is None:
        return None
    wait, kind, limit, value = worst
    retry_after = None if wait == NEVER else wait
    per = "minute" if window == 60 else f"{window:g}s"
    if kind == "tpm" and tokens > value:
        message = (
            f"request too large for {limit.scope}: its estimated {tokens} tokens exceed the limit of {value} tokens per {per}, "
            "so it can never be admitted; shorten the prompt or lower max_tokens"
        )
    elif retry_after is None:
        message = f"rate limit reached for {limit.scope}: its {kind} limit is 0, so no request is admitted"
    elif kind == "parallel":
        message = f"rate limit reached for {limit.scope}: at most {value} requests in parallel; retry when one has finished"
    else:
        unit = "requests" if kind == "rpm" else "tokens"
        need = "" if kind == "rpm" else f" (this request is estimated at {tokens})"
        message = f"rate limit reached for {limit.scope}: {value} {unit} per {per}{need}; retry in {format_reset(wait)}"
    return Refused(
        message,
        scope=limit.scope,
        kind=kind,
        limit=value,
        retry_after=retry_after,
        window=window_of(limits, seen, tokens, admitted=False),
    )
