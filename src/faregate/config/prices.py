"""The price table shipped with faregate (``faregate/prices.json``) merged with a config's ``prices:``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources

import orjson

from faregate.config.schema import PriceConfig
from faregate.types import Price


@cache
def shipped_prices() -> Mapping[str, Price]:
    raw = orjson.loads(resources.files("faregate").joinpath("prices.json").read_bytes())
    return {name: Price(**value) for name, value in raw.items() if not name.startswith("_")}


def price_table(overrides: Mapping[str, PriceConfig]) -> dict[str, Price]:
    table = dict(shipped_prices())
    for name, p in overrides.items():
        table[name] = Price(
            input=p.input, output=p.output, cached_input=p.cached_input, cache_write=p.cache_write, cache_write_1h=p.cache_write_1h
        )
    return table
