"""What a cached answer is keyed on: the tenant, the route, and the canonical request.

The canonical request is the client's payload without the fields that cannot change the answer
(``IGNORED``: who asks, how it is delivered), as sorted-keys JSON; the key is the SHA-256 of the
tenant, the client format, the endpoint, the public model name and that JSON. The tenant is the
key's team, else the key itself, else the master key: one customer can never read another's
cached answers. The public model name is generation-independent, so a reload does not empty the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

# Fields that do not change what the model answers: who asks, how the answer is delivered, what the
# provider keeps. Everything else (messages, tools, tool_choice, sampling parameters, response
# format, max tokens, stop, ...) is part of the key.
IGNORED = frozenset({"user", "metadata", "stream", "stream_options", "store", "safety_identifier", "prompt_cache_key"})
MASTER_TENANT = "master"


@dataclass(frozen=True, slots=True)
class Directives:
    """What the client's Cache-Control allows: read a cached answer, store a fresh one."""

    read: bool = True
    store: bool = True


def directives(header: bytes | None) -> Directives:
    """``no-cache``: do not answer from the cache, but store the fresh answer; ``no-store``: neither
    (RFC 9111 5.2.1: request directives, case-insensitive tokens, comma-separated)."""
    if not header:
        return Directives()
    tokens = {part.strip().split(b"=", 1)[0].lower() for part in header.split(b",")}
    if b"no-store" in tokens:
        return Directives(read=False, store=False)
    if b"no-cache" in tokens:
        return Directives(read=False)
    return Directives()


def tenant(key_id: str | None, team_id: str | None) -> str:
    """Whose cache a request reads and fills: its key's team, else the key, else the master key."""
    if team_id is not None:
        return "team:" + team_id
    if key_id is not None:
        return "key:" + key_id
    return MASTER_TENANT


def cacheable(payload: dict[str, Any]) -> bool:
    """Whether the answer can be kept whole: several choices (``n`` > 1) or log probabilities do
    not go through the neutral model a replay is written from."""
    n = payload.get("n")
    return (n is None or n == 1) and not payload.get("logprobs") and not payload.get("top_logprobs")


def canonical(payload: dict[str, Any]) -> bytes:
    """The request as sorted-keys JSON, without the fields that do not change the answer."""
    kept = {name: value for name, value in payload.items() if name not in IGNORED}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def cache_key(tenant_id: str, fmt: str, endpoint: str, model: str, payload: dict[str, Any]) -> str:
    """The hex SHA-256 naming one cached answer. Each part is length-prefixed, so no two different
    (tenant, format, endpoint, model) can run together into the same text."""
    digest = hashlib.sha256()
    for part in (tenant_id, fmt, endpoint, model):
        data = part.encode()
        digest.update(b"%d:" % len(data))
        digest.update(data)
    digest.update(canonical(payload))
    return digest.hexdigest()
