"""The fake Gemini upstream checked against the official google-genai SDK: what the SDK sends is
what the fake accepts, and what the fake answers the SDK reads into its own types (text, thought
parts and signatures, function calls, usage, finish reasons, prompt blocks, streams, embeddings,
model listings over pages, Google's errors)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.gemini_upstream import Behaviour, FakeGemini, errors
from tests.fakes.gemini_wire import call, check_generate, text, thought, usage

KEY = "AIza-fake-key-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGemini) -> FakeGemini:
    server.clear()
    return server


_CLIENTS: dict[tuple[str, str], genai.Client] = {}  # kept alive: a Client closes its connections when collected


def client(fake: FakeGemini, key: str = KEY) -> genai.Client:
    found = _CLIENTS.get((fake.url, key))
    if found is None:
        options = types.HttpOptions(base_url=fake.url, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1))
        found = _CLIENTS[(fake.url, key)] = genai.Client(api_key=key, http_options=options)
    return found


def test_plain_reply_with_usage_and_the_request_the_sdk_sent(fake: FakeGemini) -> None:
    fake.enqueue(Behaviour(reply_text="Hi there.", usage=usage(120, 3, cached=100, thoughts=7)))
    reply = client(fake).models.generate_content(
        model="gemini-2.5-flash",
        contents="Say hi",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=50),
    )
    assert reply.text == "Hi there."
    assert reply.candidates and reply.candidates[0].finish_reason == types.FinishReason.STOP
    meta = reply.usage_metadata
    assert meta and (meta.prompt_token_count, meta.candidates_token_count, meta.cached_content_token_count, meta.thoughts_token_count) == (
        120,
        3,
        100,
        7,
    )
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent" and sent.api_key == KEY
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "Say hi"}]}]
    assert sent.json["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert sent.json["generationConfig"] == {"maxOutputTokens": 50}


def test_stream_is_sse_chunks_ending_with_the_finish_reason(fake: FakeGemini) -> None:
    fake.enqueue(Behaviour(reply_text="one two three four five six", chunks=3))
    chunks = list(client(fake).models.generate_content_stream(model="gemini-2.5-flash", contents="count"))
    assert "".join(c.text or "" for c in chunks) == "one two three four five six"
    assert len(chunks) == 3
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates] == [None, None, types.FinishReason.STOP]
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count == 6
    assert fake.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def test_function_calls_thoughts_and_signatures_read_by_the_sdk(fake: FakeGemini) -> None:
    parts = [
        thought("Weather first.", signature="dGhvdWdodA=="),
        call("get_weather", {"city": "Paris"}, signature="c2lnbmF0dXJl"),
        call("get_time", {"tz": "CET"}),
    ]
    fake.enqueue(Behaviour(parts=parts))
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}),
            )
        ]
    )
    config = types.GenerateContentConfig(tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    reply = client(fake).models.generate_content(model="gemini-2.5-flash", contents="weather?", config=config)
    assert reply.function_calls and [(c.name, c.args) for c in reply.function_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    got = reply.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert got is not None and got[0].thought is True and got[0].thought_signature == b"thought"
    assert got[1].thought_signature == b"signature"
    declared = fake.requests[-1].json["tools"][0]["functionDeclarations"][0]
    assert declared["parameters"]["properties"]["city"]["type"] == "STRING"


def test_function_response_from_the_sdk_passes_the_checks(fake: FakeGemini) -> None:
    history = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}), thought_signature=b"sig")],
        ),
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"output": "sunny"})]),
    ]
    assert client(fake).models.generate_content(model="gemini-2.5-flash", contents=history).text
    sent = fake.requests[-1].json["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] == "c2ln"  # bytes travel as base64
    assert sent[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"output": "sunny"}}


def test_safety_stop_and_prompt_block(fake: FakeGemini) -> None:
    rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    fake.enqueue(Behaviour(parts=[text("")], finish_reason="SAFETY", safety_ratings=[rating]), Behaviour(prompt_block="PROHIBITED_CONTENT"))
    blocked = client(fake).models.generate_content(model="gemini-2.5-flash", contents="bad")
    candidate = blocked.candidates[0]  # type: ignore[index]
    assert candidate.finish_reason == types.FinishReason.SAFETY
    assert candidate.safety_ratings and candidate.safety_ratings[0].category == types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT
    refused = client(fake).models.generate_content(model="gemini-2.5-flash", contents="worse")
    assert (
        not refused.candidates
        and refused.prompt_feedback
        and refused.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    )


@pytest.mark.parametrize(
    ("behaviour", "code", "status"),
    [
        (errors.bad_request("bad"), 400, "INVALID_ARGUMENT"),
        (errors.permission_denied(), 403, "PERMISSION_DENIED"),
        (errors.model_not_found("gemini-nope"), 404, "NOT_FOUND"),
        (errors.rate_limited(), 429, "RESOURCE_EXHAUSTED"),
        (errors.internal(), 500, "INTERNAL"),
        (errors.unavailable(), 503, "UNAVAILABLE"),
    ],
)
def test_google_errors_as_the_sdk_reads_them(fake: FakeGemini, behaviour: Behaviour, code: int, status: str) -> None:
    fake.enqueue(behaviour)
    with pytest.raises(genai_errors.APIError) as caught:
        client(fake).models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (caught.value.code, caught.value.status) == (code, status)


def test_bad_key_is_api_key_invalid_and_schema_keywords_are_refused(fake: FakeGemini) -> None:
    fake.keys = frozenset({KEY})
    with pytest.raises(genai_errors.ClientError) as caught:
        client(fake, "AIza-wrong").models.generate_content(model="gemini-2.5-flash", contents="x")
    assert caught.value.code == 400 and "API_KEY_INVALID" in str(caught.value.details)
    # the schema keywords the API refuses (what faregate's conversion must strip)
    schema = {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "additionalProperties": False}
    problem = check_generate({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"responseSchema": schema}})
    assert problem is not None and 'Unknown name "additionalProperties"' in problem


def test_embeddings_single_and_batched(fake: FakeGemini) -> None:
    one = client(fake).models.embed_content(
        model="text-embedding-004", contents="hello", config=types.EmbedContentConfig(output_dimensionality=4)
    )
    assert one.embeddings and len(one.embeddings[0].values or []) == 4
    many = client(fake).models.embed_content(model="text-embedding-004", contents=["a", "b", "c"])
    assert many.embeddings and len(many.embeddings) == 3
    assert {r.action for r in fake.requests} <= {"embedContent", "batchEmbedContents"}


def test_model_listing_pages(fake: FakeGemini) -> None:
    fake.page_size = 2
    names = [m.name for m in client(fake).models.list(config={"page_size": 2})]
    assert names == [
        f"models/{m}" for m in ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "text-embedding-004", "gemini-embedding-001")
    ]
    assert any("pageToken=2" in r.path for r in fake.requests)
