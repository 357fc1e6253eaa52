"""``POST /v1/responses`` end to end, the same cases for every upstream kind: the official openai
SDK (``client.responses.create`` / ``.stream``, and raw HTTP to see the bytes) -> a real gateway
process -> the mock provider (local), a fake OpenAI Chat Completions upstream (translated), a fake
Anthropic upstream (translated) and a fake OpenAI with ``responses: true`` (the diagonal: it gets
the client's bytes as sent). Every reply and every streamed event is checked against the SDK's own
types (tests/fakes_tests/test_openai_responses_fake.py). Tool calls: tests/test_responses_tools.py;
errors, cut streams and heartbeats: tests/test_responses_errors.py; real clients' request shapes,
images and the SDK's parse helper: tests/test_responses_clients.py; failover across the diagonal and
replies that stop early: tests/test_responses_routing.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest

from tests.fakes import anthropic_wire
from tests.fakes import openai_responses_wire as rwire
from tests.fakes.anthropic_upstream import Behaviour as AnBehaviour
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Recorded as AnRecorded
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, Recorded
from tests.fakes_tests.test_openai_responses_fake import sdk_response, sdk_stream
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

KINDS = ("mock", "chat", "anthropic", "responses")
TRANSLATED = ("chat", "anthropic")
UPSTREAM = {
    "mock": ("local", "mock-small"),
    "chat": ("oa", "gpt-4o-mini"),
    "anthropic": ("an", "claude-sonnet-4-5"),
    "responses": ("oar", "gpt-4o-mini"),
}
MODEL = {
    "mock": "r-mock",
    "chat": "r-chat",
    "anthropic": "r-claude",
    "responses": "gpt-4o-mini",
}  # the diagonal's own name: bytes unchanged
ANTHROPIC_KEY = "sk-ant-CANARY-responses-5d4c3b2a19f8e7d6"
TEXT = "Hello there, friend."
MOCK_TEXT = "This is the faregate mock provider answering: Say hello"
# The same usage told by each upstream: 100 prompt tokens of which 40 cached, 20 output of which 5 reasoning
USAGE: dict[str, Any] = {
    "chat": {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 5},
    },
    "anthropic": anthropic_wire.usage(60, 20, cache_read=40),  # Anthropic counts cache reads apart; no reasoning count
    "responses": rwire.usage(100, 20, cached=40, reasoning=5),
}
REASONING = {"chat": 5, "anthropic": 0, "responses": 5}
COST = {  # USD, from the shipped prices (per million): gpt-4o-mini 0.15 / cached 0.075 / 0.6, claude-sonnet-4-5 3 / 0.3 / 15
    "chat": (60 * 0.15 + 40 * 0.075 + 20 * 0.6) / 1e6,
    "anthropic": (60 * 3 + 40 * 0.3 + 20 * 15) / 1e6,
    "responses": (60 * 0.15 + 40 * 0.075 + 20 * 0.6) / 1e6,
}
MOCK_PRICE = (1.0, 2.0)  # mock-small, per million input / output tokens (config below)
PROVIDERS = """
  local: {{type: mock, chunk_delay: 0, stream_chunks: 4}}
  oa:
    type: openai
    base_url: {chat}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 10
  oar:
    type: openai
    responses: true
    base_url: {responses}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10"""
HELLO = "Say hello"


Models = dict[str, Any]  # model name -> (provider, upstream model), or a list of them in priority order


def config(chat: str, anthropic: str, responses: str, models: Models, providers: str = "", server: str = "") -> str:
    """A gateway config: the four providers (+ ``providers``), the deployments of each model name."""
    lines = ""
    for name, deployments in models.items():
        listed = deployments if isinstance(deployments, list) else [deployments]
        lines += f"\n  {name}:" + "".join(f"\n    - {{provider: {p}, model: {m}, priority: {i}}}" for i, (p, m) in enumerate(listed))
    return (
        "server:\n  master_key: ${FAREGATE_MASTER_KEY}"
        + server
        + "\nproviders:"
        + PROVIDERS.format(chat=chat, anthropic=anthropic, responses=responses)
        + providers
        + "\nmodels:"
        + lines
        + "\nprices:\n  mock-small: {input: 1.0, output: 2.0}\nrouting:\n  retries: 1\n  cooldown: {failures: 1000, seconds: 1}\n"
    )


@dataclass
class World:
    gateway: GatewayProcess
    chat: FakeOpenAI
    anthropic: FakeAnthropic
    responses: FakeOpenAI
    sent: list[bytes] = field(default_factory=list)  # the bodies the SDK clients wrote, in order

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """The official SDK pointed at the gateway; every body it sends is kept in ``sent``."""

        def keep(request: httpx2.Request) -> None:
            self.sent.append(request.read())

        http = httpx2.Client(event_hooks={"request": [keep]}, timeout=30)
        return openai.OpenAI(
            base_url=self.gateway.url + "/v1", api_key=kwargs.pop("api_key", MASTER_KEY), max_retries=0, http_client=http, **kwargs
        )

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30)

    def upstream(self, kind: str) -> Any:
        """The fake behind ``kind`` (a FakeOpenAI, or the FakeAnthropic)."""
        return {"chat": self.chat, "anthropic": self.anthropic, "responses": self.responses}[kind]

    def nothing_sent(self) -> bool:
        return not (self.chat.requests or self.anthropic.requests or self.responses.requests)

    def answer(self, kind: str, *, text: str = TEXT, usage: bool = True, **extra: Any) -> None:
        """The next reply of ``kind``'s upstream: ``text`` (and ``USAGE[kind]``), or ``extra``."""
        use = USAGE[kind] if usage and kind in USAGE else None
        if kind == "anthropic":
            self.anthropic.enqueue(AnBehaviour(reply_text=text, usage=use, **extra))
        elif kind in ("chat", "responses"):
            self.upstream(kind).enqueue(Behaviour(reply_text=text, usage=use, **extra))  # type: ignore[arg-type]

    def last(self, kind: str) -> Any:
        """The JSON the upstream of ``kind`` last received."""
        return self.upstream(kind).requests[-1].json

    def last_record(self, kind: str) -> Recorded | AnRecorded:
        return self.upstream(kind).requests[-1]

    def spend(self, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The spend row of one request, once the writer has flushed it (a bounded wait on a condition)."""
        deadline = time.monotonic() + timeout
        with self.http() as http:
            while True:
                rows = http.get("/admin/spend/logs", params={"request_id": request_id}).json()["data"]
                if rows:
                    return dict(rows[0])
                assert time.monotonic() < deadline, f"no spend row for {request_id}"
                time.sleep(0.1)


@contextmanager
def world_for(tmp: Path, models: Models, providers: str = "", server: str = "") -> Iterator[World]:
    with FakeOpenAI() as chat, FakeAnthropic() as anthropic, FakeOpenAI() as responses:
        more = providers.format(chat=chat.url, anthropic=anthropic.url, responses=responses.url)
        text = config(chat.url, anthropic.url, responses.url, models, more, server)
        env = {**UPSTREAM_ENV, "ANTHROPIC_KEY": ANTHROPIC_KEY}
        with GatewayProcess(tmp, text, env=env).start() as gateway:
            yield World(gateway, chat, anthropic, responses)


def fresh(world: World) -> World:
    for upstream in (world.chat, world.anthropic, world.responses):
        upstream.clear()
    world.sent.clear()
    return world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    models = {MODEL[k]: UPSTREAM[k] for k in KINDS} | {"r-diagonal-alias": ("oar", "gpt-4o-mini")}
    with world_for(tmp_path_factory.mktemp("responses"), models) as started:
        yield started


@pytest.fixture
def w(world: World) -> World:
    return fresh(world)


def expected_text(kind: str) -> str:
    return MOCK_TEXT if kind == "mock" else TEXT


def check_usage(kind: str, usage: Any) -> None:
    """The client's usage: what the upstream told, in the Responses sense (cached inside input)."""
    assert usage is not None
    if kind == "mock":
        assert usage.input_tokens > 0 and usage.output_tokens == len(MOCK_TEXT.split())
        return
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (100, 20, 120)
    assert usage.input_tokens_details.cached_tokens == 40
    assert usage.output_tokens_details.reasoning_tokens == REASONING[kind]


def check_cost(kind: str, cost: float, usage: Any) -> None:
    if kind == "mock":
        assert cost == pytest.approx((usage.input_tokens * MOCK_PRICE[0] + usage.output_tokens * MOCK_PRICE[1]) / 1e6)
    else:
        assert cost == pytest.approx(COST[kind])


def check_diagonal(w: World, model: str = "gpt-4o-mini") -> None:
    """The Responses upstream got the client's last body: as sent byte for byte (only the model
    name is the deployment's; with the same name, nothing at all changes)."""
    rec = w.responses.requests[-1]
    assert rec.path == "/v1/responses"
    client_body = w.sent[-1]
    if orjson.loads(client_body)["model"] == model:
        assert rec.body == client_body
    else:
        assert rec.body == orjson.dumps({**orjson.loads(client_body), "model": model})
    assert rec.api_key == UPSTREAM_ENV["UPSTREAM_KEY"]


def sent_messages(w: World, kind: str) -> Any:
    """The conversation the translated upstream got: Chat messages, or Anthropic (system, messages)."""
    got = w.last(kind)
    return got["messages"] if kind == "chat" else (got.get("system"), got["messages"])


# -- plain, streamed, usage and cost ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_plain_text_with_instructions_usage_and_cost(w: World, kind: str) -> None:
    w.answer(kind)
    raw = w.client().responses.with_raw_response.create(model=MODEL[kind], input=HELLO, instructions="Be brief.")
    assert raw.headers["content-type"].startswith("application/json")
    reply = sdk_response(orjson.loads(raw.content))  # the SDK's Response type, with no field it does not know
    assert reply.output_text == expected_text(kind) and reply.status == "completed" and reply.object == "response"
    assert reply.model and reply.id.startswith("resp") and [i.type for i in reply.output] == ["message"]
    check_usage(kind, reply.usage)
    check_cost(kind, float(raw.headers["x-faregate-cost-usd"]), reply.usage)
    if kind == "chat":
        assert sent_messages(w, kind) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": HELLO}]
        assert w.last_record(kind).path == "/v1/chat/completions"
    elif kind == "anthropic":
        system, messages = sent_messages(w, kind)
        assert system in ("Be brief.", [{"type": "text", "text": "Be brief."}]) and messages == [{"role": "user", "content": HELLO}]
    elif kind == "responses":
        check_diagonal(w)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_has_the_documented_event_order_usage_and_cost(w: World, kind: str) -> None:
    w.answer(kind)
    body = {"model": MODEL[kind], "input": HELLO, "stream": True}
    with w.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
        request_id = r.headers["x-faregate-request-id"]
    events = sdk_stream(raw)  # each event the SDK's type, named in `event:`, numbered 0, 1, 2...
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert set(types[4:-4]) == {"response.output_text.delta"} and b"[DONE]" not in raw
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    item_id = events[2].item.id
    assert all(e.item_id == item_id and e.output_index == 0 and e.content_index == 0 for e in deltas)
    assert "".join(e.delta for e in deltas) == events[-4].text == expected_text(kind)
    final = events[-1].response
    assert final.status == "completed" and final.output_text == expected_text(kind) and final.output[0].id == item_id
    check_usage(kind, final.usage)
    row = w.spend(request_id)
    check_cost(kind, row["cost_usd"], final.usage)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (final.usage.input_tokens, final.usage.output_tokens)
    if kind == "responses":
        rec = w.responses.requests[-1]
        assert rec.body == orjson.dumps(body)  # as sent
        rebuilt = rwire.reply(rec.json, Behaviour(usage=USAGE[kind]), TEXT, int(rec.time))
        assert raw == b"".join(rwire.stream_events(rec.json, rebuilt, Behaviour()))  # relayed as read, byte for byte
    elif kind in TRANSLATED:
        assert w.last(kind)["stream"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_the_sdk_stream_helper_gives_the_final_response(w: World, kind: str) -> None:
    w.answer(kind)
    with w.client().responses.stream(model=MODEL[kind], input=HELLO, instructions="Be brief.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == expected_text(kind)
    check_usage(kind, final.usage)
    if kind == "responses":
        check_diagonal(w)


def test_the_diagonal_replaces_only_the_model_name(w: World) -> None:
    w.answer("responses")
    w.client().responses.create(model="r-diagonal-alias", input=HELLO, metadata={"z": "1", "a": "2"}, temperature=0.25, store=False)
    check_diagonal(w, "gpt-4o-mini")  # every other key, value and their order as the client wrote them
    assert list(w.last("responses")) == list(orjson.loads(w.sent[-1]))


# -- input forms and request settings --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_input_as_items_keeps_the_conversation(w: World, kind: str) -> None:
    items: Any = [
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
        {"role": "user", "content": HELLO},
    ]
    w.answer(kind)
    reply = w.client().responses.create(model=MODEL[kind], input=items, store=False)
    assert reply.output_text == expected_text(kind)
    if kind == "chat":
        messages = w.last(kind)["messages"]
        assert [m["role"] for m in messages] in (["developer", "user", "assistant", "user"], ["system", "user", "assistant", "user"])
        assert [text_of(m["content"]) for m in messages] == ["Answer in English.", "Hi", "Hello!", HELLO]
    elif kind == "anthropic":
        system, messages = sent_messages(w, kind)
        assert text_of(system) == "Answer in English."
        assert [(m["role"], text_of(m["content"])) for m in messages] == [("user", "Hi"), ("assistant", "Hello!"), ("user", HELLO)]
    elif kind == "responses":
        check_diagonal(w)


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}


@pytest.mark.parametrize("kind", KINDS)
def test_text_format_json_schema(w: World, kind: str) -> None:
    w.answer(kind, text='{"city": "Paris"}')
    fmt: Any = {"type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True}
    reply = w.client().responses.create(model=MODEL[kind], input=HELLO, text={"format": fmt})
    if kind != "mock":
        assert orjson.loads(reply.output_text) == {"city": "Paris"}
    if kind == "chat":
        assert w.last(kind)["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
        }
    elif kind == "anthropic":
        assert w.last(kind)["output_config"]["format"] == {"type": "json_schema", "schema": SCHEMA}
    elif kind == "responses":
        check_diagonal(w)


@pytest.mark.parametrize("kind", KINDS)
def test_max_output_tokens(w: World, kind: str) -> None:
    w.answer(kind)
    reply = w.client().responses.create(model=MODEL[kind], input=HELLO, max_output_tokens=321)
    assert reply.output_text
    if kind == "chat":
        sent = w.last(kind)
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 321
    elif kind == "anthropic":
        assert w.last(kind)["max_tokens"] == 321
    elif kind == "responses":
        check_diagonal(w)


def test_an_upstream_cut_at_max_tokens_is_an_incomplete_response(w: World) -> None:
    w.anthropic.enqueue(AnBehaviour(reply_text="Hello", stop_reason="max_tokens"))
    reply = w.client().responses.create(model=MODEL["anthropic"], input=HELLO, max_output_tokens=321)
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens" and reply.output_text == "Hello"
    w.responses.enqueue(Behaviour(reply_text=" ".join(["word"] * 20)))
    diagonal = w.client().responses.create(model=MODEL["responses"], input=HELLO, max_output_tokens=16)
    assert diagonal.status == "incomplete" and diagonal.output_text == " ".join(["word"] * 16)


@pytest.mark.parametrize("kind", KINDS)
def test_reasoning_effort(w: World, kind: str) -> None:
    if kind == "anthropic":
        w.anthropic.enqueue(AnBehaviour(content=[anthropic_wire.thinking("Greet them."), anthropic_wire.text(TEXT)]))
    else:
        w.answer(kind)
    reply = w.client().responses.create(model=MODEL[kind], input=HELLO, reasoning={"effort": "low"}, max_output_tokens=3000)
    assert reply.output_text == expected_text(kind)
    if kind == "chat":
        assert w.last(kind)["reasoning_effort"] == "low"
    elif kind == "anthropic":
        sent = w.last(kind)
        assert sent["thinking"]["type"] == "enabled" and 0 < sent["thinking"]["budget_tokens"] < sent["max_tokens"]
        assert [i.type for i in reply.output] == ["reasoning", "message"]  # the thinking block comes back as a reasoning item
    elif kind == "responses":
        check_diagonal(w)
        assert [i.type for i in reply.output] == ["reasoning", "message"]


# -- refusals --------------------------------------------------------------------------------------


def refused(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    error = caught.value
    assert isinstance(error.body, dict) and set(error.body) >= {"message", "type", "param", "code"}, error.body  # OpenAI's shape
    return error


@pytest.mark.parametrize("kind", ["mock", *TRANSLATED])
def test_an_unsupported_tool_type_is_refused_by_name(w: World, kind: str) -> None:
    error = refused(lambda: w.client().responses.create(model=MODEL[kind], input=HELLO, tools=[{"type": "web_search"}]))
    assert error.status_code == 400 and "web_search" in error.message
    assert isinstance(error.body, dict) and error.body["param"] == "tools[0].type"
    assert w.chat.requests == [] and w.anthropic.requests == []  # refused before anything went upstream


def test_the_diagonal_passes_openais_own_tools(w: World) -> None:
    w.answer("responses")
    w.client().responses.create(model=MODEL["responses"], input=HELLO, tools=[{"type": "web_search"}])
    check_diagonal(w)


@pytest.mark.parametrize("kind", KINDS)
def test_previous_response_id_is_a_clear_400(w: World, kind: str) -> None:
    error = refused(lambda: w.client().responses.create(model=MODEL[kind], input=HELLO, previous_response_id="resp_abc123"))
    assert error.status_code == 400 and "previous_response_id" in error.message
    assert isinstance(error.body, dict) and error.body["param"] == "previous_response_id"
    assert w.nothing_sent()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_key_is_a_401_in_openais_shape(w: World, kind: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        w.client(api_key="sk-fg-not-a-key").responses.create(model=MODEL[kind], input=HELLO)
    assert caught.value.status_code == 401 and isinstance(caught.value.body, dict) and caught.value.body["type"]
    assert w.nothing_sent()


def test_bad_input_is_a_400_naming_the_field(w: World) -> None:
    with w.http() as http:
        for body, param in [({"model": "r-chat", "input": 7}, "input"), ({"input": HELLO}, "model")]:
            r = http.post("/v1/responses", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
        r = http.post("/v1/responses", content=b'{"model": "r-chat", "input": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert w.chat.requests == []


@pytest.mark.parametrize("kind", ["anthropic", "responses"])
def test_a_streamed_reasoning_item_comes_before_the_message(w: World, kind: str) -> None:
    if kind == "anthropic":
        w.anthropic.enqueue(AnBehaviour(content=[anthropic_wire.thinking("Greet them."), anthropic_wire.text(TEXT)]))
    else:
        w.answer(kind)
    body = {"model": MODEL[kind], "input": HELLO, "reasoning": {"effort": "low"}, "max_output_tokens": 3000, "stream": True}
    with w.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200
        events = sdk_stream(r.read())
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type) for e in added] == [(0, "reasoning"), (1, "message")]
    final = events[-1].response
    assert events[-1].type == "response.completed" and [i.type for i in final.output] == ["reasoning", "message"]
    assert final.output_text == TEXT
    assert all(e.output_index == 1 for e in events if e.type == "response.output_text.delta")
