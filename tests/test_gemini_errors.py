"""Each of Google's error classes from a Gemini deployment reaches the openai and anthropic SDKs as
their own exception, with faregate's message: INVALID_ARGUMENT passed on with Google's message,
a bad key (400 API_KEY_INVALID) and PERMISSION_DENIED the credential's, NOT_FOUND for the
deployment's model a misnamed deployment, RESOURCE_EXHAUSTED a provider limit, INTERNAL and
UNAVAILABLE the server's; an error chunk mid-stream ends the stream with an error event. Every case
has its own provider and model, so no case cools down another. A real gateway; the fake Gemini."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.gemini_upstream import Behaviour, FakeGemini, errors
from tests.support.procs import MASTER_KEY, GatewayProcess

KEY = "AIza-CANARY-errors-77aa66bb55"
# case: (client, fault, SDK exception, status, words the message holds)
CASES: dict[str, tuple[str, Callable[[], Behaviour], type[Exception], int, tuple[str, ...]]] = {
    "oa-400": (
        "openai",
        lambda: errors.bad_request("contents.parts must not be empty"),
        openai.BadRequestError,
        400,
        ("contents.parts must not be empty",),
    ),
    "an-400": (
        "anthropic",
        lambda: errors.bad_request("contents.parts must not be empty"),
        anthropic.BadRequestError,
        400,
        ("contents.parts must not be empty",),
    ),
    "oa-key": ("openai", errors.invalid_key, openai.InternalServerError, 503, ("credential rejected", "API_KEY_INVALID")),
    "an-key": ("anthropic", errors.invalid_key, anthropic.InternalServerError, 503, ("credential rejected", "API_KEY_INVALID")),
    "oa-403": ("openai", errors.permission_denied, openai.InternalServerError, 503, ("credential rejected", "403")),
    "oa-404": ("openai", lambda: errors.model_not_found("gemini-nope"), openai.InternalServerError, 503, ("misconfigured",)),
    "oa-429": ("openai", errors.rate_limited, openai.RateLimitError, 429, ("limited by its provider",)),
    "an-429": ("anthropic", errors.rate_limited, anthropic.RateLimitError, 429, ("limited by its provider",)),
    "oa-500": ("openai", errors.internal, openai.InternalServerError, 503, ("500 INTERNAL",)),
    "oa-503": ("openai", errors.unavailable, openai.InternalServerError, 503, ("503 UNAVAILABLE",)),
    "an-503": ("anthropic", errors.unavailable, anthropic.InternalServerError, 503, ("503 UNAVAILABLE",)),
}


def config(url: str) -> str:
    providers, models = [], []
    for i, case in enumerate([*CASES, "stream"]):
        providers.append(f'  p{i}:\n    type: gemini\n    base_url: {url}\n    credentials: [{{id: k, key: "${{GEMINI_KEY}}"}}]')
        models.append(f"  {case}:\n    - {{provider: p{i}, model: gemini-{case}}}")
    head = "server:\n  master_key: ${FAREGATE_MASTER_KEY}\nrouting:\n  retries: 1\n  cooldown: {failures: 1000, seconds: 1}\n"
    return head + "providers:\n" + "\n".join(providers) + "\nmodels:\n" + "\n".join(models) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeGemini]]:
    with FakeGemini() as fake:
        env = {"FAREGATE_MASTER_KEY": MASTER_KEY, "GEMINI_KEY": KEY}
        with GatewayProcess(tmp_path_factory.mktemp("gemini-errors"), config(fake.url), env=env).start() as gateway:
            yield gateway, fake


def _ask(gateway: GatewayProcess, client: str, model: str) -> Any:
    if client == "openai":
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
        return sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    return claude.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("case", list(CASES))
def test_each_google_error_class_is_the_sdks_own_exception(world: tuple[GatewayProcess, FakeGemini], case: str) -> None:
    gateway, fake = world
    client, fault, exception, status, words = CASES[case]
    fake.set_rule(f"gemini-{case}", fault())
    with pytest.raises(exception) as caught:
        _ask(gateway, client, case)
    error = caught.value
    assert isinstance(error, openai.APIStatusError | anthropic.APIStatusError) and error.status_code == status
    message = str(error)
    for word in words:
        assert word in message, message
    assert KEY not in message and KEY not in gateway.logs()


def test_an_error_chunk_mid_stream_ends_the_stream_with_an_error_event(world: tuple[GatewayProcess, FakeGemini]) -> None:
    gateway, fake = world
    fake.set_rule("gemini-stream", Behaviour(reply_text="one two three four five six", chunks=3, error_after=2))
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
    seen: list[str] = []

    def read() -> None:
        for chunk in sdk.chat.completions.create(model="stream", messages=[{"role": "user", "content": "hi"}], stream=True):
            seen.extend([chunk.choices[0].delta.content or ""] if chunk.choices else [])

    with pytest.raises(openai.APIError) as caught:
        read()
    assert "".join(seen) == "one two three four"  # the two good chunks (9 characters each) came first
    assert "overloaded" in str(caught.value).lower() or "unavailable" in str(caught.value).lower()
