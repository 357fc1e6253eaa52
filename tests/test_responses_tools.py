"""``POST /v1/responses`` with function tools, for every upstream kind that calls tools (a Chat
Completions and an Anthropic upstream, translated; OpenAI with ``responses: true``, the diagonal):
``tools`` and ``tool_choice`` reach the upstream in its own shape, calls come back as
``function_call`` items, parallel calls keep their own items and arguments (streamed too), and the
results go back as ``function_call_output`` items whose ``call_id`` is the one the client got.
The mock provider never calls a tool, so it has no case here (an explicit empty cell)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.fakes import anthropic_wire
from tests.fakes import openai_responses_wire as rwire
from tests.fakes.anthropic_upstream import Behaviour as AnBehaviour
from tests.fakes.openai_upstream import Behaviour
from tests.fakes_tests.test_openai_responses_fake import sdk_response, sdk_stream
from tests.test_responses_api import KINDS, MODEL, UPSTREAM, World, check_diagonal, fresh, world_for

CALLING = ("chat", "anthropic", "responses")
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}, "strict": False}
TOOLS: Any = [WEATHER, TIME]
QUESTION = "Weather in Paris and the time in CET?"
ARGS = [{"city": "Paris"}, {"tz": "CET"}]
IDS = {"chat": ["call_A1", "call_B2"], "anthropic": ["toolu_01A", "toolu_01B"], "responses": ["call_A1", "call_B2"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world_for(tmp_path_factory.mktemp("responses-tools"), {MODEL[k]: UPSTREAM[k] for k in KINDS}) as started:
        yield started


@pytest.fixture
def w(world: World) -> World:
    return fresh(world)


def call(w: World, kind: str, n: int) -> None:
    """The next reply of ``kind``'s upstream: the first ``n`` of the two calls, no text."""
    names = ["get_weather", "get_time"]
    if kind == "anthropic":
        w.anthropic.enqueue(AnBehaviour(content=[anthropic_wire.tool_use(names[i], ARGS[i], id=IDS[kind][i]) for i in range(n)]))
    else:
        calls = [{"id": IDS[kind][i], "name": names[i], "arguments": orjson.dumps(ARGS[i]).decode()} for i in range(n)]
        w.upstream(kind).enqueue(Behaviour(tool_calls=calls))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", CALLING)
def test_a_forced_tool_call(w: World, kind: str) -> None:
    call(w, kind, 1)
    choice: Any = {"type": "function", "name": "get_weather"}
    raw = w.client().responses.with_raw_response.create(model=MODEL[kind], input=QUESTION, tools=TOOLS, tool_choice=choice)
    reply = sdk_response(orjson.loads(raw.content))
    assert reply.status == "completed" and [i.type for i in reply.output] == ["function_call"]
    (item,) = reply.output
    assert (item.call_id, item.name, orjson.loads(item.arguments)) == (IDS[kind][0], "get_weather", ARGS[0])  # type: ignore[union-attr]
    sent = w.last(kind)
    if kind == "chat":
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert sent["tools"][0] == {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER["parameters"], "strict": True},
        }
        assert sent["tools"][1]["function"]["name"] == "get_time"
    elif kind == "anthropic":
        assert sent["tool_choice"]["type"] == "tool" and sent["tool_choice"]["name"] == "get_weather"
        assert [(t["name"], t["input_schema"]) for t in sent["tools"]] == [
            ("get_weather", WEATHER["parameters"]),
            ("get_time", TIME["parameters"]),
        ]
        assert sent["tools"][0]["description"] == "Weather now"
    else:
        check_diagonal(w)


@pytest.mark.parametrize("kind", CALLING)
@pytest.mark.parametrize(("choice", "chat", "anthropic"), [("required", "required", {"type": "any"}), ("none", "none", {"type": "none"})])
def test_tool_choice_words(w: World, kind: str, choice: str, chat: str, anthropic: dict[str, str]) -> None:
    if choice == "required":
        call(w, kind, 1)
    else:
        w.answer(kind)
    w.client().responses.create(model=MODEL[kind], input=QUESTION, tools=TOOLS, tool_choice=choice)  # type: ignore[arg-type]
    sent = w.last(kind)
    if kind == "chat":
        assert sent["tool_choice"] == chat
    elif kind == "anthropic":
        assert {k: v for k, v in sent["tool_choice"].items() if k == "type"} == anthropic
    else:
        check_diagonal(w)


