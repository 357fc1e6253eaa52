"""The Anthropic diagonal end to end: the official anthropic SDK (and raw HTTP, to see bytes) ->
a real gateway process -> a fake Anthropic upstream on loopback. Nothing is translated: the body
goes up as the client wrote it with only the model replaced, the stream comes back as read, usage
is observed for pricing (the same streamed or not), and upstream errors keep their classes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import MessageParam

from tests.fakes import anthropic_wire as wire
from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic, Recorded, errors
from tests.support.procs import MASTER_KEY, GatewayProcess

ANTHROPIC_KEY = "sk-ant-CANARY-diagonal-4b3a29d1c0e8f7a6"
CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  an:
    type: anthropic
    base_url: {url}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 10
models:
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
  claude-failover:
    - {{provider: an, model: claude-opus-4-5, priority: 0}}
    - {{provider: an, model: claude-sonnet-4-5-20250929, priority: 1}}
routing:
  retries: 1
  cooldown: {{failures: 1000, seconds: 1}}
"""
AUTH = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello, Claude"}]
STREAM_EVENTS = [  # the fake's stream of one text block in 4 deltas
    "message_start",
    "content_block_start",
    "ping",
    *["content_block_delta"] * 4,
    "content_block_stop",
    "message_delta",
    "message_stop",
]
CACHE_USAGE = {
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 30,
    "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
}
SONNET = {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75, "cache_write_1h": 6.0}  # prices.json


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG.format(url=upstream.url), env={"ANTHROPIC_KEY": ANTHROPIC_KEY}) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(upstream: FakeAnthropic) -> Iterator[None]:
    upstream.clear()
    upstream.strict_fields = True
    yield
    upstream.clear()


