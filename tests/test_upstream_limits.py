"""When providers' limits are the whole story, the client hears exactly that: 429 with
`upstream_rate_limited` or `upstream_insufficient_quota` (the provider's), never our
`rate_limit_exceeded`/`budget_exceeded`, and never a 503 as if the gateway were down."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, client, config, provider
from tests.support.procs import GatewayProcess

Start = Callable[..., GatewayProcess]
MESSAGES = [{"role": "user", "content": "hi"}]
TWO = """
  m:
    - {provider: up, model: a-model}
    - {provider: up, model: b-model, priority: 1}"""


def refusal(gw: GatewayProcess) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gw).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    return caught.value


def test_every_deployment_rate_limited_is_upstream_rate_limited(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), TWO), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.rate_limited(retry_after=20))
    fake.set_rule("b-model", errors.insufficient_quota())
    first = refusal(gw)
    assert isinstance(first.body, dict) and first.body["code"] == "upstream_rate_limited"
    assert "limited by its provider" in first.body["message"]
    assert "up/a-model: 429 rate_limit_exceeded" in first.body["message"] and "up/b-model: 429 insufficient_quota" in first.body["message"]
    assert first.response.headers["retry-after"] in {"19", "20"}
    # both now cool down: still the providers' limits, without asking them again
    asked = fake.count()
    again = refusal(gw)
    assert isinstance(again.body, dict) and again.body["code"] == "upstream_rate_limited" and fake.count() == asked


def test_every_deployment_out_of_quota_is_upstream_insufficient_quota(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), TWO), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.insufficient_quota())
    fake.set_rule("b-model", errors.insufficient_quota())
    error = refusal(gw)
    assert isinstance(error.body, dict) and error.body["code"] == "upstream_insufficient_quota"


def test_every_key_of_a_provider_limited_is_upstream_rate_limited(fake: FakeOpenAI, gateways: Start) -> None:
    keys = '[{id: k1, key: "${UPSTREAM_KEY}"}, {id: k2, key: "${UPSTREAM_KEY_2}"}]'
    providers = provider("up", fake.url).replace('[{id: main, key: "${UPSTREAM_KEY}"}]', keys)
    gw = gateways(
        config(providers, "\n  m:\n    - {provider: up, model: a-model}"), env={**UPSTREAM_ENV, "UPSTREAM_KEY_2": "sk-second-0000"}
    )
    fake.set_rule("a-model", errors.rate_limited())
    error = refusal(gw)
    assert isinstance(error.body, dict) and error.body["code"] == "upstream_rate_limited", error.body
    assert fake.count("a-model") == 2  # each key asked once


def test_a_limit_mixed_with_an_outage_stays_a_503(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), TWO), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.rate_limited())
    fake.set_rule("b-model", errors.server_error())
    with pytest.raises(openai.InternalServerError) as caught:
        client(gw).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "no_deployment_available"