@pytest.mark.parametrize("kind", CALLING)
def test_parallel_calls_and_their_results_round_trip_by_call_id(w: World, kind: str) -> None:
    client = w.client()
    call(w, kind, 2)
    reply = client.responses.create(model=MODEL[kind], input=QUESTION, tools=TOOLS, parallel_tool_calls=True)
    calls = rwire.calls_of([i.model_dump() for i in reply.output])
    assert calls == [(IDS[kind][0], "get_weather", ARGS[0]), (IDS[kind][1], "get_time", ARGS[1])]
    assert len({i.id for i in reply.output}) == 2  # each call its own item
    w.answer(kind, text="Sunny, 14:00.")
    follow: Any = [
        {"role": "user", "content": QUESTION},
        *[i.model_dump(exclude_none=True) for i in reply.output],
        {"type": "function_call_output", "call_id": IDS[kind][0], "output": "sunny"},
        {"type": "function_call_output", "call_id": IDS[kind][1], "output": "14:00"},
    ]
    answer = client.responses.create(model=MODEL[kind], input=follow, tools=TOOLS)
    assert answer.output_text == "Sunny, 14:00."
    sent = w.last(kind)
    if kind == "chat":
        messages = sent["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
        used = [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in messages[1]["tool_calls"]]
        assert used == calls
        assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] in (
            [(IDS[kind][0], "sunny"), (IDS[kind][1], "14:00")],
            [(IDS[kind][0], [{"type": "text", "text": "sunny"}]), (IDS[kind][1], [{"type": "text", "text": "14:00"}])],
        )
    elif kind == "anthropic":
        turns = sent["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]  # the two results in one user turn
        assert [(b["id"], b["name"], b["input"]) for b in turns[1]["content"] if b["type"] == "tool_use"] == calls
        assert [(b["type"], b["tool_use_id"]) for b in turns[2]["content"]] == [
            ("tool_result", IDS[kind][0]),
            ("tool_result", IDS[kind][1]),
        ]
    else:
        check_diagonal(w)  # and the fake, as OpenAI, refuses an output whose call_id no call of the input has


@pytest.mark.parametrize("kind", CALLING)
def test_streamed_parallel_calls_keep_their_own_items(w: World, kind: str) -> None:
    call(w, kind, 2)
    body = {"model": MODEL[kind], "input": QUESTION, "tools": TOOLS, "stream": True}
    with w.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200
        events = sdk_stream(r.read())
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["function_call", "function_call"]
    assert sorted({e.output_index for e in added}) == [0, 1] and len({e.item.id for e in added}) == 2
    for e in added:
        deltas = "".join(d.delta for d in events if d.type == "response.function_call_arguments.delta" and d.item_id == e.item.id)
        (done,) = [d for d in events if d.type == "response.function_call_arguments.done" and d.item_id == e.item.id]
        assert orjson.loads(deltas) == orjson.loads(done.arguments) == ARGS[e.output_index]
        assert done.output_index == e.output_index
    finished = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.call_id, i.name) for i in finished] == [(IDS[kind][0], "get_weather"), (IDS[kind][1], "get_time")]
    final = events[-1].response
    assert rwire.calls_of([i.model_dump() for i in final.output]) == [
        (IDS[kind][0], "get_weather", ARGS[0]),
        (IDS[kind][1], "get_time", ARGS[1]),
    ]
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("kind", CALLING)
def test_the_stream_helper_collects_the_calls(w: World, kind: str) -> None:
    call(w, kind, 2)
    with w.client().responses.stream(model=MODEL[kind], input=QUESTION, tools=TOOLS) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert [orjson.loads(e.arguments) for e in done] == ARGS
    assert rwire.calls_of([i.model_dump() for i in final.output]) == [
        (IDS[kind][0], "get_weather", ARGS[0]),
        (IDS[kind][1], "get_time", ARGS[1]),
    ]


