"""Usage -> cost in USD from a price (USD per million tokens). Pure."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.formats import neutral
from faregate.types import Price, Usage

PER_TOKEN = 1e-6
MAX_TOKENS = 10**9  # the bound on any one count (as providers.openai's)


def usage_from_neutral(usage: neutral.Usage) -> Usage:
    """A codec's normalised usage in faregate's (OpenAI's) sense: the prompt counts every input token,
    cache reads and writes included; unset counts are 0. A count that is not a whole number from 0
    to 10^9 makes the usage unknown (``anomaly``), as on the diagonal."""
    fields = (
        ("input", usage.input),
        ("cache_read", usage.cache_read),
        ("cache_write_5m", usage.cache_write_5m),
        ("cache_write_1h", usage.cache_write_1h),
        ("output", usage.output),
        ("reasoning", usage.reasoning),
    )
    counts: list[int] = []
    problems: list[str] = []
    for name, value in fields:
        if value is None:
            value = 0
        if type(value) is not int or not 0 <= value <= MAX_TOKENS:
            problems.append(f"{name} is not a whole number from 0 to 10^9 ({value!r})")
            value = 0
        counts.append(value)
    if problems:
        return Usage(anomaly="; ".join(problems))
    fresh, read, write_5m, write_1h, output, reasoning = counts
    return Usage(
        prompt_tokens=fresh + read + write_5m + write_1h,
        completion_tokens=output,
        cached_tokens=read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        reasoning_tokens=reasoning,
    )


_BESIDE_PROMPT = ("system", "instructions", "tools")  # sent as prompt tokens too: Anthropic's system, Responses' instructions, tool schemas


def prompt_bytes(payload: dict[str, Any]) -> int:
    """Bytes of the prompt as JSON: the basis of every estimate made before the upstream answers.
    Besides ``messages`` (``prompt``, ``input``), an Anthropic body's top-level ``system``, a
    Responses body's ``instructions`` and every format's ``tools`` are billed as prompt tokens."""
    prompt = payload.get("messages") or payload.get("prompt") or payload.get("input") or ""
    size = len(orjson.dumps(prompt))
    for name in _BESIDE_PROMPT:
        extra = payload.get(name)
        if extra:
            size += len(orjson.dumps(extra))
    return size


def asks_cache_write(payload: dict[str, Any]) -> bool:
    """Whether the request marks content for prompt caching (Anthropic's ``cache_control``, on a
    block or the whole request): its prompt may then be billed at the cache-write rates."""
    if "cache_control" in payload:
        return True
    parts = (payload.get("messages"), payload.get("system"), payload.get("tools"))
    return any(part and b'"cache_control"' in orjson.dumps(part) for part in parts)


def requested_output(payload: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, ``max_tokens`` or (Responses) ``max_output_tokens`` when the
    request sets a positive whole number."""
    requested = payload.get("max_completion_tokens") or payload.get("max_tokens") or payload.get("max_output_tokens")
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        return requested
    return None


def estimate_tokens(payload: dict[str, Any]) -> int:
    """Tokens a request is charged against tpm limits when admitted (corrected with the real usage
    afterwards): about 4 bytes of JSON per prompt token, plus the output it asks for, if it says."""
    return prompt_bytes(payload) // 4 + 16 + (requested_output(payload) or 0)


def cost(usage: Usage | None, price: Price | None) -> float | None:
    """None when the deployment is unpriced or the usage is unknown (absent, or invalid: ``anomaly``):
    never a silent $0, never negative. Cache reads are priced at ``cached_input``, 5-minute and
    1-hour cache writes at ``cache_write`` and ``cache_write_1h``, the rest of the prompt at
    ``input``; an unset cache rate falls back as ``Price`` says. The cache counts are parts of
    ``prompt_tokens``: together they are capped at it, so a count is never priced twice."""
    if usage is None or price is None or usage.anomaly is not None:
        return None
    left = usage.prompt_tokens
    cached = min(usage.cached_tokens, left)
    left -= cached
    write_5m = min(usage.cache_write_5m, left)
    left -= write_5m
    write_1h = min(usage.cache_write_1h, left)
    left -= write_1h
    read_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    write_1h_rate = write_rate if price.cache_write_1h is None else price.cache_write_1h
    prompt = left * price.input + cached * read_rate + write_5m * write_rate + write_1h * write_1h_rate
    return (prompt + usage.completion_tokens * price.output) * PER_TOKEN
