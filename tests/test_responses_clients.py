"""``POST /v1/responses`` with the request shapes real clients send (raw HTTP, so the shape is the
client's, field for field): an openai-agents-style request full of defaults that ask for nothing is
answered by every upstream kind as it is; a Codex-style request (``reasoning.summary``, ``include``
of encrypted reasoning, ``prompt_cache_key``) goes to the diagonal as sent, and to a translated
deployment it is either refused with a 400 naming a field it holds, or, with ``drop_params``,
answered with what was dropped disclosed in ``x-faregate-dropped``. Nothing is dropped silently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pydantic
import pytest

from tests.fakes_tests.test_openai_responses_fake import sdk_response, sdk_stream
from tests.test_responses_api import KINDS, MODEL, TRANSLATED, UPSTREAM, World, check_diagonal, expected_text, fresh, world_for

LAX = {kind: f"{MODEL[kind]}-lax" for kind in TRANSLATED}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": False,
}
AGENTS: dict[str, Any] = {  # what openai-agents' Runner sends for an Agent with one tool, fields it leaves at their defaults included
    "input": [{"content": "Say hello", "role": "user"}],
    "include": [],
    "instructions": "You are a helpful agent.",
    "tools": [WEATHER],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "text": {"format": {"type": "text"}},
    "truncation": "disabled",
    "store": False,
    "stream": False,
}
CODEX: dict[str, Any] = {  # the shape of a Codex CLI turn
    "instructions": "You are Codex, a coding agent.",
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
    "tools": [WEATHER],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0196b7c2-3d4e-7f80-9a1b-2c3d4e5f6a7b",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    models = {MODEL[k]: UPSTREAM[k] for k in KINDS}
    models |= {LAX[k]: (UPSTREAM[k][0], UPSTREAM[k][1] + ", drop_params: true") for k in TRANSLATED}
    with world_for(tmp_path_factory.mktemp("responses-clients"), models) as started:
        yield started


@pytest.fixture
def w(world: World) -> World:
    return fresh(world)


@pytest.mark.parametrize("kind", KINDS)
def test_an_agents_style_request_full_of_defaults_is_answered_as_it_is(w: World, kind: str) -> None:
    w.answer(kind)
    with w.http() as http:
        r = http.post("/v1/responses", json={"model": MODEL[kind], **AGENTS})
    assert r.status_code == 200, r.text
    assert sdk_response(r.json()).output_text == expected_text(kind)
    assert "x-faregate-dropped" not in r.headers  # defaults that ask for nothing are nothing to drop
    if kind == "responses":
        assert w.responses.requests[-1].body == orjson.dumps({"model": MODEL[kind], **AGENTS})


def test_a_codex_style_request_goes_to_the_diagonal_as_sent(w: World) -> None:
    w.answer("responses")
    body = {"model": MODEL["responses"], **CODEX}
    with w.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200
        events = sdk_stream(r.read())
    assert events[-1].type == "response.completed"
    assert w.responses.requests[-1].body == orjson.dumps(body)


@pytest.mark.parametrize("kind", TRANSLATED)
def test_a_codex_style_request_to_a_translated_deployment_is_refused_by_name_or_dropped_and_disclosed(w: World, kind: str) -> None:
    with w.http() as http:
        strict = http.post("/v1/responses", json={"model": MODEL[kind], **CODEX})
        assert w.nothing_sent() or strict.status_code == 200
        w.answer(kind)
        with http.stream("POST", "/v1/responses", json={"model": LAX[kind], **CODEX}) as r:
            assert r.status_code == 200, r.read()
            events = sdk_stream(r.read())
            dropped = r.headers.get("x-faregate-dropped", "")
    assert events[-1].type == "response.completed" and events[-1].response.output_text == expected_text(kind)
    named = [name for name in dropped.split(",") if name]
    fields = {*CODEX, *(f"reasoning.{k}" for k in CODEX["reasoning"])}
    assert set(named) <= fields, named  # what was dropped, by the names the client used
    if strict.status_code == 200:  # carried in full: nothing to drop
        assert named == []
        return
    assert strict.status_code == 400, strict.text
    error = strict.json()["error"]
    assert error["param"] in named and error["param"] in error["message"] and "drop_params" in error["message"]


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("kind", KINDS)
def test_images_temperature_and_the_bare_path(w: World, kind: str) -> None:
    """A client configured with a bare base URL posts /responses; an input_image by data URL and by
    URL, and temperature, reach the upstream in its own shape."""
    content = [
        {"type": "input_text", "text": "What are these?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
    ]
    body = {"model": MODEL[kind], "input": [{"role": "user", "content": content}], "temperature": 0.3}
    w.answer(kind)
    with w.http() as http:
        r = http.post("/responses", json=body)
    assert r.status_code == 200, r.text
    sdk_response(r.json())
    if kind == "chat":
        sent = w.last(kind)
        parts = sent["messages"][0]["content"]
        assert parts[0] == {"type": "text", "text": "What are these?"} and sent["temperature"] == 0.3
        assert [p["image_url"]["url"] for p in parts[1:]] == [f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg"]
    elif kind == "anthropic":
        sent = w.last(kind)
        blocks = sent["messages"][0]["content"]
        assert blocks[0] == {"type": "text", "text": "What are these?"} and sent["temperature"] == 0.3
        assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
        assert blocks[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    elif kind == "responses":
        assert w.responses.requests[-1].body == orjson.dumps(body)


class Place(pydantic.BaseModel):
    city: str


@pytest.mark.parametrize("kind", ["chat", "anthropic", "responses"])
def test_the_sdk_parse_helper_gets_its_structured_output(w: World, kind: str) -> None:
    w.answer(kind, text='{"city": "Paris"}')
    parsed = w.client().responses.parse(model=MODEL[kind], input="Where is the Louvre?", text_format=Place)
    assert parsed.output_parsed == Place(city="Paris")
    if kind == "chat":
        assert w.last(kind)["response_format"]["json_schema"]["name"] == "Place"
    elif kind == "anthropic":
        assert w.last(kind)["output_config"]["format"]["schema"]["properties"] == {"city": {"title": "City", "type": "string"}}
    else:
        check_diagonal(w)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("extra", "param"),
    [({"conversation": "conv_abc123"}, "conversation"), ({"background": True}, "background")],
    ids=["conversation", "background"],
)
def test_what_needs_a_stored_response_is_a_400_naming_the_field(w: World, kind: str, extra: dict[str, Any], param: str) -> None:
    with w.http() as http:
        r = http.post("/v1/responses", json={"model": MODEL[kind], "input": "Say hello", **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"] and error["code"] == "unsupported_parameter"
    assert w.nothing_sent()


@pytest.mark.parametrize("kind", ["mock", *TRANSLATED])
def test_an_item_reference_is_a_400_naming_it_when_translated(w: World, kind: str) -> None:
    items = [{"role": "user", "content": "Say hello"}, {"type": "item_reference", "id": "msg_abc123"}]
    with w.http() as http:
        r = http.post("/v1/responses", json={"model": MODEL[kind], "input": items})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "input[1].type" and "item_reference" in error["message"]
    assert w.nothing_sent()


@pytest.mark.parametrize("kind", TRANSLATED)
def test_top_p_user_and_metadata_reach_a_translated_upstream_or_are_named(w: World, kind: str) -> None:
    w.answer(kind)
    body = {"model": MODEL[kind], "input": "Say hello", "top_p": 0.9, "user": "user-42", "metadata": {"team": "a"}}
    with w.http() as http:
        r = http.post("/v1/responses", json=body)
        if kind == "anthropic":  # Anthropic's metadata holds only user_id: free-form metadata cannot be carried
            assert r.status_code == 400 and r.json()["error"]["param"] == "metadata", r.text
            r = http.post("/v1/responses", json={k: v for k, v in body.items() if k != "metadata"})
    assert r.status_code == 200, r.text
    assert "x-faregate-dropped" not in r.headers
    sent = w.last(kind)
    assert sent["top_p"] == 0.9
    if kind == "chat":
        assert sent["user"] == "user-42" and sent["metadata"] == {"team": "a"}
    else:
        assert sent["metadata"] == {"user_id": "user-42"}
