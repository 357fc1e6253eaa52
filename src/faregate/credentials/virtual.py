"""Virtual keys: the one hash function, the key format, and the per-worker key cache.

A virtual key is `sk-fg-` + 32 random URL-safe characters. Only its sha256 is stored; the secret
is shown once, at creation or rotation. The cache holds what the database said about a hash for
at most ``CACHE_TTL`` seconds; the bus's VirtualKeyChanged events drop entries at once on every
worker, and an entry read from the database is not stored if an invalidation for that hash
arrived while the read was in flight (no resurrection of a revoked key).
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store import keys as keys_table

PREFIX = "sk-fg-"
CACHE_TTL = 10.0  # the backstop when the bus is down: a revoked key is refused within this
NEGATIVE_TTL = 2.0  # an unknown hash is remembered this long (spares the database a retry storm)
MAX_ENTRIES = 100_000


def hash_key(secret: str) -> str:
    """THE hash of a virtual key (sha256 hex); used to store, to look up and to invalidate."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(24)


def display_prefix(secret: str) -> str:
    return f"{secret[:10]}…{secret[-4:]}"


@dataclass(frozen=True, slots=True)
class VirtualKey:
    id: str
    name: str
    models: tuple[str, ...]
    expires_at: float | None
    enabled: bool
    user_id: str | None
    budget_usd: float | None = None
    team_id: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    team_enabled: bool = True
    team_budget_usd: float | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    team_max_parallel: int | None = None

    @staticmethod
    def from_row(row: dict[str, Any], key_hash: str) -> VirtualKey:
        expires_at = row.get("expires_at")
        if row["key_hash"] != key_hash:  # the secret before a rotation: valid until its grace ends
            grace_end = row.get("previous_valid_until") or 0.0
            expires_at = grace_end if expires_at is None else min(expires_at, grace_end)
        return VirtualKey(
            id=row["id"],
            name=row["name"],
            models=tuple(row.get("models") or ()),
            expires_at=expires_at,
            enabled=bool(row["enabled"]),
            user_id=row.get("user_id"),
            budget_usd=row.get("budget_usd"),
            team_id=row.get("team_id"),
            rpm=row.get("rpm"),
            tpm=row.get("tpm"),
            max_parallel=row.get("max_parallel"),
            team_enabled=row.get("team_enabled") is not False,
            team_budget_usd=row.get("team_budget_usd"),
            team_rpm=row.get("team_rpm"),
            team_tpm=row.get("team_tpm"),
            team_max_parallel=row.get("team_max_parallel"),
        )

    def refusal(self, now: float) -> str | None:
        """Why this key cannot be used now, or None."""
        if not self.enabled:
            return "this API key has been revoked or disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "this API key has expired"
        if not self.team_enabled:
            return f"this API key's team {self.team_id} is disabled"
        return None

    def allows(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


Lookup = Callable[[str, float], Awaitable[dict[str, Any] | None]]


class VirtualKeys:
    """The database and the cache together: what auth asks, and what admin changes invalidate."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.cache = KeyCache()

    async def resolve(self, key_hash: str) -> VirtualKey | None:
        return await self.cache.resolve(key_hash, self._lookup)

    async def _lookup(self, key_hash: str, now: float) -> dict[str, Any] | None:
        return await keys_table.by_hash(self.engine, key_hash, now)

    def invalidate(self, key_hash: str) -> None:
        self.cache.invalidate(key_hash)

    def invalidate_team(self, team_id: str) -> None:
        self.cache.invalidate_team(team_id)

    def clear(self) -> None:
        self.cache.clear()


class KeyCache:
    """Per-worker cache of hash -> key (or None for unknown). Only this class writes it."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[VirtualKey | None, float]] = {}
        self._epochs: dict[str, int] = {}
        self._team_epoch = 0  # bumped by every team change and every clear: a lookup that raced one is not cached

    async def resolve(self, key_hash: str, lookup: Lookup) -> VirtualKey | None:
        now = time.monotonic()
        entry = self._entries.get(key_hash)
        if entry is not None and entry[1] > now:
            return entry[0]
        epoch, team_epoch = self._epochs.get(key_hash, 0), self._team_epoch
        row = await lookup(key_hash, time.time())  # may raise: the caller answers 503, not 401
        key = VirtualKey.from_row(row, key_hash) if row is not None else None
        if self._epochs.get(key_hash, 0) == epoch and self._team_epoch == team_epoch:  # nothing invalidated it meanwhile
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_hash] = (key, time.monotonic() + (CACHE_TTL if key is not None else NEGATIVE_TTL))
        return key

    def invalidate(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)
        self._epochs[key_hash] = self._epochs.get(key_hash, 0) + 1

    def invalidate_team(self, team_id: str) -> None:
        """Drop every cached key of this team (its budget, limits or enabled flag changed)."""
        self._team_epoch += 1
        for key_hash, (key, _) in list(self._entries.items()):
            if key is not None and key.team_id == team_id:
                self.invalidate(key_hash)

    def clear(self) -> None:
        """Drop every entry (the worker may have missed changes); cheap, as it may run per request
        while the control bus is away."""
        self._entries = {}
        self._team_epoch += 1
