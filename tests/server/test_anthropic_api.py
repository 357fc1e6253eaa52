"""/v1/messages and /v1/messages/count_tokens through the official anthropic SDK, against the mock
provider (which answers Anthropic clients in Anthropic's wire format), in a real gateway process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
  stream_heartbeat: 0.1
providers:
  local: {type: mock, chunk_delay: 0, stream_chunks: 4}
  slow: {type: mock, chunk_delay: 0.35, stream_chunks: 2}
models:
  claude-demo:
    - {provider: local, model: mock-small}
  slow-demo:
    - {provider: slow, model: mock-small}
  cutter:
    - {provider: local, model: mock-stream-cut}
  rejects:
    - {provider: local, model: mock-error-400}
  down:
    - {provider: local, model: mock-error-503}
  spent:
    - {provider: local, model: mock-error-quota}
prices:
  mock-small: {input: 1.0, output: 2.0}
  mock-stream-cut: {input: 1.0, output: 2.0}
"""
HELLO = [{"role": "user", "content": "Hello there, mock"}]
EVENTS = [
    "message_start",
    "content_block_start",
    "ping",
    *["content_block_delta"] * 4,
    "content_block_stop",
    "message_delta",
    "message_stop",
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG) as gw:
        yield gw


def sdk(gateway: GatewayProcess, key: str = MASTER_KEY, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=30, **kwargs)


def new_key(gateway: GatewayProcess, **fields: Any) -> str:
    created = httpx.post(gateway.url + "/admin/keys", json={"name": "k", **fields}, headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert created.status_code in (200, 201), created.text
    return str(created.json()["key"])


def post(gateway: GatewayProcess, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"x-api-key": MASTER_KEY, "content-type": "application/json", "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.post(gateway.url + path, content=content, headers=h, timeout=30)


def anthropic_error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}, body
    assert set(body["error"]) == {"type", "message"}, body
    return body["error"]  # type: ignore[no-any-return]


def read_stream(client: anthropic.Anthropic, model: str) -> str:
    with client.messages.stream(model=model, max_tokens=64, messages=HELLO) as stream:
        return "".join(stream.text_stream)


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        assert b"event" in lines and b"data" in lines, block
        out.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
    return out


def test_plain_message_with_faregate_headers(gateway: GatewayProcess) -> None:
    raw = sdk(gateway).messages.with_raw_response.create(model="claude-demo", max_tokens=64, messages=HELLO)
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "This is the faregate mock provider answering: Hello there, mock"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 10
    headers = raw.headers
    assert headers["x-faregate-provider"] == "local" and headers["x-faregate-model"] == "mock-small"
    assert len(headers["x-faregate-request-id"]) == 24
    assert headers["x-request-id"] == headers["request-id"] == headers["x-faregate-request-id"]
    assert message._request_id == headers["x-faregate-request-id"]  # what the SDK shows
    assert len(headers["x-faregate-generation"]) == 12
    expected = (message.usage.input_tokens * 1.0 + 10 * 2.0) / 1e6
    assert float(headers["x-faregate-cost-usd"]) == pytest.approx(expected)


def test_stream_accumulates_and_has_the_exact_event_sequence(gateway: GatewayProcess) -> None:
    with sdk(gateway).messages.stream(model="claude-demo", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "This is the faregate mock provider answering: Hello there, mock"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 10 and final.usage.input_tokens > 0

    body = orjson.dumps({"model": "claude-demo", "max_tokens": 64, "stream": True, "messages": HELLO})
    with httpx.stream("POST", gateway.url + "/v1/messages", content=body, headers={"x-api-key": MASTER_KEY}) as r:
        raw = r.read()
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache, no-transform" and r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-faregate-provider"] == "local"
    events = sse_events(raw)
    assert [name for name, _ in events] == EVENTS
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn" and events[-2][1]["usage"]["output_tokens"] == 10
    assert b"[DONE]" not in raw


def test_heartbeat_of_an_anthropic_stream_is_a_ping_event(gateway: GatewayProcess) -> None:
    """The slow mock is silent 0.35 s between its two content events: 3 heartbeat intervals of 0.1 s."""
    body = orjson.dumps({"model": "slow-demo", "max_tokens": 64, "stream": True, "messages": HELLO})
    raw = post(gateway, "/v1/messages", body).content
    names = [name for name, _ in sse_events(raw)]
    assert names.count("ping") > 1, names
    assert names[-1] == "message_stop" and b"keep-alive" not in raw


def test_count_tokens_is_an_estimate_and_says_so(gateway: GatewayProcess) -> None:
    raw = sdk(gateway).messages.with_raw_response.count_tokens(model="claude-demo", messages=HELLO, system="Be brief.")
    counted = raw.parse()
    assert counted.input_tokens == len(orjson.dumps(["Be brief.", HELLO, []])) // 4
    assert raw.headers["x-faregate-estimated"] == "true"
    assert raw.headers["x-faregate-cost-usd"] == "0.00000000"
    bare = post(gateway, "/messages/count_tokens", orjson.dumps({"model": "claude-demo", "messages": HELLO}))  # without /v1
    assert bare.status_code == 200 and bare.json()["input_tokens"] > 0


def test_x_api_key_and_bearer_both_authenticate_a_virtual_key(gateway: GatewayProcess) -> None:
    key = new_key(gateway)
    by_header = sdk(gateway, key).messages.create(model="claude-demo", max_tokens=16, messages=HELLO)
    by_bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=key, max_retries=0).messages.create(
        model="claude-demo", max_tokens=16, messages=HELLO
    )
    assert by_header.content == by_bearer.content
    missing = post(gateway, "/v1/messages", b"{}", {"x-api-key": ""})
    assert missing.status_code == 401 and anthropic_error(missing)["type"] == "authentication_error"