def sdk(gateway: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def last(upstream: FakeAnthropic) -> Recorded:
    assert upstream.wait_for_requests(1, 10)
    return upstream.requests[-1]


def spend_row(gateway: GatewayProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The spend row of one request, once the writer has flushed it (in batches): a bounded wait on a condition."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(
            gateway.url + "/admin/spend/logs", params={"request_id": request_id}, headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            return dict(r.json()["data"][0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.05)


# A Claude Code-shaped request: system blocks with cache_control (1 h and 5 min), an earlier turn
# with thinking and its signature, tool use and result, tools with cache_control, metadata, betas'
# fields, and a field this gateway has never heard of. Keys deliberately not in alphabetical order.
CLAUDE_CODE: dict[str, Any] = {
    "model": "claude",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Fix the failing test in main.py"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Read main.py first.", "signature": wire.signature_for("Read main.py first.")},
                {"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"file_path": "/src/main.py"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "def f():\n    return 1\n"},
                {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ],
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Project instructions...", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ],
    "tools": [
        {
            "name": "Read",
            "description": "Reads a file",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
            "cache_control": {"type": "ephemeral"},
        }
    ],
    "metadata": {"user_id": "user_0a1b_account__session_9f8e"},
    "max_tokens": 32000,
    "thinking": {"type": "enabled", "budget_tokens": 4096},
    "stream": False,
    "x_future_field": {"kept": [1, 2.5, "three"]},
}


def test_a_claude_code_request_goes_up_as_written_with_only_the_model_replaced(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.strict_fields = False  # the real API refuses x_future_field; faregate must not be the one dropping it
    beta = "claude-code-20250219,interleaved-thinking-2025-05-14"
    r = httpx.post(gateway.url + "/v1/messages", content=orjson.dumps(CLAUDE_CODE), headers={**AUTH, "anthropic-beta": beta}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-faregate-model"] == "claude-sonnet-4-5"
    assert "x-faregate-dropped" not in r.headers
    assert r.headers["x-faregate-upstream-request-id"].startswith("req_")  # Anthropic's request-id header
    rec = last(upstream)
    assert rec.path == "/v1/messages"
    assert rec.body == orjson.dumps({**CLAUDE_CODE, "model": "claude-sonnet-4-5"})  # every key, value and order
    assert rec.x_api_key == ANTHROPIC_KEY and rec.bearer is None  # the upstream key, never the client's
    assert rec.version == "2023-06-01"
    assert rec.betas == ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    assert r.json()["type"] == "message" and r.json()["content"][-1]["text"] == wire.DEFAULT_REPLY


def test_the_golden_claude_code_request_survives_the_diagonal_byte_for_byte(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    recorded = orjson.loads((Path(__file__).parent / "formats" / "golden" / "anthropic_claude_code.json").read_bytes())["anthropic"]
    sent = orjson.dumps({**recorded, "model": "claude"})
    r = httpx.post(gateway.url + "/v1/messages", content=sent, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert last(upstream).body == orjson.dumps({**recorded, "model": "claude-sonnet-4-5"})


def test_the_sdk_gets_its_reply_and_the_reply_is_priced_from_anthropics_usage(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-sonnet-4-5", Behaviour(usage=CACHE_USAGE))
    raw = sdk(gateway).messages.with_raw_response.create(model="claude", max_tokens=256, messages=HELLO)
    message = raw.parse()
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock) and block.text == wire.DEFAULT_REPLY
    sent = last(upstream).json
    assert isinstance(sent, dict) and sent["model"] == "claude-sonnet-4-5"
    input_tokens = wire.count_input_tokens(sent)
    output_tokens = wire.count_output_tokens([{"type": "text", "text": wire.DEFAULT_REPLY}])
    assert message.usage.input_tokens == input_tokens and message.usage.cache_read_input_tokens == 100  # as the upstream said
    expected = (input_tokens * 3.0 + 100 * 0.3 + 10 * 3.75 + 20 * 6.0 + output_tokens * 15.0) / 1e6
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx(expected, abs=1e-8)
    row = spend_row(gateway, raw.headers["x-request-id"])
    assert row["prompt_tokens"] == input_tokens + 130 and row["completion_tokens"] == output_tokens
    assert row["cost_usd"] == pytest.approx(expected, abs=1e-8)


def test_a_stream_is_relayed_as_read_and_costs_what_the_same_reply_costs_whole(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-sonnet-4-5", Behaviour(usage=CACHE_USAGE, chunks=4))
    body = {"model": "claude", "max_tokens": 256, "messages": HELLO}
    whole = httpx.post(gateway.url + "/v1/messages", json=body, headers=AUTH, timeout=30)
    assert whole.status_code == 200
    with httpx.stream("POST", gateway.url + "/v1/messages", json={**body, "stream": True}, headers=AUTH, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
        request_id = r.headers["x-request-id"]
    events = wire.parse_stream(raw)
    assert [name for name, _ in events] == STREAM_EVENTS  # Anthropic's sequence as the upstream sent it
    assert b"[DONE]" not in raw and b": keep-alive" not in raw
    text = "".join(d["delta"]["text"] for name, d in events if name == "content_block_delta")
    assert text == wire.DEFAULT_REPLY
    streamed, plain = spend_row(gateway, request_id), spend_row(gateway, whole.headers["x-request-id"])
    assert streamed["prompt_tokens"] == plain["prompt_tokens"] and streamed["completion_tokens"] == plain["completion_tokens"]
    assert streamed["cost_usd"] == pytest.approx(plain["cost_usd"], abs=1e-12) and plain["cost_usd"] > 0


def test_the_sdk_stream_through_the_gateway(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    with sdk(gateway).messages.stream(model="claude", max_tokens=256, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == wire.DEFAULT_REPLY
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == wire.count_output_tokens([wire.text(wire.DEFAULT_REPLY)])
    assert last(upstream).stream


def test_count_tokens_is_the_upstreams_exact_count(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    raw = sdk(gateway).messages.with_raw_response.count_tokens(model="claude", messages=HELLO)
    counted = raw.parse()
    rec = last(upstream)
    assert rec.path == "/v1/messages/count_tokens" and isinstance(rec.json, dict) and rec.json["model"] == "claude-sonnet-4-5"
    assert counted.input_tokens == wire.count_input_tokens(rec.json)
    assert "x-faregate-estimated" not in raw.headers


def test_an_upstream_400_reaches_the_sdk_as_anthropic_wrote_it(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-sonnet-4-5", errors.bad_request("messages.0.content: Field required"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == "messages.0.content: Field required (upstream an/claude-sonnet-4-5 answered 400)"


def test_overloaded_529_is_retried_on_the_next_deployment(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-opus-4-5", errors.overloaded())
    raw = sdk(gateway).messages.with_raw_response.create(model="claude-failover", max_tokens=10, messages=HELLO)
    assert raw.headers["x-faregate-model"] == "claude-sonnet-4-5-20250929"
    assert upstream.count("claude-opus-4-5") == 1 and upstream.count("claude-sonnet-4-5-20250929") == 1


def test_an_error_event_mid_stream_ends_the_stream_with_an_anthropic_error_event(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-sonnet-4-5", errors.error_mid_stream("content_block_stop"))
    body = {"model": "claude", "max_tokens": 256, "messages": HELLO, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/messages", json=body, headers=AUTH, timeout=30) as r:
        events = wire.parse_stream(r.read())
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error" and "message_stop" not in names
    error = events[-1][1]
    assert error["type"] == "error"
    assert "error event overloaded_error: Overloaded" in error["error"]["message"]


def test_a_stream_closed_before_message_stop_is_not_a_clean_finish(gateway: GatewayProcess, upstream: FakeAnthropic) -> None:
    upstream.set_rule("claude-sonnet-4-5", errors.drop_mid_stream("message_stop"))
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk(gateway).messages.stream(model="claude", max_tokens=256, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
    assert "interrupted" in str(caught.value)
