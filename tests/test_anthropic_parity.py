"""What faregate did before issue 10 works the same for Anthropic clients and deployments: credential
rotation and fingerprints, no secret echoed, budgets reserved from an Anthropic body (its top-level
``system`` included) and settled at the priced cost, fallbacks across formats under the cost ceiling.
A real gateway process, the official SDKs, fake OpenAI and Anthropic upstreams on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from faregate import limits
from faregate.types import Price
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_wire import errors
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_wire import errors as oa_errors
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

KEY_A = "sk-ant-CANARY-rotation-aaaaaaaaaaaaaaaa"
KEY_B = "sk-ant-CANARY-rotation-bbbbbbbbbbbbbbbb"
KEY_C = "sk-ant-CANARY-rotation-cccccccccccccccc"
KEY_D = "sk-ant-CANARY-rotation-dddddddddddddddd"
KEY_SOLO = "sk-ant-CANARY-solo-eeeeeeeeeeeeeeeeeeee"
CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: a, key: "${{KEY_A}}"}}, {{id: b, key: "${{KEY_B}}"}}]
  pair:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: c, key: "${{KEY_C}}"}}, {{id: d, key: "${{KEY_D}}"}}]
  solo:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: only, key: "${{KEY_SOLO}}"}}]
  oa:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
models:
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
  claude-pair:
    - {{provider: pair, model: claude-opus-4-5}}
  claude-solo:
    - {{provider: solo, model: claude-sonnet-4-5-20250929}}
  claude-down:
    - {{provider: an, model: claude-haiku-4-5}}
  gpt-dear:
    - {{provider: oa, model: gpt-dear}}
  gpt-cheap:
    - {{provider: oa, model: gpt-4o-mini}}
fallbacks:
  claude-down: [gpt-dear, gpt-cheap]
routing:
  retries: 1
  cooldown: {{failures: 1000, seconds: 1}}
  max_fallback_cost_ratio: 1.0
prices:
  claude-sonnet-4-5: {{input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75}}
  claude-sonnet-4-5-20250929: {{input: 3.0, output: 15.0}}
  claude-haiku-4-5: {{input: 1.0, output: 5.0}}
  gpt-dear: {{input: 10.0, output: 40.0}}
  gpt-4o-mini: {{input: 0.15, output: 0.6}}
"""
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO: Any = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeAnthropic, FakeOpenAI]]:
    tmp: Path = tmp_path_factory.mktemp("parity")
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        env = {**UPSTREAM_ENV, "KEY_A": KEY_A, "KEY_B": KEY_B, "KEY_C": KEY_C, "KEY_D": KEY_D, "KEY_SOLO": KEY_SOLO}
        with GatewayProcess(tmp, CONFIG.format(anthropic=an.url, openai=oa.url), env=env).start() as gw:
            yield gw, an, oa


@pytest.fixture
def gw(world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI]) -> GatewayProcess:
    world[1].clear()
    world[2].clear()
    return world[0]


def claude(gw: GatewayProcess, key: str = MASTER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)


def new_key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    created = httpx.post(gw.url + "/admin/keys", json={"name": "k", **fields}, headers=AUTH)
    assert created.status_code in (200, 201), created.text
    return dict(created.json())


def settled(gw: GatewayProcess, key_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The key's budget state once nothing is reserved any more (settling runs after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        state = dict(httpx.get(f"{gw.url}/admin/keys/{key_id}", headers=AUTH).json())
        if state["reserved_usd"] == 0:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


# -- credentials ------------------------------------------------------------------------------------


def test_a_rejected_anthropic_key_rotates_to_the_next_and_only_fingerprints_are_shown(
    world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI],
) -> None:
    gw, an, _ = world
    an.clear()
    an.enqueue(errors.invalid_api_key())  # whichever key goes first is refused; the other answers
    raw = claude(gw).messages.with_raw_response.create(model="claude", max_tokens=50, messages=HELLO)
    assert raw.parse().content
    first, second = (r.x_api_key for r in an.requests)
    assert {first, second} == {KEY_A, KEY_B}
    used = "a" if second == KEY_A else "b"
    label = raw.headers["x-faregate-credential"]
    assert label.startswith(f"an/{used}:") and KEY_A not in label and KEY_B not in label
    for _ in range(3):  # the refused key rests: every later request goes out with the one that worked
        again = claude(gw).messages.with_raw_response.create(model="claude", max_tokens=50, messages=HELLO)
        assert again.headers["x-faregate-credential"] == label
    assert [r.x_api_key for r in an.requests[2:]] == [second] * 3


