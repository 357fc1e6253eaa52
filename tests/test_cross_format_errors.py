"""Each class of upstream failure surfaces as the client SDK's own exception class, with faregate's
precise message, in every direction that crosses Anthropic: Anthropic client -> Anthropic upstream
(the diagonal), OpenAI client -> Anthropic upstream and Anthropic client -> OpenAI upstream
(translated). Every case has its own provider and model, so a rejected key or a cooling deployment
of one case touches no other. A real gateway process; fake upstreams on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes import anthropic_wire, openai_wire
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

AN, OA = anthropic_wire.errors, openai_wire.errors
# case: (client format, upstream kind, upstream fault, SDK exception, HTTP status, words the message must hold)
CASES: dict[str, tuple[str, str, Callable[[], Any], type[Exception], int, tuple[str, ...]]] = {
    "an-an-401": ("anthropic", "an", AN.invalid_api_key, anthropic.InternalServerError, 503, ("credential rejected", "401")),
    "an-an-403": ("anthropic", "an", AN.permission_denied, anthropic.InternalServerError, 503, ("credential rejected", "403")),
    "an-an-429": ("anthropic", "an", lambda: AN.rate_limited(30), anthropic.RateLimitError, 429, ("limited by its provider",)),
    "an-an-529": ("anthropic", "an", AN.overloaded, anthropic.InternalServerError, 503, ("529 overloaded_error",)),
    "an-an-500": ("anthropic", "an", AN.api_error, anthropic.InternalServerError, 503, ("500 api_error",)),
    "oa-an-401": ("openai_chat", "an", AN.invalid_api_key, openai.InternalServerError, 503, ("credential rejected", "401")),
    "oa-an-429": ("openai_chat", "an", lambda: AN.rate_limited(30), openai.RateLimitError, 429, ("limited by its provider",)),
    "oa-an-529": ("openai_chat", "an", AN.overloaded, openai.InternalServerError, 503, ("529 overloaded_error",)),
    "an-oa-401": ("anthropic", "oa", OA.invalid_api_key, anthropic.InternalServerError, 503, ("credential rejected", "401")),
    "an-oa-429": ("anthropic", "oa", lambda: OA.rate_limited(30), anthropic.RateLimitError, 429, ("limited by its provider",)),
    "an-oa-500": ("anthropic", "oa", OA.server_error, anthropic.InternalServerError, 503, ("500",)),
}


def config(anthropic_url: str, openai_url: str) -> str:
    providers, models = [], []
    for i, (case, (_, kind, *_)) in enumerate(CASES.items()):
        url, type_ = (anthropic_url, "anthropic") if kind == "an" else (openai_url, "openai")
        providers.append(f'  p{i}:\n    type: {type_}\n    base_url: {url}\n    credentials: [{{id: k, key: "${{UPSTREAM_KEY}}"}}]')
        models.append(f"  {case}:\n    - {{provider: p{i}, model: upstream-{case}}}")
    head = "server:\n  master_key: ${FAREGATE_MASTER_KEY}\nrouting:\n  retries: 1\n  cooldown: {failures: 1000, seconds: 1}\n"
    return head + "providers:\n" + "\n".join(providers) + "\nmodels:\n" + "\n".join(models) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeAnthropic, FakeOpenAI]]:
    tmp: Path = tmp_path_factory.mktemp("errors")
    with FakeAnthropic() as an, FakeOpenAI() as oa, GatewayProcess(tmp, config(an.url, oa.url), env=UPSTREAM_ENV).start() as gw:
        yield gw, an, oa


@pytest.mark.parametrize("case", list(CASES))
def test_an_upstream_failure_is_the_sdks_own_exception_with_the_precise_message(
    world: tuple[GatewayProcess, FakeAnthropic, FakeOpenAI], case: str
) -> None:
    gw, an, oa = world
    client_format, kind, fault, exception, status, words = CASES[case]
    (an if kind == "an" else oa).set_rule(f"upstream-{case}", fault())
    hello: Any = [{"role": "user", "content": "Hello"}]

    def ask() -> None:
        if client_format == "anthropic":
            sdk = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
            sdk.messages.create(model=case, max_tokens=20, messages=hello)
        else:
            chat = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
            chat.chat.completions.create(model=case, messages=hello)

    with pytest.raises(exception) as caught:
        ask()
    error: Any = caught.value
    assert error.status_code == status
    body = error.body
    if client_format == "anthropic":  # the SDK keeps the whole body: {"type": "error", "error": {...}}
        assert isinstance(body, dict) and body["type"] == "error", body
        assert body["error"]["type"] == ("rate_limit_error" if status == 429 else "overloaded_error")
        message = body["error"]["message"]
    else:  # the OpenAI SDK keeps the error object
        assert isinstance(body, dict) and set(body) >= {"message", "type", "code"}, body
        message = body["message"]
    assert f"for model '{case}'" in message and f"upstream-{case}" in message, message
    for word in words:
        assert word in message, message
    assert UPSTREAM_ENV["UPSTREAM_KEY"] not in message
    if status == 429:
        assert int(error.response.headers["retry-after"]) >= 1
