"""A misbehaving upstream (issue 9, items 15 and 23): an error message that repeats the key it was
sent never reaches a caller, a log line or a metric; a 200 whose body is an error object is the
upstream error it is, never a success."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from faregate.credentials.keyring import build
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, client, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

Start = Callable[..., GatewayProcess]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "Hi"}]
TWO_DEPLOYMENTS = """
  m:
    - {provider: up, model: a-model}
    - {provider: up, model: b-model, priority: 1}
  one:
    - {provider: up, model: a-model}"""


@pytest.fixture
def gw(fake: FakeOpenAI, gateways: Start) -> GatewayProcess:
    return gateways(config(provider("up", fake.url), TWO_DEPLOYMENTS), env=UPSTREAM_ENV)


def chat(gw: GatewayProcess, model: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=AUTH, json=body, timeout=30) as r:
        r.read()
        return r


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_an_upstream_error_repeating_the_key_never_reaches_anyone(fake: FakeOpenAI, gw: GatewayProcess, status: int) -> None:
    seen: list[str] = []

    def record(r: httpx.Response) -> httpx.Response:
        seen.append(r.text)
        seen.extend(f"{k}: {v}" for k, v in r.headers.items())
        return r

    # the key near the end of a long message too: cut before scrubbing, a part of it would remain
    for behaviour in (errors.echo_key(status), errors.echo_key(status, prefix="x" * 150), errors.error_in_200(None, None, UPSTREAM_KEY)):
        fake.clear()
        fake.set_rule("a-model", behaviour)
        fake.set_rule("b-model", behaviour)
        for stream in (False, True):
            assert httpx.post(gw.url + "/cache/purge", headers=AUTH).status_code == 200  # no cooldown: both are asked
            r = record(chat(gw, "m", stream=stream))
            assert r.status_code == 503, r.text
            assert r.json()["error"]["message"].count("[redacted:") == 2, r.text  # each upstream's message, without the key
        assert fake.count("a-model") == fake.count("b-model") == 2
        assert all(r.api_key == UPSTREAM_KEY for r in fake.requests)  # the key was really sent
    for _ in range(3):  # until both cool down: the cooldown's reason is the upstream's message, scrubbed
        cooling = record(chat(gw, "m"))
    assert "cooling down" in cooling.text and "[redacted:" in cooling.text, cooling.text
    fake.clear()
    assert httpx.post(gw.url + "/cache/purge", headers=AUTH).status_code == 200  # end the cooldowns
    fake.set_rule("b-model", Behaviour(headers={"x-request-id": UPSTREAM_KEY}))  # even in a header
    fake.set_rule("a-model", errors.echo_key(status))
    ok = record(chat(gw, "m"))
    assert ok.status_code == 200 and ok.headers["x-faregate-upstream-request-id"].startswith("[redacted:")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        for path in ("/admin/credentials", "/admin/workers", "/readyz", "/metrics"):
            r = record(http.get(path))
            assert r.status_code == 200, (path, r.text)
    gw.stop()
    logs = gw.logs()
    assert "faregate.access" in logs
    for text in [*seen, logs]:
        assert UPSTREAM_KEY not in text
        assert "CANARY" not in text  # not even a part of it


def test_a_200_with_an_error_body_goes_to_the_next_deployment(fake: FakeOpenAI, gw: GatewayProcess) -> None:
    fake.set_rule("a-model", errors.error_in_200("server_error", message="upstream exploded"))
    answer = client(gw).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.headers["x-faregate-model"] == "b-model"  # a-model's 200 was its failure
    assert answer.parse().choices[0].message.content
    with pytest.raises(openai.InternalServerError) as caught:  # nothing else to try: 503 naming it
        client(gw).chat.completions.create(model="one", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    message = str(caught.value.message)
    assert "up/a-model: 200 with an error object: server_error" in message, message
    streamed = chat(gw, "one", stream=True)  # a stream request answered with an error object: no 200 stream either
    assert streamed.status_code == 503 and "200 with an error object" in streamed.json()["error"]["message"]


def test_a_200_with_an_error_body_is_classified_by_its_type(fake: FakeOpenAI, gw: GatewayProcess) -> None:
    sdk = client(gw)
    fake.set_rule("a-model", errors.error_in_200("invalid_request_error", message="messages must not be empty"))
    with pytest.raises(openai.BadRequestError) as bad:  # about the request: passed on, as a 4xx would be
        sdk.chat.completions.create(model="one", messages=MESSAGES)  # type: ignore[arg-type]
    assert "messages must not be empty" in str(bad.value.message)
    fake.set_rule("a-model", errors.error_in_200("requests", code="rate_limit_exceeded", message="slow down"))
    with pytest.raises(openai.RateLimitError) as limited:  # the provider's limit
        sdk.chat.completions.create(model="one", messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(limited.value.body, dict) and limited.value.body["code"] == "upstream_rate_limited"
    assert httpx.post(gw.url + "/cache/purge", headers=AUTH).status_code == 200  # end a-model's cooldown after the 429
    fake.set_rule("a-model", Behaviour(status=200, error={"message": "bad key", "type": "x", "code": 401}))  # a numeric code
    r = chat(gw, "one")
    assert r.status_code == 503 and "no usable credential" in r.json()["error"]["message"], r.text  # the key is rejected


def test_scrub_removes_every_secret_whole_from_text_and_bytes(tmp_path: Path) -> None:
    """The one scrubber: every credential of every provider and the master key; a key that
    contains another one is removed whole, not leaving its tail."""
    path = tmp_path / "faregate.yaml"
    short, long = "sk-short-0123456789", "sk-short-0123456789-and-more-abcdef"
    path.write_text(
        config(
            provider("a", "http://127.0.0.1:9/v1", key_env="A_KEY") + provider("b", "http://127.0.0.1:9/v1", key_env="B_KEY"),
            "\n  m:\n    - {provider: a, model: x}",
        )
    )
    gen, _ = build(path, env={"A_KEY": short, "B_KEY": long, "FAREGATE_MASTER_KEY": MASTER_KEY})
    text = f"a={short} b={long} master={MASTER_KEY}"
    scrubbed = gen.scrub(text)
    assert short not in scrubbed and "and-more" not in scrubbed and MASTER_KEY not in scrubbed
    assert scrubbed.count("[redacted:") == 3
    assert gen.scrub(text.encode()) == scrubbed.encode()
    assert gen.scrub("nothing to hide") == "nothing to hide"
