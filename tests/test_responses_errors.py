"""``POST /v1/responses`` when the upstream fails, for every upstream kind (mock, Chat Completions and
Anthropic translated, OpenAI with ``responses: true`` on the diagonal): each class of upstream
error (429, 500, an upstream 401) is the openai SDK's own exception with faregate's precise message
in OpenAI's error shape, streamed or not; a stream cut after its first byte ends with a Responses
failure event (``response.failed`` or ``error``), every event whole and of the SDK's types, never a
clean finish; an upstream's own failure event mid-stream reaches the client as one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import anthropic_wire, openai_wire
from tests.fakes import openai_responses_wire as rwire
from tests.fakes_tests.test_openai_responses_fake import sdk_stream
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY
from tests.test_responses_api import HELLO, KINDS, UPSTREAM, World, fresh, world_for

PROVIDER = {  # a provider of each kind, its own per case (a rejected key must not touch another case)
    "mock": "  {name}: {{{{type: mock, chunk_delay: 0, stream_chunks: 4}}}}",
    "chat": '  {name}:\n    type: openai\n    base_url: {{chat}}\n    credentials: [{{{{id: k, key: "${{{{UPSTREAM_KEY}}}}"}}}}]',
    "anthropic": '  {name}:\n    type: anthropic\n    base_url: {{anthropic}}\n    credentials: [{{{{id: k, key: "${{{{ANTHROPIC_KEY}}}}"}}}}]',
    "responses": '  {name}:\n    type: openai\n    responses: true\n    base_url: {{responses}}\n    credentials: [{{{{id: k, key: "${{{{UPSTREAM_KEY}}}}"}}}}]',
}
FAULTS = ("429", "500", "401")
OA, AN = openai_wire.errors, anthropic_wire.errors
FAULT: dict[tuple[str, str], Callable[[], Any]] = {
    ("chat", "429"): lambda: OA.rate_limited(30),
    ("chat", "500"): OA.server_error,
    ("chat", "401"): OA.invalid_api_key,
    ("responses", "429"): lambda: OA.rate_limited(30),
    ("responses", "500"): OA.server_error,
    ("responses", "401"): OA.invalid_api_key,
    ("anthropic", "429"): lambda: AN.rate_limited(30),
    ("anthropic", "500"): AN.api_error,
    ("anthropic", "401"): AN.invalid_api_key,
}
# fault: (SDK exception, status to the client, words faregate's message holds)
EXPECTED: dict[str, tuple[type[openai.APIStatusError], int, tuple[str, ...]]] = {
    "429": (openai.RateLimitError, 429, ("limited by its provider",)),
    "500": (openai.InternalServerError, 503, ("500",)),
    "401": (openai.InternalServerError, 503, ("credential rejected", "401")),
}
CUT_MODEL = {"mock": "mock-stream-cut", "chat": "gpt-cut", "anthropic": "claude-cut", "responses": "gpt-cut"}


def upstream_model(kind: str, fault: str) -> str:
    return f"mock-error-{fault}" if kind == "mock" else f"up-{kind}-{fault}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    providers, models = "", {}
    for kind in KINDS:
        for fault in FAULTS:
            name = f"p-{kind}-{fault}"
            providers += "\n" + PROVIDER[kind].format(name=name)
            models[f"e-{kind}-{fault}"] = (name, upstream_model(kind, fault))
        models[f"cut-{kind}"] = (UPSTREAM[kind][0], CUT_MODEL[kind])
    heartbeat = "\n  stream_heartbeat: 0.2"  # an SSE comment after 0.2 s of upstream silence
    with world_for(tmp_path_factory.mktemp("responses-errors"), models, providers, heartbeat) as started:
        yield started


@pytest.fixture
def w(world: World) -> World:
    return fresh(world)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", KINDS)
def test_an_upstream_error_is_the_sdks_own_exception_with_the_precise_message(w: World, kind: str, fault: str, stream: bool) -> None:
    model, upstream = f"e-{kind}-{fault}", upstream_model(kind, fault)
    if kind != "mock":
        w.upstream(kind).set_rule(upstream, FAULT[kind, fault]())
    exception, status, words = EXPECTED[fault]
    client = w.client()

    def ask() -> None:
        reply = client.responses.create(model=model, input=HELLO, stream=stream)
        if stream:
            list(reply)  # type: ignore[call-overload]

    with pytest.raises(exception) as caught:
        ask()
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict) and set(error.body) >= {"message", "type", "param", "code"}, error.body
    message = error.body["message"]
    assert f"for model '{model}'" in message and upstream in message, message
    for word in words:
        assert word in message, message
    assert UPSTREAM_ENV["UPSTREAM_KEY"] not in message and "CANARY" not in str(error.response.headers)
    assert "CANARY" not in w.gateway.logs()  # neither upstream key, in any log line
    if status == 429:
        assert int(error.response.headers["retry-after"]) >= 1


def read_stream(w: World, model: str) -> bytes:
    body = {"model": model, "input": HELLO, "stream": True}
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=w.gateway.url, headers=auth, timeout=30) as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200, r.read()
        return r.read()  # the gateway ends its response properly: no transport error here


def cut(w: World, kind: str) -> None:
    """The next stream of ``kind``'s upstream (model ``CUT_MODEL[kind]``) is cut after its first events."""
    if kind == "chat":
        w.chat.enqueue(openai_wire.Behaviour(stream_drop_after=3))
    elif kind == "responses":
        w.responses.enqueue(openai_wire.Behaviour(stream_drop_after=5))  # after the first text delta
    elif kind == "anthropic":
        w.anthropic.enqueue(AN.drop_mid_stream("content_block_stop"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_after_the_first_byte_ends_with_a_responses_failure_event(w: World, kind: str) -> None:
    cut(w, kind)
    events = sdk_stream(read_stream(w, f"cut-{kind}"))  # every event whole, the SDK's type, numbered 0, 1, 2...
    types = [e.type for e in events]
    assert types[0] == "response.created" and "response.output_text.delta" in types  # the text before the cut got out
    assert "response.completed" not in types and types[-1] in ("response.failed", "error"), types
    last = events[-1]
    message = last.response.error.message if last.type == "response.failed" else last.message
    assert "interrupted" in message and CUT_MODEL[kind] in message, message
    if last.type == "response.failed":
        assert last.response.status == "failed"
    assert UPSTREAM_ENV["UPSTREAM_KEY"] not in message


@pytest.mark.parametrize("kind", KINDS)
def test_the_sdk_sees_the_failure_event_at_the_end_of_a_cut_stream(w: World, kind: str) -> None:
    cut(w, kind)
    events = list(w.client().responses.create(model=f"cut-{kind}", input=HELLO, stream=True))
    assert events[-1].type in ("response.failed", "error") and all(e.type != "response.completed" for e in events)
    cut(w, kind)
    with w.client().responses.stream(model=f"cut-{kind}", input=HELLO) as stream:  # the helper checks lifecycle ids
        helped = [e.type for e in stream]
    assert helped[-1] in ("response.failed", "error") and "response.completed" not in helped


def test_an_upstream_failure_event_reaches_the_client_as_sent_on_the_diagonal(w: World) -> None:
    w.responses.enqueue(rwire.ResponsesBehaviour(failed_after=6))
    events = sdk_stream(read_stream(w, "cut-responses"))
    assert [e.type for e in events][-1] == "response.failed" and len(events) == 7
    assert events[-1].response.error.code == "server_error"


def test_an_anthropic_error_event_mid_stream_ends_with_a_responses_failure_event(w: World) -> None:
    w.anthropic.enqueue(AN.error_mid_stream("content_block_stop"))
    events = sdk_stream(read_stream(w, "cut-anthropic"))
    last = events[-1]
    assert last.type in ("response.failed", "error") and all(e.type != "response.completed" for e in events)
    message = last.response.error.message if last.type == "response.failed" else last.message
    assert "Overloaded" in message


@pytest.mark.parametrize("kind", ["chat", "anthropic", "responses"])
def test_heartbeats_during_upstream_silence_keep_the_stream_valid(w: World, kind: str) -> None:
    resume = threading.Event()
    if kind == "anthropic":
        w.anthropic.enqueue(anthropic_wire.Behaviour(pause_before_event=3, resume=resume))
    else:
        w.upstream(kind).enqueue(openai_wire.Behaviour(pause_before_event=3, resume=resume))
    body = {"model": f"cut-{kind}", "input": HELLO, "stream": True}
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    raw = b""
    with httpx.Client(base_url=w.gateway.url, headers=auth, timeout=30) as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200
        for piece in r.iter_raw():
            raw += piece
            if b"\n:" in raw or raw.startswith(b":"):  # a comment line: the gateway's heartbeat, during the pause
                resume.set()
    assert resume.is_set(), raw
    events = sdk_stream(raw)  # the SDK's parser skips comments: every event still whole and in order
    assert events[-1].type == "response.completed" and events[-1].response.output_text


def test_an_upstream_400_reaches_the_client_with_its_param_and_code_on_the_diagonal(w: World) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        w.client().responses.create(model="cut-responses", input=HELLO, max_output_tokens=5)  # OpenAI's minimum is 16
    body = caught.value.body
    assert isinstance(body, dict) and (body["param"], body["code"]) == ("max_output_tokens", "integer_below_min_value")
    assert "max_output_tokens" in body["message"] and w.responses.count() == 1  # refused upstream, not retried


@pytest.mark.parametrize("kind", ["chat", "anthropic", "responses"])
def test_a_stream_cut_inside_a_tool_call_never_hands_out_the_half_call_as_done(w: World, kind: str) -> None:
    calls = [{"id": "call_A1", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}]
    if kind == "anthropic":
        use = anthropic_wire.tool_use("get_weather", {"city": "Paris", "unit": "celsius"}, id="toolu_01A")
        w.anthropic.enqueue(anthropic_wire.Behaviour(content=[use], stream_drop_after="content_block_stop"))
    else:  # chat: role, the call's start, its first fragment; responses: created, in_progress, added, first delta
        w.upstream(kind).enqueue(openai_wire.Behaviour(tool_calls=calls, stream_drop_after=3 if kind == "chat" else 4))
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    body = {"model": f"cut-{kind}", "input": HELLO, "tools": [tool], "stream": True}
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=w.gateway.url, headers=auth, timeout=30) as http, http.stream("POST", "/v1/responses", json=body) as r:
        events = sdk_stream(r.read())
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types and types[-1] in ("response.failed", "error"), types
    assert "response.function_call_arguments.done" not in types and "response.output_item.done" not in types, types
    assert "response.completed" not in types


@pytest.mark.parametrize("kind", ["chat", "anthropic"])
def test_an_upstream_400_on_a_translated_deployment_is_a_400_in_openais_shape(w: World, kind: str) -> None:
    if kind == "anthropic":
        w.anthropic.enqueue(AN.bad_request("messages.0.content: roles must alternate"))
    else:
        w.chat.enqueue(OA.bad_request("Invalid 'messages[0].content': string too long.", param="messages[0].content"))
    with pytest.raises(openai.BadRequestError) as caught:
        w.client().responses.create(model=f"cut-{kind}", input=HELLO)
    body = caught.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}, body
    assert ("roles must alternate" if kind == "anthropic" else "string too long") in body["message"]
    assert CUT_MODEL[kind] in body["message"]  # names the deployment that refused
