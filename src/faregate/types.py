"""Small frozen types shared by every layer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Endpoint = Literal[
    "chat",
    "completions",
    "embeddings",
    "messages",
    "count_tokens",
    "responses",  # OpenAI Responses (/v1/responses): a conversation, translated where no transport serves it
    # OpenAI's endpoints served on the diagonal only (media.py): relayed as the upstream answers them
    "moderations",
    "images_generations",
    "audio_transcriptions",
    "audio_speech",
]


def fingerprint(value: str) -> str:
    """First 8 hex digits of sha256(value): enough to tell keys apart, useless to an attacker."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class Secret:
    """A secret value whose repr and str never show it."""

    __slots__ = ("_value", "fingerprint")

    def __init__(self, value: str) -> None:
        self._value = value
        self.fingerprint = fingerprint(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(sha256:{self.fingerprint})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.fingerprint)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cached_input`` prices cache reads, ``cache_write`` 5-minute cache
    writes and ``cache_write_1h`` 1-hour ones. An unset cache rate falls back (``costs.cost``): reads
    and 5-minute writes to ``input``, 1-hour writes to ``cache_write`` (then ``input``), so a missing
    rate never makes a token free, but a published write premium must be in the table to be charged."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None

    def describe(self) -> str:
        return f"${self.input:g}/${self.output:g} per M in/out"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in OpenAI's sense, whatever the provider: ``prompt_tokens`` counts EVERY prompt
    token, cache reads (``cached_tokens``) and cache writes (``cache_write_5m``, ``cache_write_1h``)
    included; ``completion_tokens`` includes ``reasoning_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning_tokens: int = 0
    anomaly: str | None = None  # set when the upstream reported invalid counts (the counts are then 0): usage unknown
