"""Usage -> cost in USD from a price (USD per million tokens). Pure."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.types import Price, Usage

PER_TOKEN = 1e-6


def prompt_bytes(payload: dict[str, Any]) -> int:
    """Bytes of the prompt as JSON: the basis of every estimate made before the upstream answers."""
    prompt = payload.get("messages") or payload.get("prompt") or payload.get("input") or ""
    return len(orjson.dumps(prompt))


def requested_output(payload: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` or ``max_tokens`` when the request sets a positive whole number."""
    requested = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        return requested
    return None


def estimate_tokens(payload: dict[str, Any]) -> int:
    """Tokens a request is charged against tpm limits when admitted (corrected with the real usage
    afterwards): about 4 bytes of JSON per prompt token, plus the output it asks for, if it says."""
    return prompt_bytes(payload) // 4 + 16 + (requested_output(payload) or 0)


def cost(usage: Usage | None, price: Price | None) -> float | None:
    """None when the deployment is unpriced or the usage is unknown (absent, or invalid: ``anomaly``):
    never a silent $0, never negative."""
    if usage is None or price is None or usage.anomaly is not None:
        return None
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return ((usage.prompt_tokens - cached) * price.input + cached * cached_rate + usage.completion_tokens * price.output) * PER_TOKEN
