"""Checks that the fake OpenAI upstream speaks the wire format the real SDK expects."""

from __future__ import annotations

import base64
import http.client
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, errors

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.clear()
    return server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key="sk-test-abcd1234wxyz", max_retries=0, timeout=5) as sdk:
        yield sdk


def raw_post(fake: FakeOpenAI, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("POST", "/v1" + path, body, {"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_chat_completion_and_recording(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4o-mini" and reply.id.startswith("chatcmpl-")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == len("Say hello") // 4 + 1
    assert reply.usage.completion_tokens == 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 5
    [rec] = fake.requests
    assert (rec.method, rec.path, rec.model) == ("POST", "/v1/chat/completions", "gpt-4o-mini")
    assert rec.api_key == "sk-test-abcd1234wxyz"
    assert rec.json is not None and rec.json["messages"] == MESSAGES
    assert fake.count("gpt-4o-mini") == 1 and fake.count("other") == 0


def test_streaming_sends_every_event_then_done(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.set_rule("gpt-4o-mini", Behaviour(chunks=4, chunk_delay=0.01, reply_text="abcdefgh"))
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "abcdefgh"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len(chunks) == 1 + 4 + 1 + 1

    status, headers, body = raw_post(
        fake, "/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}).encode()
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = body.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert len(events) == 1 + 4 + 1 + 1 + 1


def test_legacy_completions(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon")
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "Hello from the fake upstream."
    stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream) == "Hello from the fake upstream."


def test_embeddings_float_and_base64(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    via_sdk = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in via_sdk.data] == [0, 1]
    assert len(via_sdk.data[0].embedding) == 8
    sent = fake.requests[-1].json
    assert sent is not None and sent["encoding_format"] == "base64"  # the SDK's default
    as_floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert as_floats.data[0].embedding == via_sdk.data[0].embedding
    assert as_floats.data[0].embedding != as_floats.data[1].embedding
    _, _, body = raw_post(fake, "/embeddings", json.dumps({"model": "m", "input": [1, 2, 3], "encoding_format": "base64"}).encode())
    item = json.loads(body)["data"][0]["embedding"]
    assert len(struct.unpack("<8f", base64.b64decode(item))) == 8


def test_models_list(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]


@pytest.mark.parametrize(
    ("behaviour", "exc_type", "status"),
    [
        (errors.rate_limited(retry_after=7), openai.RateLimitError, 429),
        (errors.insufficient_quota(), openai.RateLimitError, 429),
        (errors.invalid_api_key(), openai.AuthenticationError, 401),
        (errors.permission_denied(), openai.PermissionDeniedError, 403),
        (errors.bad_request("bad temperature", "temperature"), openai.BadRequestError, 400),
        (errors.model_not_found("gpt-9"), openai.NotFoundError, 404),
        (errors.server_error(), openai.InternalServerError, 500),
        (errors.bad_gateway(), openai.InternalServerError, 502),
        (errors.overloaded(), openai.InternalServerError, 503),
    ],
)
def test_error_classes_surface_as_sdk_exceptions(
    fake: FakeOpenAI,
    client: openai.OpenAI,
    behaviour: Behaviour,
    exc_type: type[openai.APIStatusError],
    status: int,
) -> None:
    fake.enqueue(behaviour)
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == status
    if behaviour.error is not None:
        assert info.value.code == behaviour.error["code"]
    # the queue is FIFO and one-shot: the next request succeeds
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices


def test_invalid_api_key_is_redacted(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(errors.invalid_api_key())
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "sk-test-abcd1234wxyz" not in str(info.value.body)
    assert "wxyz" in str(info.value.body) and "sk-***" in str(info.value.body)


def test_retry_after_header_and_rules(fake: FakeOpenAI) -> None:
    fake.set_rule("slow-model", errors.rate_limited(retry_after=7))
    status, headers, body = raw_post(fake, "/chat/completions", b'{"model": "slow-model", "messages": []}')
    assert (status, headers["retry-after"]) == (429, "7")
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert raw_post(fake, "/chat/completions", b'{"model": "x", "messages": []}')[0] == 200


def test_invalid_json_and_unknown_url_are_recorded(fake: FakeOpenAI) -> None:
    status, _, body = raw_post(fake, "/chat/completions", b"{not json")
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    status, _, body = raw_post(fake, "/nope", b"{}")
    assert status == 404 and json.loads(body)["error"]["message"] == "Invalid URL (POST /v1/nope)"
    assert [r.body for r in fake.requests] == [b"{not json", b"{}"]
    assert fake.requests[0].json is None


def test_drop_mid_stream_truncates(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(errors.drop_mid_stream(2))
    received: list[Any] = []
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)  # keeps the chunks that arrived before the connection died
    assert len(received) == 2


def test_drop_mid_body_truncates(fake: FakeOpenAI) -> None:
    fake.enqueue(errors.drop_mid_body(10))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", b'{"model": "m", "messages": []}')
    resp = conn.getresponse()
    length = int(resp.getheader("content-length") or 0)
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == 10 < length
    conn.close()


def test_stall_does_not_block_other_requests(fake: FakeOpenAI) -> None:
    fake.set_rule("slow", errors.stall(2))
    started = time.monotonic()
    with openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=0.3) as slow:
        with pytest.raises(openai.APITimeoutError):
            slow.chat.completions.create(model="slow", messages=MESSAGES)
        assert fake.count("slow") == 1  # recorded before stalling
        assert slow.chat.completions.create(model="fast", messages=MESSAGES).choices
    assert time.monotonic() - started < 1.5


def test_bad_json_reply(fake: FakeOpenAI) -> None:
    fake.enqueue(Behaviour(bad_json=True))
    status, headers, body = raw_post(fake, "/chat/completions", b'{"model": "m", "messages": []}')
    assert status == 200 and headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)


def test_urllib_sees_openai_error_body(fake: FakeOpenAI) -> None:
    fake.enqueue(errors.server_error())
    req = urllib.request.Request(fake.url + "/models")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    with info.value as error:
        assert error.code == 500
        assert json.loads(error.read())["error"]["type"] == "server_error"


def test_hostile_fault_modes(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(errors.echo_key(502))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 502 and "sk-test-abcd1234wxyz" in caught.value.message  # the raw key, echoed
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] is None and caught.value.body["code"] is None
    fake.enqueue(errors.error_in_200("server_error"))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.status_code == 200 and json.loads(raw.content)["error"]["type"] == "server_error"
    fake.enqueue(Behaviour(usage={"prompt_tokens": -1_000_000_000, "completion_tokens": 1e300}))
    usage = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).usage
    assert usage is not None and usage.prompt_tokens == -1_000_000_000 and usage.completion_tokens == 1e300
    assert raw.headers["x-request-id"].startswith("req_") and raw.headers["openai-processing-ms"] == "12"


@pytest.mark.parametrize("framing", ["crlf", "cr"])
def test_stream_framing_the_sdk_reads_directly(fake: FakeOpenAI, client: openai.OpenAI, framing: str) -> None:
    """CRLF (sse-starlette's default) and CR framings are valid SSE: the SDK reads them unaided."""
    fake.set_rule("gpt-4o-mini", Behaviour(framing=framing))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake upstream."


CALLS = ({"id": "call_1", "name": "get", "arguments": '{"a": 1}'}, {"id": "call_2", "name": "put", "arguments": '{"b": 2}'})


def test_tool_calls_whole_and_streamed_read_by_the_sdk(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.enqueue(Behaviour(tool_calls=CALLS), Behaviour(tool_calls=CALLS))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].finish_reason == "tool_calls" and reply.choices[0].message.content is None
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("call_1", "get", '{"a": 1}'),
        ("call_2", "put", '{"b": 2}'),
    ]
    got: dict[int, list[str]] = {}
    finish = []
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        for call in chunk.choices[0].delta.tool_calls or []:
            got.setdefault(call.index, []).append((call.function.arguments if call.function else None) or "")
        finish += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert {i: "".join(parts) for i, parts in got.items()} == {0: '{"a": 1}', 1: '{"b": 2}'} and finish == ["tool_calls"]
