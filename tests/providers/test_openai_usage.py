"""Usage counts an upstream reports are checked before anything is priced or counted with them:
whole numbers from 0 to MAX_TOKENS, else the usage is unknown (with what was wrong)."""

from __future__ import annotations

from typing import Any

import pytest

from faregate.providers.openai import MAX_TOKENS, usage_of
from faregate.types import Usage


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 7, "completion_tokens": 2}, Usage(7, 2, 0)),
        ({"prompt_tokens": 7, "completion_tokens": None}, Usage(7, 0, 0)),  # embeddings: no completion
        ({"prompt_tokens": 7.0, "completion_tokens": 2.0}, Usage(7, 2, 0)),  # a whole number written as 7.0
        ({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}, Usage(9, 0, 4)),
        ({"prompt_tokens": MAX_TOKENS, "completion_tokens": 0}, Usage(MAX_TOKENS, 0, 0)),
        (  # o-series / gpt-5 reasoning: part of completion_tokens, reported apart too
            {"prompt_tokens": 5, "completion_tokens": 40, "completion_tokens_details": {"reasoning_tokens": 32}},
            Usage(5, 40, 0, reasoning_tokens=32),
        ),
    ],
)
def test_valid_usage(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_of({"usage": usage}) == expected


@pytest.mark.parametrize(
    ("usage", "anomaly"),
    [
        ({"prompt_tokens": -1_000_000_000, "completion_tokens": 5}, "prompt_tokens is negative (-1000000000)"),
        ({"prompt_tokens": 1e300}, "prompt_tokens is above 10^9 (1e+300)"),
        ({"completion_tokens": 18446744073709551616.0}, "completion_tokens is above 10^9"),
        ({"prompt_tokens": MAX_TOKENS + 1}, "prompt_tokens is above 10^9"),
        ({"prompt_tokens": 2.5}, "prompt_tokens is not a whole number (float)"),
        ({"prompt_tokens": True}, "prompt_tokens is not a whole number (bool)"),
        ({"prompt_tokens": "12"}, "prompt_tokens is not a whole number (str)"),
        ({"prompt_tokens": float("nan")}, "prompt_tokens is not a whole number (float)"),
        ({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": -3}}, "cached_tokens is negative (-3)"),
        ({"completion_tokens": 3, "completion_tokens_details": {"reasoning_tokens": "3"}}, "reasoning_tokens is not a whole number (str)"),
    ],
)
def test_invalid_usage_is_unknown_and_says_why(usage: dict[str, Any], anomaly: str) -> None:
    found = usage_of({"usage": usage})
    assert found is not None and found.anomaly is not None and anomaly in found.anomaly
    assert (found.prompt_tokens, found.completion_tokens, found.cached_tokens) == (0, 0, 0)


def test_no_usage_object_is_none() -> None:
    assert usage_of({"choices": []}) is None
    assert usage_of({"usage": None}) is None
    assert usage_of([1, 2]) is None