@pytest.mark.parametrize("kind", ["anthropic", "responses"])
def test_an_agent_loop_replaying_reasoning_and_calls_keeps_what_the_upstream_needs(w: World, kind: str) -> None:
    """What openai-agents and Codex do: the whole output (a reasoning item, then the call) goes back
    as input with the call's result. Anthropic, with thinking on, needs the thinking block back
    before the tool_use, with its signature as it sent it."""
    client = w.client()
    thought = anthropic_wire.thinking("Look the weather up.")
    if kind == "anthropic":
        w.anthropic.enqueue(AnBehaviour(content=[thought, anthropic_wire.tool_use("get_weather", ARGS[0], id=IDS[kind][0])]))
    else:
        call(w, kind, 1)
    settings: Any = {"tools": TOOLS, "reasoning": {"effort": "low"}, "max_output_tokens": 4000}
    reply = client.responses.create(model=MODEL[kind], input=QUESTION, **settings)
    assert [i.type for i in reply.output] == ["reasoning", "function_call"]
    w.answer(kind, text="Sunny.")
    follow: Any = [
        {"role": "user", "content": QUESTION},
        *[i.model_dump(exclude_none=True) for i in reply.output],
        {"type": "function_call_output", "call_id": IDS[kind][0], "output": "sunny"},
    ]
    assert client.responses.create(model=MODEL[kind], input=follow, **settings).output_text == "Sunny."
    if kind == "anthropic":
        turns = w.last(kind)["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        assert [b["type"] for b in turns[1]["content"]] == ["thinking", "tool_use"], turns[1]
        assert turns[1]["content"][0]["signature"] == thought["signature"]  # Anthropic checks it is the one it signed
        assert turns[1]["content"][0]["thinking"] == thought["thinking"]
    else:
        check_diagonal(w)


def test_text_then_two_calls_keep_their_order_and_output_indexes(w: World) -> None:
    content = [anthropic_wire.text("Checking both.")]
    content += [anthropic_wire.tool_use(n, ARGS[i], id=IDS["anthropic"][i]) for i, n in enumerate(["get_weather", "get_time"])]
    w.anthropic.enqueue(AnBehaviour(content=content))
    reply = w.client().responses.create(model=MODEL["anthropic"], input=QUESTION, tools=TOOLS)
    assert [i.type for i in reply.output] == ["message", "function_call", "function_call"] and reply.output_text == "Checking both."
    w.anthropic.enqueue(AnBehaviour(content=content, chunks=2))
    with (
        w.http() as http,
        http.stream("POST", "/v1/responses", json={"model": MODEL["anthropic"], "input": QUESTION, "tools": TOOLS, "stream": True}) as r,
    ):
        events = sdk_stream(r.read())
    added = [(e.output_index, e.item.type) for e in events if e.type == "response.output_item.added"]
    assert added == [(0, "message"), (1, "function_call"), (2, "function_call")]
    assert all(e.output_index == 0 for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert [i.type for i in final.output] == [i.type for i in reply.output] and final.output_text == "Checking both."
    assert rwire.calls_of([i.model_dump() for i in final.output]) == rwire.calls_of([i.model_dump() for i in reply.output])


@pytest.mark.parametrize("kind", CALLING)
def test_a_call_output_given_as_content_parts(w: World, kind: str) -> None:
    w.answer(kind, text="Sunny.")
    follow: Any = [
        {"role": "user", "content": QUESTION},
        {"type": "function_call", "call_id": IDS[kind][0], "name": "get_weather", "arguments": orjson.dumps(ARGS[0]).decode()},
        {"type": "function_call_output", "call_id": IDS[kind][0], "output": [{"type": "input_text", "text": "sunny, 21 C"}]},
    ]
    assert w.client().responses.create(model=MODEL[kind], input=follow, tools=TOOLS).output_text == "Sunny."
    sent = w.last(kind)
    if kind == "chat":
        result = sent["messages"][-1]
        assert result["role"] == "tool" and result["tool_call_id"] == IDS[kind][0]
        assert result["content"] in ("sunny, 21 C", [{"type": "text", "text": "sunny, 21 C"}])
    elif kind == "anthropic":
        (block,) = sent["messages"][-1]["content"]
        assert block["type"] == "tool_result" and block["tool_use_id"] == IDS[kind][0]
        assert block["content"] in ("sunny, 21 C", [{"type": "text", "text": "sunny, 21 C"}])
    else:
        check_diagonal(w)
