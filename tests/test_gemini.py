"""The official openai and anthropic SDKs through a real faregate process to a Gemini (AI Studio)
deployment, translated both ways through the neutral model, against the fake Gemini upstream
(real HTTP on loopback, its wire checked against google-genai): plain and streamed replies, usage
with cached and thinking tokens priced the same streamed or not, tool calls and their results
(parallel, with thought signatures carried back), tool schemas converted to Gemini's subset, JSON
schema output, safety blocks, and OpenAI embeddings served by embedContent/batchEmbedContents."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.gemini_upstream import Behaviour, FakeGemini
from tests.fakes.gemini_wire import call, text, thought, usage
from tests.support.procs import MASTER_KEY, GatewayProcess

GEMINI_KEY = "AIza-CANARY-gemini-5e4d3c2b1a"
CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  gm:
    type: gemini
    base_url: {url}
    credentials: [{{id: main, key: "${{GEMINI_KEY}}"}}]
    timeout: 10
models:
  gemini:
    - {{provider: gm, model: gemini-2.5-flash}}
  gemini-cut:
    - {{provider: gm, model: gemini-2.5-flash-cut}}
  embed:
    - {{provider: gm, model: text-embedding-004}}
prices:
  gemini-2.5-flash: {{input: 0.3, output: 2.5, cached_input: 0.075}}
  gemini-2.5-flash-cut: {{input: 0.3, output: 2.5, cached_input: 0.075}}
routing:
  retries: 1
  cooldown: {{failures: 1000, seconds: 1}}
"""
# 1200 prompt tokens of which 1000 cached, 40 visible output tokens and 60 thinking tokens
USAGE = usage(1200, 40, cached=1000, thoughts=60)
COST = (200 * 0.3 + 1000 * 0.075 + (40 + 60) * 2.5) / 1e6
HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]}},
    "required": ["city"],
    "additionalProperties": False,
    "$schema": "http://json-schema.org/draft-07/schema#",
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA, "strict": True}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
SIG_A, SIG_B = base64.b64encode(b"signature-of-call-a/+").decode(), base64.b64encode(b"signature-of-text?>").decode()