def test_a_429_on_one_anthropic_key_of_two_rests_that_key_not_the_deployment(
    world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI],
) -> None:
    gw, an, _ = world
    an.clear()
    an.enqueue(errors.rate_limited(retry_after=60))  # the first key tried is limited for a minute
    raw = claude(gw).messages.with_raw_response.create(model="claude-pair", max_tokens=50, messages=HELLO)
    assert raw.parse().content
    limited, answered = (r.x_api_key for r in an.requests)
    assert {limited, answered} == {KEY_C, KEY_D}
    for _ in range(3):
        again = claude(gw).messages.with_raw_response.create(model="claude-pair", max_tokens=50, messages=HELLO)
        assert again.headers["x-faregate-credential"] == raw.headers["x-faregate-credential"]
    assert [r.x_api_key for r in an.requests[2:]] == [answered] * 3


def test_a_key_echoing_401_reaches_neither_client_nor_log_nor_metrics(world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI]) -> None:
    gw, an, _ = world
    an.clear()
    an.set_rule("claude-sonnet-4-5-20250929", errors.echo_key())
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(gw).messages.create(model="claude-solo", max_tokens=20, messages=HELLO)
    assert [r.x_api_key for r in an.requests] == [KEY_SOLO]  # the fake echoed it in its message
    body = caught.value.response.text
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert KEY_SOLO not in body and "credential rejected" in body
    assert KEY_SOLO not in httpx.get(gw.url + "/metrics").text
    gw_logs = gw.logs()
    assert "faregate" in gw_logs and KEY_SOLO not in gw_logs


# -- budgets ----------------------------------------------------------------------------------------


def test_the_reservation_of_an_anthropic_body_counts_its_system_prompt(gw: GatewayProcess) -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    system = [{"type": "text", "text": "You are a careful assistant. " * 400, "cache_control": {"type": "ephemeral"}}]
    short = {"model": "claude", "max_tokens": 64, "messages": HELLO}
    long = {**short, "system": system}
    small, large = limits.max_cost(short, price), limits.max_cost(long, price)
    assert large > 2 * small  # the system prompt is most of the estimate
    key = new_key(gw, budget_usd=round((small + large) / 2, 9))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude(gw, key["key"]).messages.create(**long)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "rate_limit_error" and error["message"].startswith(f"budget exceeded for key {key['id']}")
    assert f"this request up to ${large:.6f}" in error["message"]
    raw = claude(gw, key["key"]).messages.with_raw_response.create(**short)
    assert raw.parse().content
    state = settled(gw, key["id"])
    assert state["spent_usd"] == pytest.approx(float(raw.headers["x-faregate-cost-usd"]), abs=1e-8) and state["spent_usd"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_budgeted_anthropic_request_is_charged_its_priced_cost_streamed_or_not(gw: GatewayProcess, stream: bool) -> None:
    key = new_key(gw, budget_usd=1.0)
    client = claude(gw, key["key"])
    if stream:
        with client.messages.stream(model="claude", max_tokens=64, messages=HELLO) as events:
            final = events.get_final_message()
    else:
        final = client.messages.create(model="claude", max_tokens=64, messages=HELLO)
    usage = final.usage
    expected = (usage.input_tokens * 3.0 + usage.output_tokens * 15.0) / 1e6
    assert settled(gw, key["id"])["spent_usd"] == pytest.approx(expected, rel=1e-9)


# -- fallbacks across formats -----------------------------------------------------------------------


@pytest.mark.parametrize("client_format", ["anthropic", "openai_chat"])
def test_a_fallback_to_another_format_obeys_the_cost_ceiling(
    world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI], client_format: str
) -> None:
    gw, an, oa = world
    an.clear()
    oa.clear()
    an.set_rule("claude-haiku-4-5", errors.overloaded())
    if client_format == "anthropic":
        raw: Any = claude(gw).messages.with_raw_response.create(model="claude-down", max_tokens=50, messages=HELLO)
        assert raw.parse().content
    else:
        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
        raw = sdk.chat.completions.with_raw_response.create(model="claude-down", messages=HELLO)
        assert raw.parse().choices[0].message.content
    assert raw.headers["x-faregate-fallback"] == "claude-down -> gpt-cheap"  # gpt-dear costs more than 1x claude-haiku
    assert [r.json["model"] for r in oa.requests] == ["gpt-4o-mini"]


def test_a_fallback_the_ceiling_refuses_is_named_in_anthropics_error_shape(world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI]) -> None:
    gw, an, oa = world
    an.clear()
    oa.clear()
    an.set_rule("claude-haiku-4-5", errors.overloaded())
    oa.set_rule("gpt-4o-mini", oa_errors.server_error())
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(gw).messages.create(model="claude-down", max_tokens=50, messages=HELLO)
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    message = body["error"]["message"]
    assert "fallback gpt-dear skipped: its price" in message and "routing.max_fallback_cost_ratio" in message
    assert "an/claude-haiku-4-5" in message and "fallback gpt-cheap -> oa/gpt-4o-mini" in message
    assert all(r.json["model"] != "gpt-dear" for r in oa.requests)
