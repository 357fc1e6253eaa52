"""Routing and failure handling end to end: real gateway process, fake upstream, openai SDK."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, client, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port

Start = Callable[..., GatewayProcess]
MESSAGES = [{"role": "user", "content": "Hi"}]


def two_tier(fake: FakeOpenAI, routing: str = "", extra_models: str = "", **kw: str) -> str:
    """Model `m` with deployment a-model (priority 0) and b-model (priority 1) on one provider."""
    return config(
        provider("up", fake.url),
        """
  m:
    - {provider: up, model: a-model, priority: 0}
    - {provider: up, model: b-model, priority: 1}"""
        + extra_models,
        routing=routing,
        **kw,
    )


def ask(gw: GatewayProcess, model: str = "m") -> httpx.Response:
    body = {"model": model, "messages": MESSAGES}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30)


def error_of(response: httpx.Response) -> dict[str, str]:
    return response.json()["error"]  # type: ignore[no-any-return]


def test_429_cools_down_at_once_honours_retry_after_and_recovers(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.rate_limited(retry_after=1.5))
    first = ask(gw)
    assert first.status_code == 200 and first.headers["x-faregate-model"] == "b-model"
    second = ask(gw)
    assert second.headers["x-faregate-model"] == "b-model"
    assert fake.count("a-model") == 1  # cooling: not tried again
    fake.clear()
    time.sleep(1.7)
    assert ask(gw).headers["x-faregate-model"] == "a-model"  # recovered after Retry-After


def test_consecutive_failures_cool_a_deployment(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake, routing="\n  retries: 2\n  cooldown: {failures: 2, seconds: 1}"), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.server_error())
    for _ in range(4):
        assert ask(gw).headers["x-faregate-model"] == "b-model"
    assert fake.count("a-model") == 2
    fake.clear()
    time.sleep(1.2)
    assert ask(gw).headers["x-faregate-model"] == "a-model"


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (errors.server_error(), "500 server_error"),
        (errors.bad_gateway(), "502"),
        (errors.overloaded(), "503"),
        (errors.stall(3), "timed out"),
        (errors.drop_mid_body(10), "reply cut off while reading the reply"),
        (Behaviour(bad_json=True), "reply is not valid JSON"),
        (errors.invalid_api_key(), "credential rejected (401 invalid_api_key)"),
        (errors.permission_denied(), "credential rejected (403"),
    ],
)
def test_retriable_failures_try_the_next_deployment(fake: FakeOpenAI, gateways: Start, behaviour: Behaviour, reason: str) -> None:
    two_accounts = provider("up", fake.url, extra="\n    timeout: 1") + provider(
        "up2", fake.url, key_env="UPSTREAM_KEY_B", extra="\n    timeout: 1"
    )
    gw = gateways(
        config(
            two_accounts.replace("    timeout: 5\n", ""),
            """
  m:
    - {provider: up, model: a-model, priority: 0}
    - {provider: up2, model: b-model, priority: 1}""",
            routing="\n  retries: 1\n  cooldown: {failures: 5, seconds: 30}",
        ),
        env={**UPSTREAM_ENV, "UPSTREAM_KEY_B": "sk-upstream-account-b"},
    )
    fake.set_rule("a-model", behaviour)
    ok = ask(gw)
    assert ok.status_code == 200 and ok.headers["x-faregate-model"] == "b-model"
    fake.set_rule("b-model", behaviour)
    failed = ask(gw)
    assert failed.status_code == 503
    error = error_of(failed)
    assert error["code"] == "no_deployment_available" and error["type"] == "service_unavailable"
    assert "up2/b-model:" in error["message"]
    if "credential" in reason:  # the rejected credential stays out of rotation until the next reload
        assert "up/a-model: no usable credential: up/main:" in error["message"]
        assert reason in error["message"]
        assert fake.count("a-model") == 1
    else:
        assert f"up/a-model: {reason}" in error["message"]


def test_connection_refused_is_retried(fake: FakeOpenAI, gateways: Start) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = gateways(
        config(
            provider("dead", dead) + provider("live", fake.url),
            """
  m:
    - {provider: dead, model: a-model, priority: 0}
    - {provider: live, model: b-model, priority: 1}""",
        ),
        env=UPSTREAM_ENV,
    )
    assert ask(gw).headers["x-faregate-provider"] == "live"
    fake.set_rule("b-model", errors.server_error())
    message = error_of(ask(gw))["message"]
    assert "dead/a-model: cannot connect to 127.0.0.1" in message


def test_upstream_4xx_is_passed_through_and_not_retried(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.bad_request("This model's maximum context length is 128000 tokens.", param="messages"))
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["message"].startswith("This model's maximum context length is 128000 tokens.")
    assert "(upstream up/a-model answered 400)" in body["message"]
    assert body["param"] == "messages" and body["type"] == "invalid_request_error"
    assert fake.count("b-model") == 0


def test_503_names_every_deployment_and_its_reason(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(
        config(
            provider("openai-main", fake.url) + provider("azure-eu", fake.url),
            """
  gpt-4o:
    - {provider: openai-main, model: gpt-4o}
    - {provider: azure-eu, model: gpt-4o-eu, weight: 0}
    - {provider: openai-main, model: gpt-4o-backup, priority: 1}""",
        ),
        env=UPSTREAM_ENV,
    )
    fake.set_rule("gpt-4o", errors.insufficient_quota())
    fake.set_rule("gpt-4o-backup", errors.server_error())
    first = error_of(ask(gw, "gpt-4o"))["message"]
    assert "openai-main/gpt-4o: 429 insufficient_quota" in first
    assert "azure-eu/gpt-4o-eu: disabled (weight 0)" in first
    assert "openai-main/gpt-4o-backup: 500 server_error" in first
    second = ask(gw, "gpt-4o")
    assert second.status_code == 503
    message = error_of(second)["message"]
    assert message.startswith("no deployment available for model 'gpt-4o': ")
    assert "openai-main/gpt-4o: cooling down until " in message and " UTC after 429 insufficient_quota" in message
    assert "azure-eu/gpt-4o-eu: disabled (weight 0)" in message


def test_all_disabled_model_answers_503_with_reason(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: a-model, weight: 0}"), env=UPSTREAM_ENV)
    response = ask(gw)
    assert response.status_code == 503
    assert error_of(response)["message"] == "no deployment available for model 'm': up/a-model: disabled (weight 0)"
    assert fake.requests == []


PRICED = """
  a-model: {input: 2.5, output: 10.0}
  cheap-model: {input: 0.15, output: 0.6}
  dear-model: {input: 3.0, output: 15.0}"""
FALLBACK_MODELS = """
  m:
    - {provider: up, model: a-model}
  cheap:
    - {provider: up, model: cheap-model}
  dear:
    - {provider: up, model: dear-model}
  unpriced:
    - {provider: up, model: mystery-model}"""


def test_fallback_to_a_cheaper_model_and_refusal_of_pricier_ones(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(
        config(provider("up", fake.url), FALLBACK_MODELS, fallbacks="\n  m: [dear, unpriced, cheap]", prices=PRICED),
        env=UPSTREAM_ENV,
    )
    fake.set_rule("a-model", errors.server_error())
    answered = ask(gw)
    assert answered.status_code == 200
    assert answered.headers["x-faregate-fallback"] == "m -> cheap"
    assert answered.headers["x-faregate-model"] == "cheap-model"
    assert fake.count("dear-model") == 0 and fake.count("mystery-model") == 0
    fake.set_rule("cheap-model", errors.server_error())
    message = error_of(ask(gw))["message"]
    assert (
        "fallback dear skipped: its price $3/$15 per M in/out exceeds 1x m's $2.5/$10 per M in/out (routing.max_fallback_cost_ratio)"
        in message
    )
    assert "fallback unpriced skipped: it is unpriced and an unpriced model counts as pricier" in message
    assert "fallback cheap -> up/cheap-model: 500 server_error" in message


def test_pricier_fallback_allowed_when_the_config_says_so(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(
        config(
            provider("up", fake.url),
            FALLBACK_MODELS,
            fallbacks="\n  m: [dear]",
            prices=PRICED,
            routing="\n  max_fallback_cost_ratio: 2.0",
        ),
        env=UPSTREAM_ENV,
    )
    fake.set_rule("a-model", errors.server_error())
    answered = ask(gw)
    assert answered.status_code == 200 and answered.headers["x-faregate-fallback"] == "m -> dear"


def test_weights_split_traffic_and_weight_zero_gets_none(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(
        config(
            provider("up", fake.url),
            """
  m:
    - {provider: up, model: w1, weight: 1}
    - {provider: up, model: w3, weight: 3}
    - {provider: up, model: w0, weight: 0}""",
        ),
        env=UPSTREAM_ENV,
    )
    seen: Counter[str] = Counter()
    with httpx.Client(headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http:
        for _ in range(2000):
            r = http.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
            seen[r.headers["x-faregate-model"]] += 1
    # binomial(2000, 0.25): mean 500, sd 19.4; +-5 sd keeps a false failure below 1e-6
    assert 403 <= seen["w1"] <= 597, seen
    assert seen["w1"] + seen["w3"] == 2000 and seen["w0"] == 0
    assert fake.count("w0") == 0


def test_stream_cut_midway_ends_with_an_explicit_error_event(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.drop_mid_stream(3))
    body = {"model": "m", "stream": True, "messages": MESSAGES}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
        raw = r.read()
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert len(events) == 4  # the three that arrived, then our error
    assert b'"code":"stream_interrupted"' in events[-1] and b"up/a-model" in events[-1]
    assert b"[DONE]" not in raw and b'"finish_reason":"stop"' not in raw
    with pytest.raises(openai.APIError, match="interrupted"):
        list(client(gw).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]


def test_stream_heartbeats_while_the_upstream_is_silent(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake, server="\n  stream_heartbeat: 0.2"), env=UPSTREAM_ENV)
    fake.set_rule("a-model", Behaviour(chunks=2, chunk_delay=0.7))
    body = {"model": "m", "stream": True, "messages": MESSAGES}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
        raw = r.read()
    assert raw.count(b": keep-alive\n\n") >= 3
    chunks = list(client(gw).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream."


def test_stream_upstream_error_before_first_byte_is_retried(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_tier(fake), env=UPSTREAM_ENV)
    fake.set_rule("a-model", errors.rate_limited())
    chunks = list(client(gw).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert chunks[0].model == "b-model"
