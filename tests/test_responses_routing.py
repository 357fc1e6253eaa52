"""``POST /v1/responses`` across the seams: failover before the first byte between a translated
deployment and the diagonal (each attempt gets the request in its own format: the diagonal the
client's bytes, a translated one its own shape), streamed or not; and how a reply that stops early
ends (``status: incomplete`` with its reason, and a stream whose last event is
``response.incomplete``)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.fakes import anthropic_wire
from tests.fakes.anthropic_upstream import Behaviour as AnBehaviour
from tests.fakes.openai_upstream import Behaviour
from tests.fakes.openai_wire import errors
from tests.fakes_tests.test_openai_responses_fake import sdk_response, sdk_stream
from tests.test_responses_api import HELLO, KINDS, MODEL, TEXT, UPSTREAM, World, check_diagonal, fresh, world_for

FAILOVER = {
    "to-diagonal": [("an", "claude-fails"), ("oar", "gpt-4o-mini")],  # translated first, the diagonal when it fails
    "to-translated": [("oar", "gpt-fails"), ("oa", "gpt-4o-mini")],  # the diagonal first, then a Chat deployment
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    models = {MODEL[k]: UPSTREAM[k] for k in KINDS} | FAILOVER
    with world_for(tmp_path_factory.mktemp("responses-routing"), models) as started:
        yield started


@pytest.fixture
def w(world: World) -> World:
    fresh(world)
    world.anthropic.set_rule("claude-fails", anthropic_wire.errors.overloaded())  # the first deployment of each fails
    world.responses.set_rule("gpt-fails", errors.server_error())
    return world


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failed_translated_attempt_then_the_diagonal_gets_the_clients_bytes(w: World, stream: bool) -> None:
    w.answer("responses")
    client = w.client()
    if stream:
        events = list(client.responses.create(model="to-diagonal", input=HELLO, instructions="Be brief.", stream=True))
        assert events[-1].type == "response.completed" and events[-1].response.output_text == TEXT
    else:
        assert client.responses.create(model="to-diagonal", input=HELLO, instructions="Be brief.").output_text == TEXT
    tried = w.anthropic.requests[-1].json
    assert tried["model"] == "claude-fails" and tried["messages"] == [{"role": "user", "content": HELLO}]
    check_diagonal(w, "gpt-4o-mini")  # the client's request, not the Anthropic translation of it


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failed_diagonal_attempt_then_a_translated_deployment_gets_its_own_format(w: World, stream: bool) -> None:
    w.answer("chat")
    client = w.client()
    if stream:
        events = list(client.responses.create(model="to-translated", input=HELLO, instructions="Be brief.", stream=True))
        assert events[-1].type == "response.completed" and events[-1].response.output_text == TEXT
    else:
        assert client.responses.create(model="to-translated", input=HELLO, instructions="Be brief.").output_text == TEXT
    assert w.responses.requests[-1].body == orjson.dumps({**orjson.loads(w.sent[-1]), "model": "gpt-fails"})
    sent = w.chat.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": HELLO}]


@pytest.mark.parametrize(("stop", "reason"), [("max_tokens", "max_output_tokens"), ("refusal", "content_filter")])
def test_an_anthropic_reply_that_stops_early_is_incomplete_with_its_reason(w: World, stop: str, reason: str) -> None:
    w.anthropic.enqueue(AnBehaviour(reply_text="Hello", stop_reason=stop))
    raw = w.client().responses.with_raw_response.create(model=MODEL["anthropic"], input=HELLO)
    reply = sdk_response(orjson.loads(raw.content))
    assert reply.status == "incomplete" and reply.incomplete_details is not None and reply.incomplete_details.reason == reason
    w.anthropic.enqueue(AnBehaviour(reply_text="Hello", stop_reason=stop))
    with w.http() as http, http.stream("POST", "/v1/responses", json={"model": MODEL["anthropic"], "input": HELLO, "stream": True}) as r:
        events = sdk_stream(r.read())
    assert events[-1].type == "response.incomplete" and "response.completed" not in [e.type for e in events]
    assert events[-1].response.incomplete_details.reason == reason and events[-1].response.output_text == "Hello"


def test_a_streamed_incomplete_reply_on_the_diagonal_ends_with_response_incomplete(w: World) -> None:
    w.responses.enqueue(Behaviour(reply_text=" ".join(["word"] * 20)))
    body = {"model": MODEL["responses"], "input": HELLO, "max_output_tokens": 16, "stream": True}
    with w.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        events = sdk_stream(r.read())
    assert events[-1].type == "response.incomplete" and events[-1].response.incomplete_details.reason == "max_output_tokens"
