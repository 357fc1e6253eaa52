"""Bedrock out, end to end: a real gateway process, the fake Bedrock runtime (SigV4 verified with
botocore, binary event-stream frames: tests/fakes/bedrock_upstream.py), the official openai (Chat)
and anthropic SDKs as clients. The conformance cases: plain, streamed, tool call and result,
parallel tool calls, JSON schema (Converse structured output), usage with cache reads and writes
priced, each Bedrock error class, bad key, mid-stream cut; configured keys (with a session token)
and the AWS chain; the probe; fingerprints only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.fakes import bedrock_wire as wire
from tests.fakes.bedrock_upstream import FakeBedrock, Script
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

PROFILE = "us.anthropic.claude-sonnet-4-20250514-v1:0"  # a cross-region inference profile id
HELLO: Any = [{"role": "user", "content": "Hello"}]
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}},
]
ENV = {
    "BR_KEY_ID": wire.ACCESS_KEY_ID,
    "BR_SECRET": wire.SECRET_ACCESS_KEY,
    "BR_TOKEN": wire.SESSION_TOKEN,
    "BR_WRONG": "wrong/secret+key/0000000000000000000000",
    # the AWS chain of the gateway process: these environment variables, nothing else
    "AWS_ACCESS_KEY_ID": wire.ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": wire.SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": wire.SESSION_TOKEN,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


SERVER_SIDE = ("AccessDeniedException", "ServiceUnavailableException", "ModelNotReadyException", "InternalServerException")


def config(url: str) -> str:
    def provider(name: str, credentials: str) -> str:
        return f"  {name}:\n    type: bedrock\n    region: {wire.REGION}\n    base_url: {url}\n{credentials}"

    keys = '    credentials: [{id: main, access_key_id: "${BR_KEY_ID}", secret_access_key: "${BR_SECRET}"}]\n'
    temp = '    credentials: [{id: temp, access_key_id: "${BR_KEY_ID}", secret_access_key: "${BR_SECRET}", session_token: "${BR_TOKEN}"}]\n'
    bad = '    credentials: [{id: bad, access_key_id: "${BR_KEY_ID}", secret_access_key: "${BR_WRONG}"}]\n'
    models = {
        "claude": "br",
        "claude-temp": "brtemp",
        "claude-chain": "brchain",
        "claude-bad": "brbad",
        "typo": "br",
        "claude-limited": "brlim",
    }
    models |= {f"err-{name}": f"br{name.lower()}" for name in SERVER_SIDE}
    lines = "".join(
        f"  {name}:\n    - {{provider: {p}, model: {'anthropic.claude-typo' if name == 'typo' else PROFILE}}}\n"
        for name, p in models.items()
    )
    return (
        "server:\n  master_key: ${FAREGATE_MASTER_KEY}\nproviders:\n"
        + provider("br", keys)
        + provider("brtemp", temp)
        + provider("brchain", "")
        + provider("brbad", bad)
        + provider("brlim", keys)  # its own deployment: a 429 rests it
        + "".join(provider(f"br{name.lower()}", keys) for name in SERVER_SIDE)  # each its own: a 403 rejects the key
        + "models:\n"
        + lines
        + "routing:\n  retries: 0\n  cooldown: {failures: 1000, seconds: 1}\n"
        + f'prices:\n  "{PROFILE}": {{input: 3.0, output: 15.0, cached_input: 0.3, cache_write: 3.75}}\n'
        + '  "anthropic.claude-typo": {input: 3.0, output: 15.0}\n'
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeBedrock]]:
    tmp: Path = tmp_path_factory.mktemp("bedrock")
    with FakeBedrock() as fake, GatewayProcess(tmp, config(fake.url), env=ENV).start() as gw:
        yield gw, fake


@pytest.fixture
def gw(world: tuple[GatewayProcess, FakeBedrock]) -> GatewayProcess:
    world[1].clear()
    world[1].known_models = frozenset({PROFILE})
    return world[0]


@pytest.fixture
def fake(world: tuple[GatewayProcess, FakeBedrock]) -> FakeBedrock:
    return world[1]


def oai(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def claude(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


# ---- plain, streamed, usage -----------------------------------------------------------------------
def test_openai_chat_plain_is_a_signed_converse_with_the_profile_in_the_path(gw: GatewayProcess, fake: FakeBedrock) -> None:
    raw = oai(gw).chat.completions.with_raw_response.create(model="claude", messages=HELLO, max_tokens=50, temperature=0.5)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from Bedrock."
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 5)
    (rec,) = fake.requests
    assert rec.path == "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse" and rec.access_key_id == wire.ACCESS_KEY_ID
    assert rec.json["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.5}
    assert rec.json["messages"] == [{"role": "user", "content": [{"text": "Hello"}]}] and "stream" not in rec.json
    label = raw.headers["x-faregate-credential"]
    assert label.startswith("br/main:") and wire.SECRET_ACCESS_KEY not in label and wire.ACCESS_KEY_ID not in label


def test_openai_chat_stream_from_event_stream_frames(gw: GatewayProcess, fake: FakeBedrock) -> None:
    stream = oai(gw).chat.completions.create(
        model="claude", messages=HELLO, max_tokens=50, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Bedrock."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 17
    assert fake.requests[0].stream


def test_anthropic_client_cache_marks_become_cache_points_and_cache_usage_is_priced(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(usage={"inputTokens": 10, "outputTokens": 20, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 200}))
    system: Any = [{"type": "text", "text": "You are terse." * 20, "cache_control": {"type": "ephemeral"}}]
    raw = claude(gw).messages.with_raw_response.create(model="claude", max_tokens=64, system=system, messages=HELLO)
    message = raw.parse()
    assert message.content[0].type == "text" and message.usage.cache_read_input_tokens == 1000
    assert message.usage.cache_creation_input_tokens == 200 and message.usage.input_tokens == 10
    sent = fake.requests[0].json
    assert sent["system"] == [{"text": "You are terse." * 20}, {"cachePoint": {"type": "default"}}]
    cost = float(raw.headers["x-faregate-cost-usd"])
    expected = (10 * 3.0 + 1000 * 0.3 + 200 * 3.75 + 20 * 15.0) / 1e6
    assert cost == pytest.approx(expected, rel=1e-6)


def test_anthropic_client_stream(gw: GatewayProcess, fake: FakeBedrock) -> None:
    with claude(gw).messages.stream(model="claude", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from Bedrock." and final.stop_reason == "end_turn" and final.usage.output_tokens == 5


# ---- tools, JSON schema ---------------------------------------------------------------------------
def test_parallel_tool_calls_and_their_results(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(text="", tool_calls=[("get_weather", {"city": "Oslo"}), ("get_time", {"zone": "CET"})]))
    reply = oai(gw).chat.completions.create(model="claude", messages=HELLO, tools=TOOLS, tool_choice="required")
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"zone": "CET"}),
    ]
    assert reply.choices[0].finish_reason == "tool_calls"
    sent = fake.requests[0].json
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"] == {"city": {"type": "string"}}
    history: Any = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "12C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "14:00"},
    ]
    oai(gw).chat.completions.create(model="claude", messages=history, tools=TOOLS)
    turns = fake.requests[1].json["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["toolUse"]["name"] for b in turns[1]["content"]] == ["get_weather", "get_time"]
    assert turns[2]["content"] == [
        {"toolResult": {"toolUseId": calls[0].id, "content": [{"text": "12C"}]}},
        {"toolResult": {"toolUseId": calls[1].id, "content": [{"text": "14:00"}]}},
    ]


def test_streamed_tool_calls(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(text="", tool_calls=[("get_weather", {"city": "Oslo"}), ("get_time", {"zone": "CET"})]))
    chunks = list(oai(gw).chat.completions.create(model="claude", messages=HELLO, tools=TOOLS, stream=True))
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.name:
                names[call.index] = call.function.name
            args[call.index] = args.get(call.index, "") + ((call.function.arguments or "") if call.function else "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert {i: orjson.loads(a) for i, a in args.items()} == {0: {"city": "Oslo"}, 1: {"zone": "CET"}}


def test_json_schema_is_converse_structured_output(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(text='{"answer": 42}'))
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    reply = oai(gw).chat.completions.create(
        model="claude", messages=HELLO, response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    )
    assert orjson.loads(reply.choices[0].message.content or "") == {"answer": 42}
    fmt = fake.requests[0].json["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema" and orjson.loads(fmt["structure"]["jsonSchema"]["schema"]) == schema


def test_json_object_cannot_be_carried_and_is_refused_by_name(gw: GatewayProcess, fake: FakeBedrock) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai(gw).chat.completions.create(model="claude", messages=HELLO, response_format={"type": "json_object"})
    assert "response_format" in str(refused.value) and not fake.requests


# ---- errors -----------------------------------------------------------------------------------------
def test_throttling_is_a_429(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(error=("ThrottlingException", "Too many requests, please wait before trying again.")))
    with pytest.raises(openai.RateLimitError):
        oai(gw).chat.completions.create(model="claude-limited", messages=HELLO)


def test_validation_error_passes_through_with_bedrocks_message(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(error=("ValidationException", "messages.0: blank text is not allowed")))
    with pytest.raises(openai.BadRequestError) as bad:
        oai(gw).chat.completions.create(model="claude", messages=HELLO)
    assert "blank text is not allowed" in str(bad.value)
    fake.enqueue(Script(error=("ValidationException", "max_tokens too large")))
    with pytest.raises(anthropic.BadRequestError) as bad_an:
        claude(gw).messages.create(model="claude", max_tokens=64, messages=HELLO)
    assert "max_tokens too large" in str(bad_an.value)


def test_invalid_model_identifier_marks_the_deployment_misconfigured(gw: GatewayProcess, fake: FakeBedrock) -> None:
    with pytest.raises(openai.APIStatusError) as missing:
        oai(gw).chat.completions.create(model="typo", messages=HELLO)
    assert missing.value.status_code == 503 and "br/anthropic.claude-typo" in str(missing.value)
    rows = httpx.get(gw.url + "/admin/deployments", headers={"authorization": f"Bearer {MASTER_KEY}"}).json()
    assert any(
        "anthropic.claude-typo" in orjson.dumps(row).decode() and "misconfigured" in orjson.dumps(row).decode()
        for row in rows["deployments"]
    )


@pytest.mark.parametrize("name", SERVER_SIDE)
def test_access_denied_and_server_errors_are_no_deployment(gw: GatewayProcess, fake: FakeBedrock, name: str) -> None:
    fake.enqueue(Script(error=(name, f"{name} happened")))
    with pytest.raises(openai.APIStatusError) as raised:
        oai(gw).chat.completions.create(model=f"err-{name}", messages=HELLO)
    assert raised.value.status_code == 503 and name in str(raised.value)
    fake.enqueue(Script(error=(name, f"{name} happened")))
    with pytest.raises(anthropic.APIStatusError) as again:  # the same for an Anthropic client
        claude(gw).messages.create(model=f"err-{name}", max_tokens=10, messages=HELLO)
    assert again.value.status_code == 503


def test_bad_secret_is_an_invalid_signature_and_never_shown(gw: GatewayProcess, fake: FakeBedrock) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        oai(gw).chat.completions.create(model="claude-bad", messages=HELLO)
    assert "InvalidSignatureException" in str(raised.value) or "credential" in str(raised.value)
    assert ENV["BR_WRONG"] not in str(raised.value) and ENV["BR_WRONG"] not in gw.logs()


def test_mid_stream_exception_and_cut_end_the_stream_with_an_error(gw: GatewayProcess, fake: FakeBedrock) -> None:
    fake.enqueue(Script(stream_exception=("ModelStreamErrorException", "the model stopped")))
    with pytest.raises(openai.APIError) as broke:
        list(oai(gw).chat.completions.create(model="claude", messages=HELLO, stream=True))
    assert "ModelStreamErrorException" in str(broke.value) or "interrupted" in str(broke.value)
    fake.enqueue(Script(cut_after=3))
    with pytest.raises(anthropic.APIError), claude(gw).messages.stream(model="claude", max_tokens=64, messages=HELLO) as stream:
        "".join(stream.text_stream)


# ---- credentials -----------------------------------------------------------------------------------
def test_session_token_and_the_aws_chain_sign_every_request(gw: GatewayProcess, fake: FakeBedrock) -> None:
    oai(gw).chat.completions.create(model="claude-temp", messages=HELLO)
    raw = oai(gw).chat.completions.with_raw_response.create(model="claude-chain", messages=HELLO)
    assert [r.session_token for r in fake.requests] == [wire.SESSION_TOKEN, wire.SESSION_TOKEN]
    assert raw.headers["x-faregate-credential"].startswith("brchain/aws-chain:")
    body = httpx.get(gw.url + "/admin/credentials", headers={"authorization": f"Bearer {MASTER_KEY}"}).json()
    text = orjson.dumps(body).decode()
    assert wire.SECRET_ACCESS_KEY not in text and wire.SESSION_TOKEN not in text
    chain = next(row for row in body["credentials"] if row["provider"] == "brchain")
    assert chain["token"]["kind"] == "aws_chain" and chain["token"]["state"] == "valid" and chain["token"]["error"] is None
    assert chain["token"]["fingerprint"] not in (None, "", "none")


def test_probe_is_the_one_token_request(gw: GatewayProcess, fake: FakeBedrock) -> None:
    label = quote(f"br/{PROFILE}", safe="")
    probed = httpx.post(f"{gw.url}/admin/deployments/{label}/probe", headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert probed.status_code == 200, probed.text
    assert probed.json()["probe"]["result"] == "ok" and probed.json()["probe"]["method"] == "completion"
    assert fake.requests[0].json["inferenceConfig"] == {"maxTokens": 1}


def test_verify_matches_the_bedrock_fingerprints_and_shows_no_key(gw: GatewayProcess) -> None:
    done = run_cli("verify", "-c", str(gw.config_path), "--url", gw.url, env={**ENV, "FAREGATE_MASTER_KEY": MASTER_KEY}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all workers match the config" in done.stdout
    assert all(secret not in done.stdout + done.stderr for secret in (wire.SECRET_ACCESS_KEY, wire.SESSION_TOKEN))
    rotated = {**ENV, "FAREGATE_MASTER_KEY": MASTER_KEY, "BR_SECRET": "rotated/secret/key+2222222222222222222222"}
    stale = run_cli("verify", "-c", str(gw.config_path), "--url", gw.url, env=rotated, timeout=60)
    assert stale.returncode == 1 and "MISMATCH" in stale.stdout  # the secret is in the fingerprint, not only the key id
