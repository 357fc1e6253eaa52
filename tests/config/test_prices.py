"""The shipped price table (``faregate/prices.json``): every entry sane, every provider present, config wins."""

from __future__ import annotations

import math
from importlib import resources

import orjson
import pytest

from faregate.config.prices import price_table, shipped_prices
from faregate.config.schema import PriceConfig
from faregate.types import Price

# Upstream model-name prefixes of each provider the shipped table covers.
PROVIDER_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-", "o", "text-embedding-"),
    "anthropic": ("claude-",),
    "google": ("gemini-",),
    "mistral": ("mistral-", "codestral-", "ministral-", "magistral-"),
    "deepseek": ("deepseek-",),
    # Bedrock model ids (vendor.model) and cross-region inference profile ids (a region-group prefix before them).
    "bedrock": ("anthropic.", "amazon.", "openai.", "global.", "us.", "eu.", "apac.", "in."),
}

# Bedrock inference-profile prefixes: "<prefix><model id>" routes the model id across Regions.
PROFILE_PREFIXES = ("global.", "us.", "eu.", "apac.", "in.")

# What a profile costs relative to its bare model id, as the file's _comment states it (per AWS):
# Claude: global = the model id's rate, geographic = 1.1x (global saves about 10%);
# OpenAI GPT-5.x: the bare id and geographic profiles carry the regional rate (1.1x OpenAI's list), global the list rate;
# Amazon Nova: no charge for cross-region inference, so a profile costs the same as the model id.
PROFILE_RATIO: dict[tuple[str, str], float] = {
    ("global.", "anthropic"): 1.0,
    ("us.", "anthropic"): 1.1,
    ("eu.", "anthropic"): 1.1,
    ("global.", "openai"): 1 / 1.1,
    ("us.", "openai"): 1.0,
    ("in.", "openai"): 1.0,
    ("us.", "amazon"): 1.0,
}

# Keys this table must keep shipping (a Bedrock deployment names the model id or a profile id).
BEDROCK_REQUIRED = (
    "anthropic.claude-sonnet-4-6",
    "global.anthropic.claude-sonnet-4-6",
    "us.anthropic.claude-sonnet-4-6",
    "eu.anthropic.claude-sonnet-4-6",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    "amazon.nova-pro-v1:0",
    "us.amazon.nova-pro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-micro-v1:0",
)


def is_embedding(name: str) -> bool:
    return "embed" in name


def test_every_raw_entry_has_only_known_fields() -> None:
    raw = orjson.loads(resources.files("faregate").joinpath("prices.json").read_bytes())
    assert isinstance(raw["_comment"], str)
    assert set(raw["_sources"]) == set(PROVIDER_PREFIXES)
    models = {name: value for name, value in raw.items() if not name.startswith("_")}
    assert models
    for name, value in models.items():
        assert {"input", "output"} <= set(value) <= {"input", "output", "cached_input", "cache_write", "cache_write_1h"}, name
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()), name


def test_every_entry_parses_to_a_price() -> None:
    prices = shipped_prices()
    assert prices
    assert all(isinstance(price, Price) for price in prices.values())
    assert not any(name.startswith("_") for name in prices)


@pytest.mark.parametrize("name", sorted(shipped_prices()))
def test_rates_are_finite_and_not_negative(name: str) -> None:
    price = shipped_prices()[name]
    rates = [price.input, price.output] + [r for r in (price.cached_input, price.cache_write, price.cache_write_1h) if r is not None]
    assert all(math.isfinite(rate) and rate >= 0 for rate in rates), price


@pytest.mark.parametrize("name", sorted(n for n, p in shipped_prices().items() if p.cached_input is not None))
def test_cached_input_is_no_dearer_than_input(name: str) -> None:
    price = shipped_prices()[name]
    assert price.cached_input is not None
    assert price.cached_input <= price.input


@pytest.mark.parametrize("name", sorted(n for n in shipped_prices() if n.startswith("claude-")))
def test_anthropic_cache_writes_are_priced_at_their_published_multipliers(name: str) -> None:
    # Anthropic's pricing page, "Prompt caching": 5-minute writes 1.25x the input rate, 1-hour writes 2x.
    price = shipped_prices()[name]
    assert price.cache_write == pytest.approx(price.input * 1.25)
    assert price.cache_write_1h == pytest.approx(price.input * 2)


@pytest.mark.parametrize("name", sorted(n for n in shipped_prices() if not is_embedding(n)))
def test_chat_output_costs_at_least_input(name: str) -> None:
    price = shipped_prices()[name]
    assert price.output >= price.input > 0