def test_bad_key_is_the_sdks_authentication_error(gateway: GatewayProcess) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk(gateway, "sk-fg-wrong").messages.create(model="claude-demo", max_tokens=16, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}}


def test_unknown_model_is_not_found_with_the_closest_names(gateway: GatewayProcess) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(gateway).messages.create(model="claude-dem", max_tokens=16, messages=HELLO)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "not_found_error"
    assert error["message"] == "The model 'claude-dem' does not exist on this gateway; did you mean 'claude-demo' or 'slow-demo'?"


def test_budget_exceeded_is_a_rate_limit_error_naming_the_budget(gateway: GatewayProcess) -> None:
    key = new_key(gateway, budget_usd=0.000001)
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(gateway, key).messages.create(model="claude-demo", max_tokens=4096, messages=HELLO)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "rate_limit_error"
    assert error["message"].startswith("budget exceeded for key ") and "> limit $0.000001" in error["message"]


def test_rate_limit_exceeded_is_a_rate_limit_error_with_retry_after(gateway: GatewayProcess) -> None:
    client = sdk(gateway, new_key(gateway, rpm=1))
    client.messages.create(model="claude-demo", max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="claude-demo", max_tokens=16, messages=HELLO)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "rate_limit_error"
    assert error["message"].startswith("rate limit reached for key:key_") and "1 requests per minute; retry in " in error["message"]
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_no_deployment_is_a_server_error_naming_every_deployment(gateway: GatewayProcess) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk(gateway).messages.create(model="down", max_tokens=16, messages=HELLO)
    assert caught.value.status_code == 503
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "overloaded_error"
    assert error["message"].startswith("no deployment available for model 'down': local/mock-error-503: 503")


def test_a_mock_error_is_read_as_an_anthropic_provider_would_read_it(gateway: GatewayProcess) -> None:
    """The mock answers an Anthropic client with Anthropic's error (here: the spend-limit 429, its
    details.error_code); it is classified by the Anthropic transport, so it is the account's quota,
    not a passing rate limit, as from a real Anthropic upstream."""
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(gateway).messages.create(model="spent", max_tokens=16, messages=HELLO)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "rate_limit_error"
    assert error["message"] == (
        "every deployment for model 'spent' is limited by its provider: local/mock-error-quota: 429 enforced_spend_limit_reached"
    )


def test_upstream_400_reaches_an_anthropic_client_in_anthropic_shape(gateway: GatewayProcess) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model="rejects", max_tokens=16, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "mock: the request was rejected as invalid (upstream local/mock-error-400 answered 400)",
        },
    }


