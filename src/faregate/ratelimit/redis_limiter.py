"""Rate limits shared by every worker of every instance through one Redis.

One Lua script per admission checks every scope and records in all of them only if all have room,
timed by ``redis.call('TIME')``: instances' clocks differ, Redis has one. Keys (``faregate:rl:``
+ kind + scope) expire once nothing in them counts any more, so idle scopes vanish.

A Redis outage must not become an outage of the gateway: on a Redis or socket error the limiter
admits through a ``LocalLimiter`` of its own (limits then hold per process), warns at most every
``WARN_EVERY_SECONDS``, and lets one request try Redis again every ``recheck`` seconds. A ticket
admitted by the fallback is released to it. Releases that fail are dropped: leases expire by
themselves, and a lost token correction only leaves the estimate charged.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

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
from faregate.ratelimit.local import LocalLimiter

log = logging.getLogger("faregate.ratelimit")

PREFIX = "faregate:rl:"
TIMEOUT_SECONDS = 0.5  # connect and read: the most an admission waits for Redis before the fallback answers
RECHECK_SECONDS = 3.0  # while degraded, one request tries Redis again this often
WARN_EVERY_SECONDS = 30.0

# KEYS: three per scope: its request log (zset: ticket id -> admission time), its token buckets
#       (hash: second -> tokens) and its leases (zset: ticket id -> expiry).
# ARGV: ticket id, tokens, window, lease, then three per scope: rpm, tpm, parallel (-1: none).
# Returns one string (a fraction of the client's parsing work of an array): "admitted(0|1) second",
# then per scope the seven fields of base.Seen, times in microseconds, -1 for never.
# Admits by the same comparisons as base.refusal.
ADMIT = """
local clock = redis.call('TIME')
local second = tonumber(clock[1])
local now = second + tonumber(clock[2]) / 1000000
local id, tokens, window, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function us(seconds) if seconds == nil then return -1 end return math.ceil(seconds * 1000000) end
local function at(seconds) return string.format('%.6f', seconds) end
local out, admitted, scopes = {0, second}, 1, #KEYS / 3
for i = 0, scopes - 1 do
  local log, buckets, leases = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local rpm, tpm, parallel = tonumber(ARGV[3 * i + 5]), tonumber(ARGV[3 * i + 6]), tonumber(ARGV[3 * i + 7])
  local requests, requests_reset, requests_retry = 0, window, 0
  local charged, tokens_reset, tokens_retry, held = 0, second + 1 + window - now, 0, 0
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', at(now - window))
    requests = redis.call('ZCARD', log)
    if requests > 0 then
      requests_reset = tonumber(redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2]) + window - now
    end
    if requests >= rpm then
      admitted = 0
      if rpm == 0 then
        requests_retry = nil
      else
        local entry = redis.call('ZRANGE', log, requests - rpm, requests - rpm, 'WITHSCORES')
        requests_retry = tonumber(entry[2]) + window - now
      end
    end
  end
  if tpm >= 0 then
    local flat, seconds, amounts = redis.call('HGETALL', buckets), {}, {}
    for j = 1, #flat, 2 do
      local s = tonumber(flat[j])
      if s + 1 + window <= now then
        redis.call('HDEL', buckets, flat[j])
      else
        table.insert(seconds, s)
        amounts[s] = tonumber(flat[j + 1])
        charged = charged + amounts[s]
      end
    end
    table.sort(seconds)
    if #seconds > 0 then tokens_reset = seconds[1] + 1 + window - now end
    if tokens > tpm or charged + tokens > tpm then admitted = 0 end
    local left = charged
    for _, s in ipairs(seconds) do
      if left + tokens <= tpm then break end
      left = left - amounts[s]
      tokens_retry = s + 1 + window - now
    end
  end
  if parallel >= 0 then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', at(now))
    held = redis.call('ZCARD', leases)
    if held >= parallel then admitted = 0 end
  end
  local seen = {requests, us(requests_reset), us(requests_retry), charged, us(tokens_reset), us(tokens_retry), held}
  for _, value in ipairs(seen) do table.insert(out, value) end
end
if admitted == 1 then
  for i = 0, scopes - 1 do
    local log, buckets, leases = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
    if tonumber(ARGV[3 * i + 5]) >= 0 then
      redis.call('ZADD', log, at(now), id)
      redis.call('PEXPIRE', log, math.ceil(window * 1000) + 1000)
    end
    if tonumber(ARGV[3 * i + 6]) >= 0 and tokens > 0 then
      redis.call('HINCRBY', buckets, second, tokens)
      redis.call('PEXPIRE', buckets, math.ceil((window + 1) * 1000) + 1000)
    end
    if tonumber(ARGV[3 * i + 7]) >= 0 then
      redis.call('ZADD', leases, at(now + lease), id)
      redis.call('PEXPIRE', leases, math.ceil(lease * 1000) + 1000)
    end
  end