@pytest.mark.parametrize("name", sorted(n for n in shipped_prices() if is_embedding(n)))
def test_embeddings_have_no_output_price(name: str) -> None:
    price = shipped_prices()[name]
    assert price.output == 0.0
    assert price.input > 0


@pytest.mark.parametrize("provider", sorted(PROVIDER_PREFIXES))
def test_each_provider_has_a_chat_model(provider: str) -> None:
    names = [n for n in shipped_prices() if n.startswith(PROVIDER_PREFIXES[provider]) and not is_embedding(n)]
    assert names, f"no {provider} chat model in the shipped price table"


def test_every_entry_belongs_to_a_known_provider() -> None:
    prefixes = tuple(p for group in PROVIDER_PREFIXES.values() for p in group)
    assert [n for n in shipped_prices() if not n.startswith(prefixes)] == []


def test_config_override_wins_over_the_shipped_entry() -> None:
    shipped = shipped_prices()["gpt-4o"]
    override = PriceConfig(input=shipped.input + 1.0, output=shipped.output + 2.0, cached_input=None)
    mine = PriceConfig(input=1.0, output=3.0, cached_input=0.5, cache_write=1.5, cache_write_1h=2.5)
    table = price_table({"gpt-4o": override, "my-finetune": mine})
    assert table["gpt-4o"] == Price(input=shipped.input + 1.0, output=shipped.output + 2.0, cached_input=None)
    assert table["my-finetune"] == Price(input=1.0, output=3.0, cached_input=0.5, cache_write=1.5, cache_write_1h=2.5)
    assert table["claude-sonnet-4-5"] == shipped_prices()["claude-sonnet-4-5"]  # the rest is untouched
    assert shipped_prices()["gpt-4o"] == shipped  # the shipped table itself is not modified


def test_no_overrides_is_the_shipped_table() -> None:
    assert price_table({}) == dict(shipped_prices())


def profile_parts(name: str) -> tuple[str, str, str]:
    """`us.anthropic.claude-x` -> ("us.", "anthropic", "anthropic.claude-x")."""
    prefix = next(p for p in PROFILE_PREFIXES if name.startswith(p))
    base = name.removeprefix(prefix)
    return prefix, base.split(".", 1)[0], base


PROFILE_IDS = sorted(n for n in shipped_prices() if n.startswith(PROFILE_PREFIXES))


def test_bedrock_model_and_profile_ids_are_shipped() -> None:
    assert [n for n in BEDROCK_REQUIRED if n not in shipped_prices()] == []
    assert PROFILE_IDS


@pytest.mark.parametrize("name", PROFILE_IDS)
def test_a_profile_id_is_priced_from_its_model_id_by_the_stated_rule(name: str) -> None:
    prefix, vendor, base = profile_parts(name)
    prices = shipped_prices()
    assert base in prices, f"{name}: the profile's model id {base} is not in the table"
    assert (prefix, vendor) in PROFILE_RATIO, f"{name}: no stated rule for {prefix} profiles of {vendor} models"
    ratio, profile, model = PROFILE_RATIO[(prefix, vendor)], prices[name], prices[base]
    assert profile.input == pytest.approx(model.input * ratio)
    assert profile.output == pytest.approx(model.output * ratio)
    for field in ("cached_input", "cache_write", "cache_write_1h"):
        mine, theirs = getattr(profile, field), getattr(model, field)
        assert (mine is None) == (theirs is None), f"{name}.{field}"
        if mine is not None and theirs is not None:
            assert mine == pytest.approx(theirs * ratio), f"{name}.{field}"


def test_profile_rates_match_figures_the_source_gives_directly() -> None:
    # The rule itself, on two pairs whose numbers the source gives directly: a Claude geographic profile
    # at 1.1x the global rate (Sonnet 4.6: $3.30 vs $3.00 input) and a GPT-5.6 global profile at OpenAI's list price.
    prices = shipped_prices()
    assert prices["us.anthropic.claude-sonnet-4-6"].input == pytest.approx(3.3)
    assert prices["global.anthropic.claude-sonnet-4-6"].input == pytest.approx(3.0)
    assert prices["global.openai.gpt-5.6-sol"].input == pytest.approx(prices["gpt-5.6-sol"].input)
    assert prices["global.openai.gpt-5.6-sol"].output == pytest.approx(prices["gpt-5.6-sol"].output)


def test_every_source_group_names_its_page_and_when_it_was_read() -> None:
    raw = orjson.loads(resources.files("faregate").joinpath("prices.json").read_bytes())
    for group, text in raw["_sources"].items():
        assert "https://" in text, group
        assert "2026-" in text, group
    assert "2026-12-01" in raw["_sources"]["bedrock"]
    assert "prices:" in raw["_comment"] and "Azure" in raw["_comment"]  # how an Azure deployment gets a price