def test_upstream_400_still_reaches_an_openai_client_in_openai_shape(gateway: GatewayProcess) -> None:
    body = orjson.dumps({"model": "rejects", "messages": HELLO})
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "mock: the request was rejected as invalid (upstream local/mock-error-400 answered 400)"
    assert r.json()["error"]["code"] == "invalid_value"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object, not an array"),
        (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', "missing required field 'model'"),
        (b'{"model": "claude-demo", "max_tokens": 5}', "missing required field 'messages'"),
        (b'{"model": "claude-demo", "max_tokens": 5, "messages": {}}', "'messages' must be an array"),
        (b'{"model": "claude-demo", "max_tokens": 5, "messages": [{"content": "x"}]}', "'messages[0].role' must be a string"),
        (b'{"model": "claude-demo", "messages": [{"role": "user", "content": "x"}]}', "missing required field 'max_tokens'"),
        (b'{"model": "claude-demo", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}', "'max_tokens' must be at least 1"),
        (b'{"model": "claude-demo", "max_tokens": 2.5, "messages": [{"role": "user", "content": "x"}]}', "whole number, not 2.5"),
        (b'{"model": "claude-demo", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}', "whole number, not a string"),
        (
            b'{"model": "claude-demo", "max_tokens": 5, "stream": 1, "messages": [{"role": "user", "content": "x"}]}',
            "'stream' must be a boolean",
        ),
    ],
)
def test_bad_bodies_are_400_in_anthropic_shape(gateway: GatewayProcess, content: bytes, needle: str) -> None:
    response = post(gateway, "/v1/messages", content)
    assert response.status_code == 400, response.text
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error" and needle in error["message"], error
    assert response.headers["x-faregate-request-id"]


def test_bad_body_through_the_sdk_is_its_bad_request_error(gateway: GatewayProcess) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(model="claude-demo", max_tokens=0, messages=HELLO)
    assert caught.value.body["error"]["message"] == "'max_tokens' must be at least 1, not 0"  # type: ignore[index]


def test_count_tokens_does_not_require_max_tokens_and_checks_the_rest(gateway: GatewayProcess) -> None:
    bad = post(gateway, "/v1/messages/count_tokens", b'{"model": "claude-demo"}')
    assert bad.status_code == 400 and "'messages'" in anthropic_error(bad)["message"]


def test_route_errors_on_messages_paths_are_in_anthropic_shape(gateway: GatewayProcess) -> None:
    wrong_method = httpx.get(gateway.url + "/v1/messages", headers={"x-api-key": MASTER_KEY})
    assert wrong_method.status_code == 405 and anthropic_error(wrong_method)["type"] == "invalid_request_error"
    unknown = httpx.post(gateway.url + "/v1/messages/batches", headers={"x-api-key": MASTER_KEY})
    assert unknown.status_code == 404 and anthropic_error(unknown)["type"] == "not_found_error"
    unauthenticated = httpx.post(gateway.url + "/v1/messages/batches")
    assert unauthenticated.status_code == 401 and anthropic_error(unauthenticated)["type"] == "authentication_error"


def test_a_cut_stream_ends_with_an_anthropic_error_event(gateway: GatewayProcess) -> None:
    body = orjson.dumps({"model": "cutter", "max_tokens": 64, "stream": True, "messages": HELLO})
    raw = post(gateway, "/v1/messages", body).content
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "error"]
    error = events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "local/mock-stream-cut was interrupted" in error["error"]["message"] and "incomplete" in error["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as caught:
        read_stream(sdk(gateway), "cutter")
    assert "was interrupted" in str(caught.value)


def test_a_cut_openai_stream_still_ends_with_an_openai_error_event(gateway: GatewayProcess) -> None:
    body = orjson.dumps({"model": "cutter", "stream": True, "messages": HELLO})
    r = httpx.post(gateway.url + "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {MASTER_KEY}"})
    last = [e for e in r.content.split(b"\n\n") if e.strip()][-1]
    assert last.startswith(b"data: {") and orjson.loads(last[6:])["error"]["code"] == "stream_interrupted"
    assert b"event:" not in r.content
