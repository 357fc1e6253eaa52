"""translate.py with the real codecs and transports, no I/O: the client's request decoded once,
drop_params applied per deployment, whole replies and streams translated, and every upstream
failure inside a reply or a stream turned into the attempt's error (the relay then ends the
client's stream with its own error event)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import orjson
import pytest

from faregate.credentials.keyring import build
from faregate.errors import InvalidRequest, UpstreamProtocolError, UpstreamRateLimited, UpstreamServerError
from faregate.generation import Deployment
from faregate.providers import TRANSPORTS
from faregate.translate import Translator

CONFIG = """\
server: {auth: none}
providers:
  an: {type: anthropic, base_url: "http://127.0.0.1:9", credentials: [{id: a, key: "${K}"}]}
  oa: {type: openai, base_url: "http://127.0.0.1:9/v1", credentials: [{id: a, key: "${K}"}]}
models:
  strict: [{provider: an, model: claude-sonnet-4-5}]
  lax: [{provider: an, model: claude-sonnet-4-5, drop_params: true}]
  gpt: [{provider: oa, model: gpt-4o-mini}]
"""
OPENAI_BODY = {"model": "strict", "messages": [{"role": "user", "content": "hi"}], "seed": 3, "stream": True}


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Deployment]:
    path: Path = tmp_path_factory.mktemp("translate") / "faregate.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    generation, _ = build(path, env={"K": "sk-test"})
    return {name: route.deployments[0] for name, route in generation.models.items()}


def sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def test_the_request_is_decoded_once_and_drop_params_decides(deps: dict[str, Deployment]) -> None:
    translator = Translator("openai_chat", dict(OPENAI_BODY))
    with pytest.raises(InvalidRequest) as refused:
        translator.prepare("anthropic", deps["strict"])
    assert refused.value.param == "seed" and "an/claude-sonnet-4-5" in refused.value.message and "drop_params" in refused.value.message
    decoded = translator.request
    payload, dropped = translator.prepare("anthropic", deps["lax"])
    assert translator.request is decoded  # not decoded again for the next attempt
    assert dropped == ("seed",) and "seed" not in payload and payload["model"] == "claude-sonnet-4-5" and payload["stream"] is True


def test_an_unreadable_client_body_is_a_400_in_the_clients_terms(deps: dict[str, Deployment]) -> None:
    translator = Translator("anthropic", {"model": "gpt", "max_tokens": 5, "messages": "not a list"})
    with pytest.raises(InvalidRequest) as refused:
        translator.prepare("openai_chat", deps["gpt"])
    assert refused.value.param is not None and "messages" in refused.value.param


def test_a_whole_reply_is_translated_with_its_usage() -> None:
    translator = Translator("openai_chat", dict(OPENAI_BODY))
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0, "output_tokens": 2},
    }
    body, usage = translator.reply(TRANSPORTS["anthropic"], orjson.dumps(reply), {}, b"application/json", "claude-sonnet-4-5", "r1")
    out = orjson.loads(body)
    assert out["choices"][0]["message"]["content"] == "Hi!" and out["choices"][0]["finish_reason"] == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (7, 4, 2)


def test_a_reply_that_is_not_json_or_is_an_error_object_fails_the_attempt() -> None:
    translator = Translator("anthropic", {"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    openai_transport = TRANSPORTS["openai"]
    with pytest.raises(UpstreamProtocolError):
        translator.reply(openai_transport, b"<html>", {}, b"text/html", "gpt-4o-mini", "r1")
    error = {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}
    with pytest.raises(UpstreamServerError):
        translator.reply(openai_transport, orjson.dumps(error), {}, b"application/json", "gpt-4o-mini", "r1")


def test_a_stream_is_translated_event_by_event_and_ends_once() -> None:
    translator = Translator("anthropic", {"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": True})
    watch = translator.stream(TRANSPORTS["openai"], "gpt-4o-mini", "r1")
    base = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    out = watch.feed([sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]})])
    out += watch.feed([b": comment\n\n", sse({**base, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]})])
    out += watch.feed([sse({**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})])
    assert not watch.done
    out += watch.feed([b"data: [DONE]\n\n", b"data: [DONE]\n\n"])
    assert watch.done and watch.end == "[DONE]"
    names = [line[7:] for line in out.decode().splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop" and names.count("message_stop") == 1
    assert "[DONE]" not in out.decode()
    assert watch.usage is not None and (watch.usage.prompt_tokens, watch.usage.completion_tokens) == (9, 2)


def test_a_malformed_event_or_an_error_event_in_a_stream_fails_it() -> None:
    translator = Translator("openai_chat", dict(OPENAI_BODY))
    watch = translator.stream(TRANSPORTS["anthropic"], "claude-sonnet-4-5", "r1")
    with pytest.raises(UpstreamProtocolError) as malformed:
        watch.feed([b"event: message_start\ndata: {not json\n\n"])
    assert malformed.value.code == "upstream_malformed_event"
    watch = translator.stream(TRANSPORTS["anthropic"], "claude-sonnet-4-5", "r1")
    with pytest.raises(UpstreamRateLimited):
        watch.feed([sse({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, "error")])


def test_a_dropped_field_name_is_echoed_only_as_token_characters(deps: dict[str, Deployment]) -> None:
    body = {**OPENAI_BODY, "x\r\nset-cookie: a=b": 1}
    del body["seed"]
    with pytest.raises(InvalidRequest) as refused:
        Translator("openai_chat", body).prepare("anthropic", deps["strict"])
    assert "\r" not in refused.value.message and "x??set-cookie??a?b" in refused.value.message
    _, dropped = Translator("openai_chat", body).prepare("anthropic", deps["lax"])
    assert dropped == ("x??set-cookie??a?b",)


def test_good_events_read_together_with_a_bad_one_are_not_lost() -> None:
    """One read can hold good events and then a bad one: the watchers hand the good ones to the relay
    (``before``) so the client gets them ahead of the error event (they were lost before)."""
    start = sse(
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "c",
                "content": [],
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
        "message_start",
    )
    error = sse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, "error")
    diagonal = TRANSPORTS["anthropic"].stream_events(strip=False)
    with pytest.raises(UpstreamServerError) as cut:
        diagonal.feed([start, error])
    assert cut.value.before == start

    chunk = sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
        }
    )
    openai_watch = TRANSPORTS["openai"].stream_events(strip=True)
    with pytest.raises(UpstreamProtocolError) as malformed:
        openai_watch.feed([chunk, b"data: {not json\n\n"])
    assert malformed.value.before == chunk

    translated = Translator("openai_chat", dict(OPENAI_BODY)).stream(TRANSPORTS["anthropic"], "claude-sonnet-4-5", "r1")
    text = sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
    delta = sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}, "content_block_delta")
    with pytest.raises(UpstreamServerError) as failed:
        translated.feed([start, text, delta, error])
    assert b"Hello" in failed.value.before