class World:
    def __init__(self, gateway: GatewayProcess, fake: FakeGemini) -> None:
        self.gateway, self.fake = gateway, fake

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def cost(self, request_id: str, timeout: float = 10.0) -> float:
        """The cost on the access line of a request (written after its last byte: waited for, with a bound)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.gateway.logs().splitlines():
                if f'"request_id":"{request_id}"' in line and '"logger":"faregate.access"' in line:
                    return float(json.loads(line)["cost_usd"])
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FakeGemini() as fake:
        env = {"GEMINI_KEY": GEMINI_KEY, "FAREGATE_MASTER_KEY": MASTER_KEY}
        with GatewayProcess(tmp_path_factory.mktemp("gemini"), CONFIG.format(url=fake.url), env=env).start() as gateway:
            yield World(gateway, fake)


@pytest.fixture
def w(world: World) -> World:
    world.fake.clear()
    world.fake.keys = frozenset({GEMINI_KEY})
    return world


def test_plain_reply_usage_with_cached_and_thinking_tokens_priced(w: World) -> None:
    w.fake.enqueue(Behaviour(reply_text="Hello there.", usage=USAGE))
    raw = w.openai().chat.completions.with_raw_response.create(
        model="gemini", messages=[{"role": "system", "content": "Be brief."}, *HELLO], temperature=0.5, max_tokens=100
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello there." and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1200, 100)
    assert reply.usage.prompt_tokens_details and reply.usage.prompt_tokens_details.cached_tokens == 1000
    assert reply.usage.completion_tokens_details and reply.usage.completion_tokens_details.reasoning_tokens == 60
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx(COST)
    sent = w.fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent" and sent.api_key == GEMINI_KEY
    assert "authorization" not in sent.headers and "x-goog-api-key" in sent.headers
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5},
    }


def test_streamed_reply_costs_the_same_as_the_whole_one(w: World) -> None:
    w.fake.enqueue(Behaviour(reply_text="Hello there, streamed.", usage=USAGE))
    with w.openai().chat.completions.with_streaming_response.create(
        model="gemini", messages=HELLO, stream=True, stream_options={"include_usage": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there, streamed."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (1200, 100)
    assert w.fake.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "stream" not in w.fake.requests[-1].json
    assert w.cost(request_id) == pytest.approx(COST)


def test_parallel_tool_calls_carry_their_thought_signature_back(w: World) -> None:
    client = w.openai()
    w.fake.enqueue(Behaviour(parts=[call("get_weather", {"city": "Paris"}, signature=SIG_A), call("get_time", {"tz": "CET"})]))
    first = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Weather and time?"}], tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    calls = choice.message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    declared = w.fake.requests[-1].json["tools"][0]["functionDeclarations"]
    assert declared[0]["parameters"] == {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "nullable": True, "enum": ["c", "f"], "format": "enum"}},
        "required": ["city"],
    }
    w.fake.enqueue(Behaviour(reply_text="Sunny, 14:00."))
    history: list[Any] = [
        {"role": "user", "content": "Weather and time?"},
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "14:00"},
    ]
    second = client.chat.completions.create(model="gemini", messages=history, tools=TOOLS)
    assert second.choices[0].message.content == "Sunny, 14:00."
    contents = w.fake.requests[-1].json["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG_A},
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "14:00"}}},
        ],
    }


def test_streamed_tool_call(w: World) -> None:
    w.fake.enqueue(Behaviour(parts=[text("Let me check."), call("get_weather", {"city": "Oslo"}, id="fc-1")]))
    chunks = list(w.openai().chat.completions.create(model="gemini", messages=HELLO, tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id == "fc-1" and deltas[0].function and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"city": "Oslo"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_json_schema_output_is_a_converted_response_schema(w: World) -> None:
    schema = {
        "type": "object",
        "properties": {"people": {"type": "array", "items": {"$ref": "#/$defs/person"}}},
        "required": ["people"],
        "additionalProperties": False,
        "$defs": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
            }
        },
    }
    w.fake.enqueue(Behaviour(reply_text='{"people": []}'))
    reply = w.openai().chat.completions.create(
        model="gemini",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "people", "schema": schema, "strict": True}},
    )
    assert reply.choices[0].message.content == '{"people": []}'
    config = w.fake.requests[-1].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    person = {"type": "OBJECT", "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER", "nullable": True}}}
    assert config["responseSchema"] == {
        "type": "OBJECT",
        "properties": {"people": {"type": "ARRAY", "items": person}},
        "required": ["people"],
    }


def test_safety_block_is_a_content_filter_finish(w: World) -> None:
    rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    w.fake.enqueue(
        Behaviour(parts=[text("")], finish_reason="SAFETY", safety_ratings=[rating]), Behaviour(prompt_block="PROHIBITED_CONTENT")
    )
    blocked = w.openai().chat.completions.create(model="gemini", messages=HELLO)
    assert blocked.choices[0].finish_reason == "content_filter" and not blocked.choices[0].message.content
    assert blocked.choices[0].message.refusal == "SAFETY: HARM_CATEGORY_DANGEROUS_CONTENT"  # the category, said
    refused = w.anthropic().messages.create(model="gemini", max_tokens=50, messages=HELLO)
    assert refused.stop_reason == "refusal" and refused.content == []
    w.fake.enqueue(Behaviour(prompt_block="SAFETY", safety_ratings=[{**rating, "category": "HARM_CATEGORY_HARASSMENT"}]))
    chunks = list(w.openai().chat.completions.create(model="gemini", messages=HELLO, stream=True))
    ends = [(c.choices[0].finish_reason, c.choices[0].delta.refusal) for c in chunks if c.choices and c.choices[0].finish_reason]
    assert ends == [("content_filter", "prompt SAFETY: HARM_CATEGORY_HARASSMENT")]


def test_anthropic_client_tool_use_and_thinking_signature_round_trip(w: World) -> None:
    client = w.anthropic()
    tools: list[Any] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    parts = [thought("Think about weather."), text("Checking.", signature=SIG_B), call("get_weather", {"city": "Rome"}, signature=SIG_A)]
    w.fake.enqueue(Behaviour(parts=parts, usage=USAGE))
    first = client.messages.create(
        model="gemini", max_tokens=2000, messages=HELLO, tools=tools, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["thinking", "text", "thinking", "tool_use"]
    assert first.usage.input_tokens == 200 and first.usage.cache_read_input_tokens == 1000 and first.usage.output_tokens == 100
    assert w.fake.requests[-1].json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    use = first.content[3]
    assert use.type == "tool_use" and use.input == {"city": "Rome"}
    w.fake.enqueue(Behaviour(reply_text="Warm."))
    history: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "warm", "is_error": False}]},
    ]
    raw = client.messages.with_raw_response.create(model="gemini", max_tokens=2000, messages=history, tools=tools)
    assert raw.parse().content[0].text == "Warm."  # type: ignore[union-attr]
    model_turn = w.fake.requests[-1].json["contents"][1]["parts"]
    assert model_turn == [
        {"text": "Checking.", "thoughtSignature": SIG_B},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}, "thoughtSignature": SIG_A},
    ]  # the unsigned thought text is not sent back (and said so)
    assert raw.headers.get("x-faregate-dropped") == "thinking"


def test_anthropic_client_stream(w: World) -> None:
    w.fake.enqueue(Behaviour(reply_text="Streaming to Claude clients.", usage=USAGE))
    with w.anthropic().messages.stream(
        model="gemini", max_tokens=100, messages=HELLO, metadata={"user_id": "user_1"}
    ) as stream:  # as Claude Code sends
        final = stream.get_final_message()
    assert final.content[0].text == "Streaming to Claude clients."  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 100


def test_embeddings_single_batched_and_base64(w: World) -> None:
    client = w.openai()
    one = client.embeddings.create(model="embed", input="hello", dimensions=4)  # the SDK asks for base64 (float32) by default
    assert len(one.data) == 1 and one.data[0].embedding == pytest.approx([round(b / 255, 4) for b in b"hell"])
    assert w.fake.requests[-1].path == "/v1beta/models/text-embedding-004:embedContent"
    assert w.fake.requests[-1].json == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}
    many = client.embeddings.create(model="embed", input=["a", "b"])
    assert [d.index for d in many.data] == [0, 1] and len(many.data[1].embedding) == 8
    assert w.fake.requests[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    raw = client.embeddings.with_raw_response.create(model="embed", input="hi", dimensions=2, encoding_format="base64")
    packed = json.loads(raw.text)["data"][0]["embedding"]
    assert list(struct.unpack("<2f", base64.b64decode(packed))) == pytest.approx([round(b / 255, 4) for b in b"hi"])
    floats = client.embeddings.with_raw_response.create(model="embed", input="hi", dimensions=2, encoding_format="float")
    assert json.loads(floats.text)["data"][0]["embedding"] == [round(b / 255, 4) for b in b"hi"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed", input=[[1, 2, 3]])
    assert caught.value.body and "token ids" in str(caught.value.body)


def test_mid_stream_cut_ends_with_an_error_in_the_clients_format(w: World) -> None:
    w.fake.enqueue(Behaviour(reply_text="one two three four five six", chunks=3, stream_drop_after=2))
    with pytest.raises(openai.APIError) as caught:
        list(w.openai().chat.completions.create(model="gemini-cut", messages=HELLO, stream=True))
    assert "interrupted" in str(caught.value).lower() or "ended" in str(caught.value).lower()


def test_probe_pages_through_the_model_listing_and_names_a_misnamed_model(w: World) -> None:
    from tests.fakes.gemini_wire import MODELS

    w.fake.page_size = 2
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx.post(f"{w.gateway.url}/admin/deployments/gm%2Ftext-embedding-004/probe", json={}, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["probe"]["result"] == "ok" and r.json()["probe"]["method"] == "models_list", r.text
    pages = ["/v1beta/models?pageSize=1000", "/v1beta/models?pageSize=1000&pageToken=2", "/v1beta/models?pageSize=1000&pageToken=4"]
    assert [req.path for req in w.fake.requests] == pages  # five models, two per page
    assert all(req.api_key == GEMINI_KEY for req in w.fake.requests)
    w.fake.known_models = frozenset(MODELS)
    r = httpx.post(f"{w.gateway.url}/admin/deployments/gm%2Fgemini-2.5-flash-cut/probe", json={}, headers=headers, timeout=30)
    found = r.json()["probe"]
    assert found["result"] == "model_not_found" and found["closest"][0] == "gemini-2.5-flash", found
    assert GEMINI_KEY not in r.text


def test_responses_client_function_call_round_trip_keeps_the_signature(w: World) -> None:
    client = w.openai()
    w.fake.enqueue(Behaviour(parts=[call("get_weather", {"city": "Lima"}, signature=SIG_A)], usage=USAGE))
    tools: list[Any] = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}]
    first = client.responses.create(model="gemini", input="Weather in Lima?", tools=tools, store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Lima"}
    assert first.usage is not None and first.usage.input_tokens == 1200 and first.usage.output_tokens == 100
    w.fake.enqueue(Behaviour(reply_text="Mild."))
    history: list[Any] = [
        {"role": "user", "content": "Weather in Lima?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "mild"},
    ]
    second = client.responses.create(model="gemini", input=history, tools=tools, store=False)
    assert second.output_text == "Mild."
    contents = w.fake.requests[-1].json["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Lima"}}, "thoughtSignature": SIG_A}]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"output": "mild"}}}]
