"""Azure OpenAI out and Azure-style requests in, through a real gateway process and the fake Azure
resource (tests/fakes/azure_upstream.py), with the official SDKs as clients: ``AzureOpenAI`` pointed
at faregate, ``OpenAI`` (Chat) and ``anthropic`` (translated through the openai_chat codec). The
conformance cases: plain, streamed, tool call and result, parallel tool calls, JSON schema, usage,
each Azure error class, bad key, mid-stream cut; and the probe of an Azure deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest

from tests.fakes.azure_upstream import FakeAzure, errors, filtered
from tests.fakes.openai_wire import Behaviour
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

AZURE_KEY = "azure-CANARY-upstream-5f1e2d3c4b5a69788796"
WRONG_KEY = "azure-CANARY-revoked-00112233445566778899"
VERSION = "2024-10-21"
ENV = {"AZURE_KEY": AZURE_KEY, "WRONG_KEY": WRONG_KEY}
DEPLOYMENTS = {name: "gpt-4o-2024-08-06" for name in ("chat4o", "guard", "spare", "lim", "lim-msg", "cut", "down", "vetted")}
DEPLOYMENTS["embed"] = "text-embedding-3-small"
HELLO: Any = [{"role": "user", "content": "Hello"}]
CALLS = [
    {"id": "call_w", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
    {"id": "call_t", "name": "get_time", "arguments": '{"zone": "CET"}'},
]
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}},
]


def config(url: str) -> str:
    def provider(name: str, version: str, key: str = "AZURE_KEY") -> str:
        return f'  {name}:\n    type: azure\n    base_url: {url}\n    api_version: "{version}"\n    credentials: [{{id: main, key: "${{{key}}}"}}]\n'

    models = {
        "gpt-4o": "az/chat4o",
        "gpt-4o-v1": "az1/chat4o",
        "embed": "az/embed",
        "typo": "az/chat4oo",
        "badkey": "azbad/chat4o",
        "guarded": "az/guard",
        "limited": "az/lim",
        "limited-msg": "az/lim-msg",
        "cut": "az/cut",
        "down": "az/down",
        "spare": "az/spare",
        "vetted": "az/vetted",
        "team/gpt": "az/chat4o",
    }
    lines = "".join(f"  {name}:\n    - {{provider: {d.split('/')[0]}, model: {d.split('/')[1]}}}\n" for name, d in models.items())
    return (
        "server:\n  master_key: ${FAREGATE_MASTER_KEY}\n"
        "providers:\n"
        + provider("az", VERSION)
        + provider("az1", "v1")
        + provider("azbad", VERSION, "WRONG_KEY")
        + "models:\n"
        + lines
        + "fallbacks:\n  guarded: [spare]\n  down: [spare]\n"
        + "routing:\n  retries: 1\n  cooldown: {failures: 1000, seconds: 1}\n"
        + "prices:\n  chat4o: {input: 2.5, output: 10.0}\n  guard: {input: 2.5, output: 10.0}\n  spare: {input: 2.5, output: 10.0}\n  down: {input: 2.5, output: 10.0}\n"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeAzure]]:
    tmp: Path = tmp_path_factory.mktemp("azure")
    with FakeAzure(DEPLOYMENTS, keys=frozenset({AZURE_KEY})) as fake, GatewayProcess(tmp, config(fake.url), env=ENV) as gw:
        yield gw, fake


@pytest.fixture
def gw(world: tuple[GatewayProcess, FakeAzure]) -> GatewayProcess:
    return world[0]


@pytest.fixture
def fake(world: tuple[GatewayProcess, FakeAzure]) -> Iterator[FakeAzure]:
    world[1].clear()
    yield world[1]
    world[1].clear()


def azure(gw: GatewayProcess, key: str = MASTER_KEY) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=gw.url, api_key=key, api_version=VERSION, max_retries=0, timeout=30)


def chat(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def claude(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def no_secret(gw: GatewayProcess, *texts: str) -> None:
    for text in (*texts, gw.logs()):
        assert AZURE_KEY not in text and WRONG_KEY not in text and MASTER_KEY not in text


def test_an_azure_client_reaches_an_azure_deployment_with_the_deployment_url_and_api_key(gw: GatewayProcess, fake: FakeAzure) -> None:
    raw = azure(gw).chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from the fake upstream." and reply.model == "gpt-4o-2024-08-06"
    [rec] = fake.requests
    assert rec.path == f"/openai/deployments/chat4o/chat/completions?api-version={VERSION}"
    assert rec.headers["api-key"] == AZURE_KEY and "authorization" not in rec.headers  # the upstream key, never the client's
    assert rec.json["model"] == "chat4o"
    assert raw.headers["x-faregate-provider"] == "az" and raw.headers["x-faregate-model"] == "chat4o"
    assert len(raw.headers["x-faregate-upstream-request-id"]) == 36  # Azure's apim-request-id
    usage = reply.usage
    assert usage is not None
    assert float(raw.headers["x-faregate-cost-usd"]) == pytest.approx((usage.prompt_tokens * 2.5 + usage.completion_tokens * 10) / 1e6)
    no_secret(gw, raw.http_response.text)
    # a public name with a slash (the SDK sends it as %2F); the URL's name wins over the body's, as on Azure
    assert azure(gw).chat.completions.with_raw_response.create(model="team/gpt", messages=HELLO).headers["x-faregate-model"] == "chat4o"
    url = f"{gw.url}/openai/deployments/gpt-4o/chat/completions?api-version=2099-01-01"
    other = httpx.post(url, json={"model": "no-such-model", "messages": HELLO}, headers={"api-key": MASTER_KEY}, timeout=30)
    assert other.status_code == 200 and other.headers["x-faregate-model"] == "chat4o"


def test_streams_are_priced_and_the_usage_chunk_is_only_for_who_asked(gw: GatewayProcess, fake: FakeAzure) -> None:
    chunks = list(azure(gw).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream."
    assert all(c.usage is None for c in chunks)  # faregate asked for the usage, and removed it again
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    asked = list(azure(gw).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}))
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 5


def test_parallel_tool_calls_their_results_and_a_json_schema_go_as_sent(gw: GatewayProcess, fake: FakeAzure) -> None:
    client = azure(gw)
    fake.enqueue(Behaviour(tool_calls=CALLS))
    reply = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=TOOLS)
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls if c.type == "function"] == [("call_w", "get_weather"), ("call_t", "get_time")]
    fake.enqueue(Behaviour(tool_calls=CALLS))
    streamed = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=TOOLS, stream=True))
    names = [t.function.name for c in streamed if c.choices for t in c.choices[0].delta.tool_calls or [] if t.function and t.function.name]
    assert names == ["get_weather", "get_time"]
    results: Any = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in CALLS
            ],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_t", "content": "12:00"},
    ]
    schema: Any = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {"type": "object", "properties": {}}}}
    client.chat.completions.create(model="gpt-4o", messages=results, tools=TOOLS, response_format=schema)
    sent = fake.requests[-1].json
    assert sent["messages"] == results and sent["response_format"] == schema and sent["tools"] == TOOLS


def test_embeddings_completions_and_the_v1_api(gw: GatewayProcess, fake: FakeAzure) -> None:
    client = azure(gw)
    assert len(client.embeddings.create(model="embed", input=["a", "b"]).data) == 2
    assert fake.requests[-1].path == f"/openai/deployments/embed/embeddings?api-version={VERSION}"
    assert client.completions.create(model="gpt-4o", prompt="Say").choices[0].text == "Hello from the fake upstream."
    assert fake.requests[-1].path == f"/openai/deployments/chat4o/completions?api-version={VERSION}"
    reply = chat(gw).chat.completions.create(model="gpt-4o-v1", messages=HELLO)  # api_version: v1
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    rec = fake.requests[-1]
    assert rec.path == "/openai/v1/chat/completions" and rec.json["model"] == "chat4o" and rec.headers["api-key"] == AZURE_KEY
    # faregate's own /openai/v1 routes: an OpenAI client configured for Azure's v1 API
    v1 = openai.OpenAI(base_url=gw.url + "/openai/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
    assert v1.chat.completions.create(model="gpt-4o", messages=HELLO).choices[0].message.content
    assert "gpt-4o" in [m.id for m in v1.models.list()]


def test_an_azure_clients_responses_request_is_translated_to_an_azure_deployment(gw: GatewayProcess, fake: FakeAzure) -> None:
    reply = azure(gw).responses.create(model="gpt-4o", input="Hello")  # AzureOpenAI posts it to /openai/responses
    assert reply.output_text == "Hello from the fake upstream."
    assert fake.requests[-1].path == f"/openai/deployments/chat4o/chat/completions?api-version={VERSION}"


def test_an_anthropic_client_is_translated_to_an_azure_deployment(gw: GatewayProcess, fake: FakeAzure) -> None:
    client = claude(gw)
    reply = client.messages.create(model="gpt-4o", max_tokens=50, messages=HELLO)
    assert reply.content[0].type == "text" and reply.content[0].text == "Hello from the fake upstream."
    assert reply.usage.output_tokens == 5
    rec = fake.requests[-1]
    assert rec.path.startswith("/openai/deployments/chat4o/chat/completions?") and rec.json["max_completion_tokens"] == 50
    with client.messages.stream(model="gpt-4o", max_tokens=50, messages=HELLO) as stream:  # starts with Azure's annotation chunk
        assert "".join(stream.text_stream) == "Hello from the fake upstream."
        final = stream.get_final_message()
    assert final.usage.output_tokens == 5 and final.stop_reason == "end_turn"
    fake.enqueue(Behaviour(tool_calls=CALLS))
    tools: Any = [{"name": t["function"]["name"], "input_schema": t["function"]["parameters"]} for t in TOOLS]
    used = client.messages.create(model="gpt-4o", max_tokens=50, messages=HELLO, tools=tools)
    assert [(b.id, b.name, b.input) for b in used.content if b.type == "tool_use"] == [
        ("call_w", "get_weather", {"city": "Oslo"}),
        ("call_t", "get_time", {"zone": "CET"}),
    ]
    assert used.stop_reason == "tool_use"


def test_a_content_filter_refusal_is_the_clients_400_with_its_innererror_and_not_failed_over(gw: GatewayProcess, fake: FakeAzure) -> None:
    fake.set_rule("guard", errors.content_filter("violence"))
    with pytest.raises(openai.BadRequestError) as refused:
        azure(gw).chat.completions.create(model="guarded", messages=HELLO)
    body: Any = refused.value.body
    assert refused.value.code == "content_filter" and "content management policy" in body["message"]
    assert body["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    with pytest.raises(anthropic.BadRequestError, match="content management policy"):
        claude(gw).messages.create(model="guarded", max_tokens=20, messages=HELLO)
    assert fake.count("spare") == 0  # the client's request, not a deployment failure: no fallback
    status = httpx.get(gw.url + "/admin/deployments", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10).json()
    guard = next(d for d in status["deployments"] if d["label"] == "az/guard")
    assert guard["state"] == "healthy" and guard["errors"] == 0, guard
    fake.set_rule("guard", filtered("violence"))  # the output filter: a 200 like any reply, priced
    raw = azure(gw).chat.completions.with_raw_response.create(model="guarded", messages=HELLO)
    assert raw.parse().choices[0].finish_reason == "content_filter" and float(raw.headers["x-faregate-cost-usd"]) > 0


@pytest.mark.parametrize("model", ["limited", "limited-msg"])
def test_an_azure_429_waits_as_long_as_azure_says(gw: GatewayProcess, fake: FakeAzure, model: str) -> None:
    deployment = "lim" if model == "limited" else "lim-msg"
    fake.set_rule(deployment, errors.rate_limited(7, headers=model == "limited"))  # retry-after-ms, or the message alone
    with pytest.raises(openai.RateLimitError) as limited:
        azure(gw).chat.completions.create(model=model, messages=HELLO)
    assert limited.value.code == "upstream_rate_limited"
    assert 5 <= int(limited.value.response.headers["retry-after"]) <= 7  # not the 1 s cooldown of the config
    assert "token rate limit" in limited.value.message


def test_a_misnamed_deployment_a_rejected_key_and_a_server_error(gw: GatewayProcess, fake: FakeAzure) -> None:
    with pytest.raises(openai.InternalServerError) as missing:
        azure(gw).chat.completions.create(model="typo", messages=HELLO)
    assert missing.value.code == "deployment_misconfigured" and "chat4oo" in missing.value.message
    with pytest.raises(openai.InternalServerError) as rejected:
        azure(gw).chat.completions.create(model="badkey", messages=HELLO)
    assert "credential rejected (401" in rejected.value.message
    fake.set_rule("down", errors.server_error())
    assert azure(gw).chat.completions.create(model="down", messages=HELLO).choices[0].message.content  # answered by the fallback
    assert fake.count("down") == 1 and fake.count("spare") == 1
    no_secret(gw, missing.value.message, rejected.value.message)


def test_a_stream_cut_midway_ends_with_an_error_event(gw: GatewayProcess, fake: FakeAzure) -> None:
    fake.set_rule("cut", Behaviour(stream_drop_after=3))
    with pytest.raises(openai.APIError, match="interrupted"):
        for _ in azure(gw).chat.completions.create(model="cut", messages=HELLO, stream=True):
            pass
    with (
        pytest.raises(anthropic.APIError, match="interrupted"),
        claude(gw).messages.stream(model="cut", max_tokens=20, messages=HELLO) as stream,
    ):
        stream.until_done()


def test_client_keys_in_api_key_count_like_any_other(gw: GatewayProcess, fake: FakeAzure) -> None:
    with pytest.raises(openai.AuthenticationError):
        azure(gw, "sk-fg-not-a-key").chat.completions.create(model="gpt-4o", messages=HELLO)
    url = f"{gw.url}/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}"
    both = httpx.post(url, json={"messages": HELLO}, headers={"api-key": MASTER_KEY, "authorization": "Bearer sk-fg-other"}, timeout=10)
    assert both.status_code == 401 and "more than one API key" in both.json()["error"]["message"]
    none = httpx.post(url, json={"messages": HELLO}, timeout=10)
    assert none.status_code == 401 and "'api-key: <key>'" in none.json()["error"]["message"]
    unknown = f"{gw.url}/openai/deployments/gpt-4o/rerank?api-version={VERSION}"
    assert httpx.post(unknown, json={}, headers={"api-key": "sk-fg-bad"}, timeout=10).status_code == 401  # nothing learnt with a bad key
    assert httpx.post(unknown, json={}, headers={"api-key": MASTER_KEY}, timeout=10).json()["error"]["code"] == "unknown_url"
    wrong = httpx.get(url, headers={"api-key": MASTER_KEY}, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert fake.requests == []
    no_secret(gw, both.text, none.text)


def test_the_probe_of_an_azure_deployment_is_a_1_token_request(gw: GatewayProcess, fake: FakeAzure) -> None:
    def probe(label: str) -> dict[str, Any]:
        r = httpx.post(
            f"{gw.url}/admin/deployments/{quote(label, safe='')}/probe", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
        )
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()["probe"]
        return found

    ok = probe("az/vetted")
    assert ok["result"] == "ok" and ok["method"] == "completion", ok
    [rec] = fake.requests
    assert rec.path == f"/openai/deployments/vetted/chat/completions?api-version={VERSION}" and rec.json["max_tokens"] == 1
    assert probe("az/chat4oo")["result"] == "model_not_found"
    assert probe("azbad/chat4o")["result"] == "credential_rejected"


def test_check_requires_an_api_version_and_the_resource_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "faregate.yaml"
    path.write_text(
        'server: {master_key: "${FAREGATE_MASTER_KEY}"}\nproviders:\n'
        '  a:\n    type: azure\n    base_url: https://contoso.openai.azure.com/openai/v1\n    credentials: [{id: k, key: "${AZURE_KEY}"}]\n'
        "models:\n  m:\n    - {provider: a, model: chat4o}\n"
    )
    result = run_cli("check", "-c", str(path), env={"FAREGATE_MASTER_KEY": MASTER_KEY, **ENV})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "providers.a.api_version: required for type azure" in out and "providers.a.base_url: the resource's endpoint only" in out
    assert AZURE_KEY not in out
