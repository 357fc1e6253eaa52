"""The Anthropic transport, sans-IO: the request it builds from a real config (URL, headers, body
kept as sent), every error class from Anthropic's error bodies, usage normalised (cache reads,
5-minute and 1-hour writes), and the stream watcher over a recorded stream with every line ending
and every split of the reads; plus the registry the pipeline reads (TRANSPORTS, SUPPORTED)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from faregate import media
from faregate.credentials.keyring import build as build_generation
from faregate.errors import (
    ConfigError,
    CredentialRejected,
    UpstreamError,
    UpstreamModelMissing,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from faregate.generation import Generation
from faregate.providers import SPEAKERS, SUPPORTED, TRANSPORTS, anthropic, endpoint_for, openai
from faregate.providers.base import MAX_TOKENS
from faregate.providers.sse import Splitter
from faregate.types import Usage
from tests.support.sse import reference

KEY = "sk-ant-CANARY-upstream-7d41"
ENV = {"FAREGATE_MASTER_KEY": "sk-fg-master-0123456789", "ANTHROPIC_KEY": KEY}


def generation(tmp: Path, extra: str = "", base_url: str | None = None, model: str = "claude-sonnet-4-5") -> tuple[Generation, list[str]]:
    base = f"\n    base_url: {base_url}" if base_url is not None else ""
    path = tmp / "faregate.yaml"
    path.write_text(
        f"""\
server: {{master_key: "${{FAREGATE_MASTER_KEY}}"}}
providers:
  claude:
    type: anthropic{base}
    credentials: [{{key: "${{ANTHROPIC_KEY}}"}}]{extra}
models:
  sonnet:
    - {{provider: claude, model: {model}}}
