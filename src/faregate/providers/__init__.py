"""Provider adapters (sans-IO; see README.md) and what each supports."""

from __future__ import annotations

from faregate.types import Endpoint

SUPPORTED: dict[str, frozenset[Endpoint]] = {
    "openai": frozenset({"chat", "completions", "embeddings"}),
    "mock": frozenset({"chat", "completions", "embeddings"}),
}
LOCAL = frozenset({"mock"})  # answered in-process, no HTTP
