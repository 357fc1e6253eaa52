"""The fake Azure OpenAI resource speaks the wire format the official openai SDK's AzureOpenAI
client expects: deployment URLs with api-version, api-key, Azure's headers, filter annotations,
streams whose first chunk is the prompt annotation, and Azure's error bodies as the SDK's errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.azure_upstream import FakeAzure, errors, filtered
from tests.fakes.openai_wire import Behaviour

KEY = "azure-CANARY-fake-key-0123456789"
VERSION = "2024-10-21"
HELLO: Any = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAzure]:
    with FakeAzure(deployments={"chat4o": "gpt-4o-2024-08-06", "embed": "text-embedding-3-small"}, keys=frozenset({KEY})) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAzure) -> FakeAzure:
    server.clear()
    return server


@pytest.fixture
def azure(fake: FakeAzure) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(azure_endpoint=fake.url, api_key=KEY, api_version=VERSION, max_retries=0, timeout=5) as sdk:
        yield sdk


def test_a_chat_completion_goes_to_the_deployment_url_with_api_key(fake: FakeAzure, azure: openai.AzureOpenAI) -> None:
    raw = azure.chat.completions.with_raw_response.create(model="chat4o", messages=HELLO)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from the fake upstream." and reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4o-2024-08-06"  # Azure names the model the deployment runs
    extra = reply.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    assert raw.headers["apim-request-id"] and raw.headers["x-ms-region"] == "East US"
    assert raw.headers["x-ms-deployment-name"] == "chat4o" and raw.headers["x-ratelimit-remaining-tokens"]
    [rec] = fake.requests
    assert rec.path == f"/openai/deployments/chat4o/chat/completions?api-version={VERSION}"
    assert rec.headers["api-key"] == KEY and "authorization" not in rec.headers
    assert rec.model == "chat4o"


def test_a_stream_starts_with_the_prompt_annotation_and_reports_usage(fake: FakeAzure, azure: openai.AzureOpenAI) -> None:
    chunks = list(azure.chat.completions.create(model="chat4o", messages=HELLO, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices == [] and (chunks[0].model_extra or {})["prompt_filter_results"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_stream_options_before_2024_09_01_preview_are_refused(fake: FakeAzure) -> None:
    with openai.AzureOpenAI(azure_endpoint=fake.url, api_key=KEY, api_version="2024-06-01", max_retries=0, timeout=5) as old:
        with pytest.raises(openai.BadRequestError, match="stream_options"):
            old.chat.completions.create(model="chat4o", messages=HELLO, stream=True, stream_options={"include_usage": True})
        assert old.chat.completions.create(model="chat4o", messages=HELLO).choices[0].message.content


def test_tool_calls_embeddings_and_the_output_filter(fake: FakeAzure, azure: openai.AzureOpenAI) -> None:
    calls = [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"id": "call_2", "name": "get_time", "arguments": "{}"},
    ]
    fake.enqueue(Behaviour(tool_calls=calls))
    reply = azure.chat.completions.create(model="chat4o", messages=HELLO)
    assert [c.function.name for c in reply.choices[0].message.tool_calls or [] if c.type == "function"] == ["get_weather", "get_time"]
    vectors = azure.embeddings.create(model="embed", input=["a", "b"])
    assert len(vectors.data) == 2 and vectors.model == "text-embedding-3-small"
    fake.enqueue(filtered("violence"))
    cut = azure.chat.completions.create(model="chat4o", messages=HELLO)
    assert cut.choices[0].finish_reason == "content_filter" and cut.choices[0].message.content is None


def test_azure_errors_are_the_sdk_errors(fake: FakeAzure, azure: openai.AzureOpenAI) -> None:
    fake.enqueue(errors.content_filter("violence"))
    with pytest.raises(openai.BadRequestError) as refused:
        azure.chat.completions.create(model="chat4o", messages=HELLO)
    assert refused.value.code == "content_filter"
    body: Any = refused.value.body
    assert body["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    fake.enqueue(errors.rate_limited(6))
    with pytest.raises(openai.RateLimitError, match="Please retry after 6 seconds") as limited:
        azure.chat.completions.create(model="chat4o", messages=HELLO)
    assert limited.value.response.headers["retry-after-ms"] == "6000"
    with pytest.raises(openai.NotFoundError) as missing:
        azure.chat.completions.create(model="chat5", messages=HELLO)
    assert missing.value.code == "DeploymentNotFound"
    bad = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="wrong", api_version=VERSION, max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError, match="invalid subscription key"):
        bad.chat.completions.create(model="chat4o", messages=HELLO)


def test_the_v1_api_takes_the_deployment_in_the_body(fake: FakeAzure) -> None:
    # Azure's v1 API takes the key in api-key (or a Bearer Entra token)
    with openai.OpenAI(base_url=fake.url + "/openai/v1/", api_key=KEY, default_headers={"api-key": KEY}, max_retries=0, timeout=5) as v1:
        reply = v1.chat.completions.create(model="chat4o", messages=HELLO)
    assert reply.model == "gpt-4o-2024-08-06"
    [rec] = fake.requests
    assert rec.path == "/openai/v1/chat/completions" and rec.model == "chat4o"


def test_a_deployment_url_without_api_version_is_not_found(fake: FakeAzure) -> None:
    bare = openai.OpenAI(base_url=fake.url + "/openai/deployments/chat4o", api_key=KEY, default_headers={"api-key": KEY}, max_retries=0)
    with bare, pytest.raises(openai.NotFoundError, match="Resource not found"):
        bare.chat.completions.create(model="chat4o", messages=HELLO)
