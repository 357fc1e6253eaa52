"""Usage -> cost in USD from a price (USD per million tokens). Pure."""

from __future__ import annotations

from faregate.types import Price, Usage

PER_TOKEN = 1e-6


def cost(usage: Usage | None, price: Price | None) -> float | None:
    """None when the deployment is unpriced or the usage is unknown: never a silent $0."""
    if usage is None or price is None:
        return None
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return ((usage.prompt_tokens - cached) * price.input + cached * cached_rate + usage.completion_tokens * price.output) * PER_TOKEN
