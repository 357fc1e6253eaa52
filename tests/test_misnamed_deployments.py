"""A deployment whose upstream model name is wrong (the provider answers "this model does not
exist") is marked misconfigured at once: the request goes on to the next deployment, the
misnamed one takes no traffic until a reload, the metrics show it, and a model left with nothing
answers a 503 ``deployment_misconfigured`` that names the deployment, its upstream model and the
closest known names, in the client's own error shape, streamed or not. A 404 about anything else
is passed through as before. Real gateway processes, fake upstreams that know only some models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from faregate.observability.metrics import render
from tests.fakes import openai_wire
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

GOOD, MISNAMED = "gpt-4o-2024-08-06", "gpt4o-2024-08-06"  # the misspelling
ONLY = "gpt-4o-mini-2024-07-81"  # the price table knows gpt-4o-mini-2024-07-18
CLAUDE = "claude-sonet-4-5"  # the price table knows claude-sonnet-4-5
HELLO: Any = [{"role": "user", "content": "Hello"}]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def config(openai_url: str, anthropic_url: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  oa:
    type: openai
    base_url: {openai_url}
    credentials: [{{id: k, key: "${{UPSTREAM_KEY}}"}}]
  an:
    type: anthropic
    base_url: {anthropic_url}
    credentials: [{{id: k, key: "${{UPSTREAM_KEY}}"}}]
models:
  mixed:  # the misnamed deployment is tried first: without the fix every request would fail on it
    - {{provider: oa, model: {MISNAMED}}}
    - {{provider: oa, model: {GOOD}, priority: 1}}
  only:
    - {{provider: oa, model: {ONLY}}}
  claude:
    - {{provider: an, model: {CLAUDE}}}
  odd:
    - {{provider: oa, model: odd-route}}
  limited:  # one misnamed, the other limited by its provider: not a provider limit as a whole
    - {{provider: oa, model: gpt-4.1-nano-2025-04-41}}
    - {{provider: oa, model: busy-model, priority: 1}}
routing:
  retries: 2
  cooldown: {{failures: 1000, seconds: 1}}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]]:
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        oa.known_models = frozenset({GOOD, "odd-route", "busy-model"})
        an.known_models = frozenset({"claude-sonnet-4-5"})
        with GatewayProcess(tmp_path, config(oa.url, an.url), env=UPSTREAM_ENV).start() as gw:
            yield gw, oa, an


def openai_sdk(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def anthropic_sdk(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def openai_ask(gw: GatewayProcess, model: str, stream: bool) -> None:
    reply = openai_sdk(gw).chat.completions.create(model=model, messages=HELLO, stream=stream)
    if stream:
        list(reply)  # type: ignore[arg-type]


def anthropic_ask(gw: GatewayProcess, model: str, stream: bool) -> None:
    if stream:
        with anthropic_sdk(gw).messages.stream(model=model, max_tokens=20, messages=HELLO) as events:
            list(events)
    else:
        anthropic_sdk(gw).messages.create(model=model, max_tokens=20, messages=HELLO)


def openai_refusal(gw: GatewayProcess, model: str, *, stream: bool) -> dict[str, Any]:
    with pytest.raises(openai.InternalServerError) as caught:
        openai_ask(gw, model, stream)
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}, body  # the SDK hands over "error"
    assert body["type"] == "service_unavailable" and body["code"] == "deployment_misconfigured", body
    return body


def anthropic_refusal(gw: GatewayProcess, model: str, *, stream: bool) -> dict[str, Any]:
    with pytest.raises(anthropic.InternalServerError) as caught:
        anthropic_ask(gw, model, stream)
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == "api_error", body  # not overloaded_error: waiting does not fix a name
    return body["error"]  # type: ignore[no-any-return]


def metric(gw: GatewayProcess, name: str, deployment: str) -> float | None:
    text = httpx.get(gw.url + "/metrics").text
    found = re.search(rf'^{name}\{{deployment="{re.escape(deployment)}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


def reload(gw: GatewayProcess) -> None:
    r = httpx.post(gw.url + "/admin/reload", headers=AUTH, json={"timeout": 10}, timeout=20)
    assert r.status_code == 200, r.text


def test_a_model_with_one_misnamed_deployment_answers_every_request(world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]) -> None:
    gw, oa, _ = world
    sdk = openai_sdk(gw)
    for i in range(20):
        if i % 4 == 3:
            chunks = list(sdk.chat.completions.create(model="mixed", messages=HELLO, stream=True))
            assert chunks and chunks[-1].choices[0].finish_reason == "stop"
        else:
            reply = sdk.chat.completions.with_raw_response.create(model="mixed", messages=HELLO)
            assert reply.headers["x-faregate-model"] == GOOD
            assert reply.parse().choices[0].message.content
    assert oa.count(MISNAMED) == 1  # asked once: misconfigured from then on, skipped without a request
    assert oa.count(GOOD) == 20
    assert metric(gw, "faregate_deployment_misconfigured", f"oa/{MISNAMED}") == 1.0
    assert metric(gw, "faregate_deployment_cooldown", f"oa/{MISNAMED}") is None  # not also reported as cooling down
    text = httpx.get(gw.url + "/metrics").text
    assert f'faregate_upstream_errors_total{{deployment="oa/{MISNAMED}",class="UpstreamModelMissing"}} 1' in text


def test_a_misnamed_only_deployment_is_named_with_the_closest_names_in_openai_shape(
    world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic],
) -> None:
    gw, oa, _ = world
    first = openai_refusal(gw, "only", stream=False)
    again = openai_refusal(gw, "only", stream=True)  # now skipped without asking: the same words, before any stream
    assert oa.count(ONLY) == 1
    for body in (first, again):
        message = body["message"]
        assert message.startswith("no deployment available for model 'only': deployment oa/gpt-4o-mini-2024-07-81 is misconfigured")
        assert f"provider oa has no model '{ONLY}'" in message
        assert f"The model `{ONLY}` does not exist or you do not have access to it." in message  # what OpenAI said
        assert "closest known names: 'gpt-4o-mini-2024-07-18'" in message
        assert "reload" in message
    # an Anthropic client asking for the same model: Anthropic's shape, the same message
    assert anthropic_refusal(gw, "only", stream=False)["message"] == first["message"]


def test_a_misnamed_anthropic_deployment_is_named_in_both_shapes_streamed_or_not(
    world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic],
) -> None:
    gw, _, an = world
    first = anthropic_refusal(gw, "claude", stream=True)
    assert an.count(CLAUDE) == 1
    messages = [first["message"], anthropic_refusal(gw, "claude", stream=False)["message"]]
    messages += [openai_refusal(gw, "claude", stream=s)["message"] for s in (False, True)]
    assert an.count(CLAUDE) == 1
    for message in messages:
        assert f"deployment an/{CLAUDE} is misconfigured: provider an has no model '{CLAUDE}'" in message
        assert f"404 not_found_error: model: {CLAUDE}" in message  # Anthropic's own words
        assert "closest known names: 'claude-sonnet-4-5'" in message


def test_a_reload_gives_a_misconfigured_deployment_its_traffic_back(world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]) -> None:
    gw, oa, _ = world
    openai_refusal(gw, "only", stream=False)
    openai_refusal(gw, "only", stream=False)
    assert oa.count(ONLY) == 1
    assert metric(gw, "faregate_deployment_misconfigured", f"oa/{ONLY}") == 1.0
    rows = {(d["model"], d["label"]): d for d in httpx.get(gw.url + "/admin/deployments", headers=AUTH).json()["deployments"]}
    row = rows[("only", f"oa/{ONLY}")]
    assert row["state"] == "misconfigured" and row["upstream_model"] == ONLY and "does not exist" in row["reason"]
    assert row["closest"][0] == "gpt-4o-mini-2024-07-18"
    reload(gw)
    after = httpx.get(gw.url + "/admin/deployments", headers=AUTH).json()["deployments"]
    assert [d["label"] for d in after if d["state"] == "misconfigured"] == []
    assert metric(gw, "faregate_deployment_misconfigured", f"oa/{ONLY}") is None
    openai_refusal(gw, "only", stream=False)  # tried again (still misnamed upstream)
    assert oa.count(ONLY) == 2
    oa.known_models = frozenset({GOOD, ONLY, "busy-model"})  # the provider now serves it
    reload(gw)
    reply = openai_sdk(gw).chat.completions.create(model="only", messages=HELLO)
    assert reply.choices[0].message.content and oa.count(ONLY) == 3


def test_a_404_that_is_not_about_the_model_is_still_passed_through(world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic]) -> None:
    gw, oa, _ = world
    oa.set_rule("odd-route", openai_wire.error_behaviour(404, "Invalid URL (POST /v1/chat/completions)", "invalid_request_error"))
    for _ in range(2):
        with pytest.raises(openai.NotFoundError) as caught:
            openai_sdk(gw).chat.completions.create(model="odd", messages=HELLO)
        body = caught.value.body
        assert isinstance(body, dict) and body["message"].startswith("Invalid URL (POST /v1/chat/completions)"), body
    assert oa.count("odd-route") == 2  # not misconfigured: the second request was sent too
    assert metric(gw, "faregate_deployment_misconfigured", "oa/odd-route") is None


def test_misnamed_beside_a_provider_limit_is_not_reported_as_a_provider_limit(
    world: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic],
) -> None:
    gw, oa, _ = world
    oa.set_rule("busy-model", openai_wire.errors.rate_limited(retry_after=60))
    for _ in range(2):  # tried, then both skipped: one misconfigured, one cooling after its provider's 429
        message = openai_refusal(gw, "limited", stream=False)["message"]
        assert "deployment oa/gpt-4.1-nano-2025-04-41 is misconfigured" in message
        assert "closest known names: 'gpt-4.1-nano-2025-04-14'" in message
        assert "other deployments: oa/busy-model:" in message
    assert oa.count("gpt-4.1-nano-2025-04-41") == 1 and oa.count("busy-model") == 1


def test_workers_flags_merge_to_one_not_to_their_count() -> None:
    flagged = {"c": [], "h": [], "g": [["faregate_deployment_misconfigured", ["oa/x"], 1.0]]}
    text = render([(True, flagged), (True, flagged)]).decode()
    assert 'faregate_deployment_misconfigured{deployment="oa/x"} 1\n' in text
