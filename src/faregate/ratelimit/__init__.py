"""Rate limits (requests per minute, tokens per minute, parallel requests) for several scopes at once.

A request names every limit that applies to it (its key's, its team's, its deployment's) and is
admitted only if all of them have room; then, and only then, it is recorded against all of them
(all-or-nothing: a request refused by its team costs its key nothing). Two interchangeable backends:

- ``LocalLimiter``: in this process; plain methods, no awaits, so concurrent tasks cannot interleave.
- ``RedisLimiter``: exact across workers and instances: one Lua script per admission, timed by
  the Redis clock; falls back to a ``LocalLimiter`` of its own while Redis is down.

Semantics, the same in both:

- rpm: at most ``rpm`` admissions in any window of ``window`` seconds (default 60): a log of
  admission times, so the window slides exactly.
- tpm: at most ``tpm`` tokens in any window, counted in one-second buckets. A bucket counts until
  ``window`` seconds after its *end*, so the limit is never exceeded (a token may count up to one
  second longer than the window). A request is charged its estimate at admission; ``release``
  replaces the estimate by the real count. A request whose estimate alone exceeds ``tpm`` can
  never be admitted and is refused with a message that says so.
- parallel: a lease per admitted request, freed by ``release`` or, if its worker died, when it
  expires (``lease`` seconds, default 15 min).
- A refusal names the limit whose ``retry_after`` is longest (a retry sooner would be refused
  again); ``retry_after`` is exact for rpm and tpm, ``PARALLEL_RETRY_SECONDS`` for parallel (nobody
  knows when a request will end), None when the request can never be admitted.
"""

from faregate.ratelimit.base import (
    LEASE_SECONDS,
    PARALLEL_RETRY_SECONDS,
    WINDOW_SECONDS,
    Kind,
    Limit,
    Limiter,
    Refused,
    Ticket,
    Window,
    format_reset,
    headers,
)
from faregate.ratelimit.local import LocalLimiter

# RedisLimiter (faregate.ratelimit.redis_limiter) is not imported here: redis (~8 MiB) loads only where state.redis is set

__all__ = [
    "LEASE_SECONDS",
    "PARALLEL_RETRY_SECONDS",
    "WINDOW_SECONDS",
    "Kind",
    "Limit",
    "Limiter",
    "LocalLimiter",
    "Refused",
    "Ticket",
    "Window",
    "format_reset",
    "headers",
]
