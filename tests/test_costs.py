"""Usage -> cost (``costs.cost``): cache reads, 5-minute and 1-hour cache writes each at their own
rate, the rest of the prompt at input; a missing cache rate falls back as ``Price`` documents.
And a codec's neutral usage -> faregate's usage (``costs.usage_from_neutral``)."""

from __future__ import annotations

import pytest

from faregate.costs import cost, estimate_tokens, prompt_bytes, usage_from_neutral
from faregate.formats import neutral
from faregate.limits import max_cost
from faregate.types import Price, Usage

# Claude Sonnet 4.5's published rates: $3 in, $15 out, reads 0.1x, 5m writes 1.25x, 1h writes 2x.
SONNET = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75, cache_write_1h=6.0)


def test_each_kind_of_prompt_token_is_priced_at_its_own_rate() -> None:
    # 1000 fresh + 2000 read + 3000 5m-written + 4000 1h-written prompt tokens; 500 out.
    usage = Usage(prompt_tokens=10_000, completion_tokens=500, cached_tokens=2000, cache_write_5m=3000, cache_write_1h=4000)
    expected = (1000 * 3.0 + 2000 * 0.3 + 3000 * 3.75 + 4000 * 6.0 + 500 * 15.0) / 1e6
    assert cost(usage, SONNET) == pytest.approx(expected)


def test_without_cache_counts_it_is_input_and_output() -> None:
    assert cost(Usage(prompt_tokens=1000, completion_tokens=100), SONNET) == pytest.approx((3000 + 1500) / 1e6)


def test_unset_cache_rates_fall_back() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=2, cache_write_5m=3, cache_write_1h=4)
    # no cache rates at all: every prompt token at input
    assert cost(usage, Price(input=1.0, output=2.0)) == pytest.approx(10 / 1e6)
    # only a 5-minute write rate: the 1-hour writes use it too
    assert cost(usage, Price(input=1.0, output=2.0, cache_write=5.0)) == pytest.approx((1 + 2 + 3 * 5 + 4 * 5) / 1e6)


def test_cache_counts_beyond_the_prompt_are_capped_never_negative() -> None:
    usage = Usage(prompt_tokens=5, completion_tokens=0, cached_tokens=3, cache_write_5m=3, cache_write_1h=3)
    # 3 read, 2 written (5m), 0 (1h), 0 fresh: the prompt is never priced beyond its 5 tokens
    assert cost(usage, SONNET) == pytest.approx((3 * 0.3 + 2 * 3.75) / 1e6)


def test_unknown_usage_or_price_is_none() -> None:
    assert cost(None, SONNET) is None
    assert cost(Usage(prompt_tokens=1), None) is None
    assert cost(Usage(anomaly="bad"), SONNET) is None


def test_neutral_usage_counts_every_prompt_token_in_prompt_tokens() -> None:
    found = usage_from_neutral(neutral.Usage(input=10, cache_read=20, cache_write_5m=30, cache_write_1h=40, output=7, reasoning=5))
    assert found == Usage(
        prompt_tokens=100, completion_tokens=7, cached_tokens=20, cache_write_5m=30, cache_write_1h=40, reasoning_tokens=5
    )
    assert usage_from_neutral(neutral.Usage(input=3, output=4)) == Usage(prompt_tokens=3, completion_tokens=4)
    assert usage_from_neutral(neutral.Usage()) == Usage()


def test_neutral_usage_with_a_bad_count_is_unknown() -> None:
    found = usage_from_neutral(neutral.Usage(input=-1, output=4))
    assert found.anomaly is not None and "input" in found.anomaly
    assert cost(found, SONNET) is None


def test_the_same_usage_costs_the_same_from_either_shape() -> None:
    # Anthropic counts cache tokens apart from input_tokens; OpenAI counts them inside prompt_tokens.
    anthropic = usage_from_neutral(neutral.Usage(input=100, cache_read=900, output=50))
    openai = Usage(prompt_tokens=1000, completion_tokens=50, cached_tokens=900)
    assert anthropic == openai
    assert cost(anthropic, SONNET) == cost(openai, SONNET)


def test_an_anthropic_bodys_system_prompt_counts_in_the_estimate() -> None:
    messages = [{"role": "user", "content": "hi"}]
    system = [{"type": "text", "text": "You are Claude Code. " * 200}]
    bare = {"model": "m", "max_tokens": 100, "messages": messages}
    assert prompt_bytes({**bare, "system": system}) > prompt_bytes(bare) + 4000
    assert estimate_tokens({**bare, "system": system}) > estimate_tokens(bare) + 1000
    assert prompt_bytes({"model": "m", "messages": messages}) == len(b'[{"role":"user","content":"hi"}]')  # OpenAI: unchanged


def test_instructions_and_tool_schemas_count_in_the_estimate() -> None:
    bare = {"model": "m", "input": "hi"}
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    assert prompt_bytes({**bare, "instructions": "Be brief. " * 100}) >= prompt_bytes(bare) + 1000
    assert prompt_bytes({**bare, "tools": tools}) > prompt_bytes(bare) + 60


def test_a_responses_max_output_tokens_bounds_the_reservation() -> None:
    price = Price(input=1.0, output=10.0)
    body = {"model": "m", "input": "hi"}
    assert max_cost({**body, "max_output_tokens": 10}, price) < max_cost(body, price) / 100  # not the 4,096-token default


def test_a_request_that_asks_for_caching_reserves_its_prompt_at_the_write_rate() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75, cache_write_1h=6.0)
    text = "You are a careful assistant. " * 400
    plain = {"model": "m", "max_tokens": 1, "system": [{"type": "text", "text": text}], "messages": [{"role": "user", "content": "hi"}]}
    cached = {**plain, "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    prompt_tokens = prompt_bytes(cached) // 2 + 16
    assert max_cost(cached, price) == pytest.approx((prompt_tokens * 6.0 + 1 * 15.0) / 1e6)  # the dearest write rate
    assert max_cost(plain, price) == pytest.approx(((prompt_bytes(plain) // 2 + 16) * 3.0 + 15.0) / 1e6)
    top_level = {**plain, "cache_control": {"type": "ephemeral"}}  # automatic caching of the whole request
    assert max_cost(top_level, price) > max_cost(plain, price) * 1.9
    assert max_cost(cached, Price(input=3.0, output=15.0)) == pytest.approx((prompt_tokens * 3.0 + 15.0) / 1e6)  # no write premium known
