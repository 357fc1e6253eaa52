"""/v1/messages routes in front of real upstreams on loopback (the fake Anthropic and the fake
OpenAI): count_tokens exact from an Anthropic deployment and estimated (and said so) for an OpenAI
one, anthropic-version/anthropic-beta forwarded, an Anthropic upstream's 400 reaching the client as
sent, and a stream the upstream cuts ending with Anthropic's ``event: error``."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from tests.fakes import anthropic_wire as wire
from tests.fakes.anthropic_upstream import FakeAnthropic, errors
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  oa:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
models:
  claude:
    - {{provider: an, model: claude-sonnet-4-6}}
  claude-cut:
    - {{provider: an, model: claude-haiku-4-5-20251001}}
  gpt:
    - {{provider: oa, model: gpt-4o-2024-08-06}}
"""
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    with FakeAnthropic() as an, FakeOpenAI() as oa:
        yield an, oa


@pytest.fixture(scope="module")
def gateway(fakes: tuple[FakeAnthropic, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    an, oa = fakes
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG.format(openai=oa.url, anthropic=an.url), env=UPSTREAM_ENV) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(fakes: tuple[FakeAnthropic, FakeOpenAI]) -> None:
    for fake in fakes:
        fake.clear()


def sdk(gateway: GatewayProcess, **kwargs: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_count_tokens_from_an_anthropic_deployment_is_exact_with_the_clients_headers(
    gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    an, _ = fakes
    raw = sdk(gateway).messages.with_raw_response.count_tokens(
        model="claude",
        messages=HELLO,
        system="Be brief.",
        extra_headers={"anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01"},
    )
    payload = {"model": "claude-sonnet-4-6", "system": "Be brief.", "messages": HELLO}
    assert raw.parse().input_tokens == wire.count_input_tokens(payload)
    assert "x-faregate-estimated" not in raw.headers
    assert raw.headers["x-faregate-provider"] == "an" and raw.headers["x-faregate-cost-usd"] == "0.00000000"
    [seen] = an.requests
    assert seen.path == "/v1/messages/count_tokens" and seen.json["model"] == "claude-sonnet-4-6"
    assert seen.version == "2023-06-01" and seen.betas == ["token-counting-2024-11-01"]
    assert seen.x_api_key == UPSTREAM_ENV["UPSTREAM_KEY"] and MASTER_KEY not in str(seen.headers)


def test_count_tokens_for_an_openai_deployment_is_estimated_and_says_so(
    gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    _, oa = fakes
    raw = sdk(gateway).messages.with_raw_response.count_tokens(model="gpt", messages=HELLO)
    assert raw.parse().input_tokens == len(orjson.dumps(["", HELLO, []])) // 4
    assert raw.headers["x-faregate-estimated"] == "true"
    assert raw.headers["x-faregate-provider"] == "oa" and raw.headers["x-faregate-cost-usd"] == "0.00000000"
    assert oa.requests == []  # nothing upstream can count: no request was sent


def test_an_anthropic_upstreams_400_reaches_the_client_as_sent(gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]) -> None:
    an, _ = fakes
    an.set_rule("claude-sonnet-4-6", errors.bad_request("messages: roles must alternate between user and assistant"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model="claude", max_tokens=32, messages=HELLO)
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "messages: roles must alternate between user and assistant (upstream an/claude-sonnet-4-6 answered 400)",
    }


def test_a_stream_the_anthropic_upstream_cuts_ends_with_an_error_event(
    gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    an, _ = fakes
    an.set_rule("claude-haiku-4-5-20251001", errors.drop_mid_stream("content_block_stop"))
    body = orjson.dumps({"model": "claude-cut", "max_tokens": 32, "stream": True, "messages": HELLO})
    raw = httpx.post(gateway.url + "/v1/messages", content=body, headers={"x-api-key": MASTER_KEY}, timeout=30).content
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[0].startswith(b"event: message_start\n")
    assert all(not e.startswith((b"event: message_stop", b"event: content_block_stop")) for e in events)
    name, data = events[-1].split(b"\n", 1)
    assert name == b"event: error"
    error = orjson.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("the upstream stream from an/claude-haiku-4-5-20251001 was interrupted")


def test_several_anthropic_beta_headers_reach_the_upstream_as_one_list(
    gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    """Claude Code may send anthropic-beta more than once; HTTP makes repeated headers one
    comma-separated list, and every beta reaches the upstream in the order sent."""
    an, _ = fakes
    headers = [
        ("x-api-key", MASTER_KEY),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "interleaved-thinking-2025-05-14"),
        ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14, context-1m-2025-08-07"),
    ]
    body = orjson.dumps({"model": "claude", "max_tokens": 32, "messages": HELLO})
    r = httpx.post(gateway.url + "/v1/messages", content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    [seen] = an.requests
    assert seen.betas == ["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14", "context-1m-2025-08-07"]


def test_a_stream_an_overloaded_upstream_cuts_ends_with_an_overloaded_error_event(
    gateway: GatewayProcess, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    """An Anthropic upstream's mid-stream overloaded_error stays overloaded_error for an Anthropic
    client (which retries it later), not api_error."""
    an, _ = fakes
    an.set_rule("claude-haiku-4-5-20251001", errors.error_mid_stream("content_block_stop"))
    body = orjson.dumps({"model": "claude-cut", "max_tokens": 32, "stream": True, "messages": HELLO})
    raw = httpx.post(gateway.url + "/v1/messages", content=body, headers={"x-api-key": MASTER_KEY}, timeout=30).content
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    name, data = events[-1].split(b"\n", 1)
    assert name == b"event: error"
    error = orjson.loads(data.removeprefix(b"data: "))["error"]
    assert error["type"] == "overloaded_error"
    assert error["message"].startswith("the upstream stream from an/claude-haiku-4-5-20251001 was interrupted")
    assert "overloaded_error" in error["message"]