end
out[1] = admitted
return table.concat(out, ' ')
"""

# KEYS: the token buckets to correct, then the leases to free. ARGV: ticket id, its second, the
# correction, how many KEYS are token buckets. A bucket that has expired is not brought back.
RELEASE = """
local id, second, delta, corrected = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #KEYS do
  if i > corrected then
    redis.call('ZREM', KEYS[i], id)
  elseif redis.call('HEXISTS', KEYS[i], second) == 1 then
    redis.call('HINCRBY', KEYS[i], second, delta)
  end
end
return 1
"""


class RedisLimiter:
    """Limits exact across workers and instances; per process while Redis is unreachable."""

    def __init__(
        self,
        url: str,
        *,
        window: float = WINDOW_SECONDS,
        lease: float = LEASE_SECONDS,
        recheck: float = RECHECK_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.window = window
        self.lease = lease
        self.recheck = recheck
        self._fallback = LocalLimiter(window=window, lease=lease)  # validates window and lease
        # One immediate retry after a broken connection (a pooled one may have died with a Redis restart),
        # none after a timeout, no backoff: the fallback is the answer to an outage, not waiting.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
        self._admit = self._client.register_script(ADMIT)
        self._release = self._client.register_script(RELEASE)
        self._degraded = False
        self._recheck_at = 0.0
        self._warned_at = -math.inf

    @property
    def degraded(self) -> bool:
        """True while admissions go to the per-process fallback because Redis did not answer."""
        return self._degraded

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Ticket:
        found = active(limits)
        if not found:
            return unlimited(tokens)
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens}")
        if self._degraded:
            now = time.monotonic()
            if now < self._recheck_at:
                return self._fallback.admit(found, tokens)
            self._recheck_at = now + self.recheck  # this request probes Redis; the others stay local meanwhile
        ticket_id = new_id()
        keys: list[str] = []
        args: list[Any] = [ticket_id, tokens, self.window, self.lease]
        for limit in found:
            keys += (f"{PREFIX}requests:{limit.scope}", f"{PREFIX}tokens:{limit.scope}", f"{PREFIX}leases:{limit.scope}")
            args += (_arg(limit.rpm), _arg(limit.tpm), _arg(limit.parallel))
        try:
            reply = [int(value) for value in (await self._admit(keys=keys, args=args)).split()]
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return self._fallback.admit(found, tokens)
        if self._degraded:
            self._degraded = False
            log.warning("rate limits are shared through Redis again")
        seen = [_seen(reply[i : i + 7]) for i in range(2, len(reply), 7)]
        if not reply[0]:
            raise refusal(found, seen, tokens, self.window) or RuntimeError("the rate limit script refused what its verdict admits")
        return Ticket(ticket_id, tuple(found), tokens, window_of(found, seen, tokens, admitted=True), int(reply[1]), local=False)

    async def release(self, ticket: Ticket, actual_tokens: int | None) -> None:
        if not ticket.limits:
            return
        if ticket.local:
            self._fallback.free(ticket, actual_tokens)
            return
        delta = 0 if actual_tokens is None else max(0, actual_tokens) - ticket.tokens
        buckets = [f"{PREFIX}tokens:{limit.scope}" for limit in ticket.limits if limit.tpm is not None] if delta else []
        leases = [f"{PREFIX}leases:{limit.scope}" for limit in ticket.limits if limit.parallel is not None]
        if not buckets and not leases:
            return
        try:
            await self._release(keys=buckets + leases, args=[ticket.id, ticket.second, delta, len(buckets)])
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()

    def _lost(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._degraded = True
        self._recheck_at = now + self.recheck
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("rate limits hold per process only until Redis answers again: %s", _describe(exc))


def _arg(value: int | None) -> int:
    return -1 if value is None else value


def _seconds(microseconds: int) -> float:
    return NEVER if microseconds < 0 else microseconds / 1_000_000


def _seen(values: list[int]) -> Seen:
    requests, requests_reset, requests_retry, tokens, tokens_reset, tokens_retry, leases = values
    return Seen(
        requests, _seconds(requests_reset), _seconds(requests_retry), tokens, _seconds(tokens_reset), _seconds(tokens_retry), leases
    )


def _describe(exc: BaseException) -> str:
    """The error's class, and Redis's own message for a command error (never the URL: it may hold a password)."""
    if isinstance(exc, ResponseError):
        return f"{exc.__class__.__name__}: {str(exc)[:200]}"
    return f"redis unreachable ({exc.__class__.__name__})"
