"""Small frozen types shared by every layer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Endpoint = Literal["chat", "completions", "embeddings"]


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
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None

    def describe(self) -> str:
        return f"${self.input:g}/${self.output:g} per M in/out"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    anomaly: str | None = None  # set when the upstream reported invalid counts (the counts are then 0): usage unknown