"""
    )
    gen, warnings = build_generation(path, env=ENV)
    return gen, [str(w) for w in warnings]


# A Claude Code-like body: system blocks with cache_control, thinking with its signature, tools,
# and fields faregate has never heard of, in an order that must survive.
PAYLOAD: dict[str, Any] = {
    "model": "sonnet",
    "max_tokens": 32000,
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "look at main.py", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxsig=="},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "main.py"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "print(1)"}]},
    ],
    "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "user_abc"},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "stream": True,
}


def test_build_sends_the_body_as_the_client_wrote_it_with_the_upstream_model(tmp: Path) -> None:
    gen, _ = generation(tmp)
    dep = gen.models["sonnet"].deployments[0]
    request = anthropic.build("messages", dep, dep.provider.credentials[0], PAYLOAD)
    assert request.method == "POST"
    assert request.url == "https://api.anthropic.com/v1/messages"  # the default root has no /v1; the transport adds it
    sent = orjson.loads(request.body)
    assert sent == {**PAYLOAD, "model": "claude-sonnet-4-5"}
    assert list(sent) == list(PAYLOAD)  # order kept, model in its place
    assert sent["messages"][1]["content"][0]["signature"] == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxsig=="
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers and "anthropic-beta" not in request.headers
    counted = anthropic.build("count_tokens", dep, dep.provider.credentials[0], {"model": "sonnet", "messages": []})
    assert counted.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert orjson.loads(counted.body)["model"] == "claude-sonnet-4-5"


def test_build_forwards_the_clients_version_and_betas_never_its_key(tmp: Path) -> None:
    gen, _ = generation(tmp, extra="\n    anthropic_version: '2023-01-01'", base_url="http://127.0.0.1:9/anthropic/")
    dep = gen.models["sonnet"].deployments[0]
    cred = dep.provider.credentials[0]
    plain = anthropic.build("messages", dep, cred, {"messages": []})
    assert plain.url == "http://127.0.0.1:9/anthropic/v1/messages"
    assert plain.headers["anthropic-version"] == "2023-01-01"  # the provider's option when the client names none
    client = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        "x-api-key": "sk-fg-the-clients-gateway-key",
        "authorization": "Bearer sk-fg-the-clients-gateway-key",
    }
    request = anthropic.build("messages", dep, cred, {"messages": []}, client)
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == client["anthropic-beta"]
    assert request.headers["x-api-key"] == KEY and "authorization" not in request.headers


def test_configured_betas_come_first_and_the_clients_are_added(tmp: Path) -> None:
    gen, _ = generation(tmp, extra="\n    headers: {anthropic-beta: context-1m-2025-08-07}")
    dep = gen.models["sonnet"].deployments[0]
    request = anthropic.build("messages", dep, dep.provider.credentials[0], {}, {"anthropic-beta": "claude-code-20250219"})
    assert request.headers["anthropic-beta"] == "context-1m-2025-08-07,claude-code-20250219"
    alone = anthropic.build("messages", dep, dep.provider.credentials[0], {})
    assert alone.headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_check_refuses_a_base_url_with_v1_or_without_http_and_a_misplaced_version(tmp: Path) -> None:
    for base, message in (
        ("https://api.anthropic.com/v1", "leave out the /v1: faregate adds /v1/messages itself, as the anthropic SDK does"),
        ("api.anthropic.com", "must be an http:// or https:// URL"),
    ):
        with pytest.raises(ConfigError) as caught:
            generation(tmp, base_url=base)
        assert [str(p) for p in caught.value.problems] == [f"error: providers.claude.base_url: {message}"]
    with pytest.raises(ConfigError) as caught:
        generation(tmp, extra="\n    anthropic_version: latest")
    assert "providers.claude.anthropic_version" in str(caught.value.problems[0])
    path = tmp / "openai.yaml"
    path.write_text(
        'server: {master_key: "${FAREGATE_MASTER_KEY}"}\n'
        "providers: {up: {type: openai, base_url: 'http://127.0.0.1:9/v1', anthropic_version: '2023-06-01'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        build_generation(path, env=ENV)
    assert "error: providers.up.anthropic_version: only valid for providers of type anthropic, not openai" in [
        str(p) for p in caught.value.problems
    ]


def test_check_warns_about_an_unpriced_anthropic_model_only(tmp: Path) -> None:
    _, warnings = generation(tmp)  # claude-sonnet-4-5 is in prices.json
    assert warnings == []
    _, warnings = generation(tmp, model="claude-unreleased-9")
    assert len(warnings) == 1 and "'claude-unreleased-9' is unpriced" in warnings[0]


def body(type_: str, message: str, **details: str) -> bytes:
    error: dict[str, Any] = {"type": type_, "message": message}
    if details:
        error["details"] = details
    return orjson.dumps({"type": "error", "error": error, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


JSON = b"application/json"
ERRORS = [
    # status, body, headers -> class, code, reason
    (400, body("invalid_request_error", "max_tokens: Field required"), {}, UpstreamRejected, None, "400 invalid_request_error"),
    (
        401,
        body("authentication_error", "invalid x-api-key"),
        {},
        CredentialRejected,
        "authentication_error",
        "credential rejected (401 authentication_error)",
    ),
    (402, body("billing_error", "credit balance too low"), {}, UpstreamRateLimited, "insufficient_quota", "402 billing_error"),
    (403, body("permission_error", "no access"), {}, CredentialRejected, "permission_error", "credential rejected (403 permission_error)"),
    (404, body("not_found_error", "model: claude-9"), {}, UpstreamModelMissing, "not_found_error", "404 not_found_error: model: claude-9"),
    (404, body("not_found_error", "Not Found"), {}, UpstreamRejected, None, "404 not_found_error"),  # an unknown URL: passed through
    (413, body("request_too_large", "too large"), {}, UpstreamRejected, None, "413 request_too_large"),
    (429, body("rate_limit_error", "slow down"), {"retry-after": "7"}, UpstreamRateLimited, "rate_limit_error", "429 rate_limit_error"),
    (
        429,
        body("rate_limit_error", "spend limit", error_code="enforced_spend_limit_reached"),
        {},
        UpstreamRateLimited,
        "insufficient_quota",
        "429 enforced_spend_limit_reached",
    ),
    (500, body("api_error", "Internal server error"), {}, UpstreamServerError, "api_error", "500 api_error"),
    (504, body("timeout_error", "timed out"), {}, UpstreamServerError, "timeout_error", "504 timeout_error"),
    (529, body("overloaded_error", "Overloaded"), {}, UpstreamServerError, "overloaded_error", "529 overloaded_error"),
    (502, b"<html>bad gateway</html>", {}, UpstreamServerError, "upstream_error", "502 no error body"),
]


@pytest.mark.parametrize(("status", "raw", "headers", "cls", "code", "reason"), ERRORS, ids=[f"{e[0]}-{e[3].__name__}" for e in ERRORS])
def test_every_error_class(
    status: int, raw: bytes, headers: dict[str, str], cls: type[UpstreamError], code: str | None, reason: str
) -> None:
    err = anthropic.classify_error(status, headers, raw, JSON, 1_000.0)
    assert type(err) is cls
    assert err.reason == reason
    assert err.upstream_status == status
    if cls is not UpstreamRejected:
        assert err.code == code
    if isinstance(err, UpstreamRejected):  # passed through as Anthropic said it
        assert err.body == raw and err.content_type == JSON
    if status == 429 and headers:
        assert isinstance(err, UpstreamRateLimited) and err.retry_after == 7.0


def test_an_error_in_a_200_is_the_error_it_names() -> None:
    raw = body("overloaded_error", "Overloaded")
    err = anthropic.error_in_reply(orjson.loads(raw), {}, raw, JSON, 0.0)
    assert isinstance(err, UpstreamServerError) and err.upstream_status == 529
    assert err.reason == "200 with an error object: overloaded_error"
    raw = body("authentication_error", "bad key")
    assert isinstance(anthropic.error_in_reply(orjson.loads(raw), {}, raw, JSON, 0.0), CredentialRejected)
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert anthropic.error_in_reply(message, {}, b"", JSON, 0.0) is None
    assert anthropic.error_in_reply({"input_tokens": 12}, {}, b"", JSON, 0.0) is None


def test_usage_counts_every_prompt_token_and_splits_cache_writes() -> None:
    plain = {"type": "message", "usage": {"input_tokens": 25, "output_tokens": 13}}
    assert anthropic.usage_of(plain) == Usage(prompt_tokens=25, completion_tokens=13)
    cached = {
        "type": "message",
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 30, "output_tokens": 9},
    }
    assert anthropic.usage_of(cached) == Usage(prompt_tokens=134, completion_tokens=9, cached_tokens=100, cache_write_5m=30)
    split = {
        "input_tokens": 4,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 50,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
        "output_tokens": 2,
        "service_tier": "standard",
    }
    assert anthropic.usage_of({"type": "message", "usage": split}) == Usage(
        prompt_tokens=54, completion_tokens=2, cache_write_5m=20, cache_write_1h=30
    )
    # a total above its breakdown: the rest counts as 5-minute writes, never as free
    more = {**split, "cache_creation_input_tokens": 60}
    assert anthropic.usage_of({"type": "message", "usage": more}) == Usage(
        prompt_tokens=64, completion_tokens=2, cache_write_5m=30, cache_write_1h=30
    )
    assert anthropic.usage_of({"input_tokens": 1234}) == Usage()  # count_tokens: free
    assert anthropic.usage_of({"type": "message", "content": []}) is None
    assert anthropic.usage_of(["not", "a", "reply"]) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1, "input_tokens is negative (-1)"),
        ("12", "input_tokens is not a whole number (str)"),
        (True, "input_tokens is not a whole number (bool)"),
        (1.5, "input_tokens is not a whole number (float)"),
        (MAX_TOKENS + 1, "input_tokens is above 10^9 (1e+09)"),
    ],
)
def test_invalid_counts_make_the_usage_unknown(value: object, problem: str) -> None:
    usage = anthropic.usage_of({"type": "message", "usage": {"input_tokens": value, "output_tokens": 3}})
    assert usage == Usage(anomaly=problem)
    assert anthropic.usage_of({"type": "message", "usage": {"input_tokens": 12.0, "output_tokens": 3}}) == Usage(12, 3)


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# Recorded from the Messages API (anthropic-version 2023-06-01), ids shortened; cache fields as sent.
START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 40,
                "cache_read_input_tokens": 500,
                "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    },
)
BODY = [
    sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    sse("ping", {"type": "ping"}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 15}},
    ),
]
STOP = sse("message_stop", {"type": "message_stop"})
STREAM = b"".join([START, *BODY, STOP])
STREAM_USAGE = Usage(prompt_tokens=552, completion_tokens=15, cached_tokens=500, cache_write_5m=40)


def feed_all(watch: anthropic.StreamEvents, stream: bytes, reads: list[int]) -> bytes:
    """Split ``stream`` at ``reads`` offsets and pass it through the splitter and ``watch``, as the relay does."""
    splitter = Splitter()
    out = b""
    for start, end in zip([0, *reads], [*reads, len(stream)], strict=True):
        out += watch.feed(splitter.feed(stream[start:end]))
    rest = splitter.close()
    assert not rest.strip(b"\r\n")
    return out + rest


ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_the_watcher_passes_every_byte_and_reads_usage_and_the_end_whatever_the_framing(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    for cut in range(0, len(stream) + 1, 7):
        watch = anthropic.stream_events(strip=False)
        out = feed_all(watch, stream, [cut])
        assert reference(out) == reference(stream), cut
        assert watch.done and watch.usage == STREAM_USAGE, cut
    assert watch.end == "message_stop"


def test_a_stream_without_message_stop_is_not_done_and_keeps_what_it_reported() -> None:
    watch = anthropic.StreamEvents()
    out = feed_all(watch, b"".join([START, *BODY[:3]]), [100])
    assert out == b"".join([START, *BODY[:3]])
    assert not watch.done
    assert watch.usage == Usage(prompt_tokens=552, completion_tokens=1, cached_tokens=500, cache_write_5m=40)


def test_the_watcher_reads_other_layouts_of_an_event() -> None:
    """data before event, a data line without its space, an id line, data split over lines."""
    data = orjson.dumps({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 4, "input_tokens": 9}})
    events = [
        b"data: " + orjson.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}) + b"\n\n",
        b": a comment\n\n",
        b"event: message_delta\nid: 7\ndata:" + data + b"\n\n",
        b'event: message_stop\ndata: {"type":\ndata: "message_stop"}\n\n',
    ]
    watch = anthropic.StreamEvents()
    assert watch.feed(events) == b"".join(events)
    assert watch.done and watch.usage == Usage(prompt_tokens=9, completion_tokens=4)  # message_delta's input replaces the start's


@pytest.mark.parametrize(
    "event",
    [b"event: content_block_delta\ndata: {not json\n\n", b"data: [DONE]\n\n", b'event: x\ndata: ["a list"]\n\n'],
    ids=["not-json", "done-marker", "not-an-object"],
)
def test_a_malformed_event_is_refused(event: bytes) -> None:
    watch = anthropic.StreamEvents()
    with pytest.raises(UpstreamProtocolError) as caught:
        watch.feed([START, event])
    assert caught.value.code == "upstream_malformed_event"
    assert caught.value.reason.startswith("event 2 of the stream is not a JSON object")


@pytest.mark.parametrize(
    ("type_", "cls"),
    [("overloaded_error", UpstreamServerError), ("rate_limit_error", UpstreamRateLimited), ("api_error", UpstreamServerError)],
)
def test_an_error_event_is_the_upstream_error_it_carries(type_: str, cls: type[UpstreamError]) -> None:
    error = sse("error", {"type": "error", "error": {"type": type_, "message": "Overloaded"}})
    watch = anthropic.StreamEvents()
    with pytest.raises(cls) as caught:
        watch.feed([START, *BODY[:2], error])
    assert caught.value.reason == f"error event {type_}: Overloaded"
    assert not watch.done


def test_an_invalid_count_in_a_stream_makes_its_usage_unknown() -> None:
    delta = sse("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": -3}})
    watch = anthropic.StreamEvents()
    watch.feed([START, delta, STOP])
    assert watch.usage == Usage(anomaly="output_tokens is negative (-3)")


def test_no_stream_usage_to_ask_for() -> None:
    payload = {"stream": True, "messages": []}
    sent, injected = anthropic.with_stream_usage(payload)
    assert sent is payload and not injected


def test_the_registry_names_each_transport_and_what_it_serves() -> None:
    assert TRANSPORTS["openai"] is openai and TRANSPORTS["anthropic"] is anthropic  # and a line per other provider type
    assert SPEAKERS["openai_chat"] is openai and SPEAKERS["anthropic"] is anthropic  # openai_chat: openai's, not azure's
    assert SUPPORTED["anthropic"] == {"messages", "count_tokens", "chat", "responses"}  # chat, responses: translated into messages
    assert SUPPORTED["openai"] >= {"chat", "completions", "embeddings", "messages", "count_tokens", "responses"}  # count_tokens: estimated
    assert endpoint_for(anthropic, "responses") == "messages" and endpoint_for(openai, "responses") == "chat"  # unless responses: true
    assert SUPPORTED["openai"] >= media.ENDPOINTS and not SUPPORTED["anthropic"] & media.ENDPOINTS  # the diagonal only
    assert SUPPORTED["mock"] & media.ENDPOINTS == {"moderations"}  # no demo images or audio
    assert endpoint_for(anthropic, "chat") == "messages" and endpoint_for(openai, "messages") == "chat"
    assert endpoint_for(anthropic, "messages") == "messages" and endpoint_for(openai, "chat") == "chat"
    assert endpoint_for(anthropic, "embeddings") is None and endpoint_for(openai, "count_tokens") is None
