"""Vertex AI end to end: official SDK clients -> a real gateway process -> a fake Vertex with its own
OAuth token endpoint (tests/fakes/vertex_upstream.py), which checks the JWT grant google-auth signs
with the service-account key file and accepts only the tokens it issued.

Gemini models go to ``publishers/google`` (generateContent, streamGenerateContent?alt=sse), Claude
models to ``publishers/anthropic`` (rawPredict, streamRawPredict, ``anthropic_version`` in the body);
each request carries the token minted from the key file, minted once per generation and refreshed
ahead of expiry by the gateway's background task; a reload with a new key file switches at once.
No token or private key is ever in a log line, a response, a header or the metrics.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest

from faregate.types import fingerprint
from tests.fakes import anthropic_wire, gemini_wire
from tests.fakes.vertex_upstream import ANTHROPIC_VERSION, FakeVertex
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
GEMINI, CLAUDE = "gemini-2.5-flash", "claude-sonnet-4-5@20250929"
PROJECT, LOCATION = "fake-project", "us-east5"


def config(url: str, key: Path) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  vx:
    type: vertex
    base_url: {url}
    project: {PROJECT}
    location: {LOCATION}
    credentials: [{{id: sa, key_file: {key}}}]
    timeout: 20
models:
  gemini:
    - {{provider: vx, model: {GEMINI}}}
  claude:
    - {{provider: vx, model: "{CLAUDE}"}}
routing:
  retries: 0
  cooldown: {{failures: 1000, seconds: 1}}
"""


@pytest.fixture
def fake() -> Iterator[FakeVertex]:
    with FakeVertex() as upstream:
        yield upstream


def client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)


def label_of(key: Path) -> str:
    return f"vx/sa:{fingerprint(key.read_text().strip())}"


def credentials(gw: GatewayProcess) -> dict[str, Any]:
    r = httpx.get(gw.url + "/admin/credentials", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json()["credentials"][0])


def until(condition: Any, timeout: float = 30.0) -> bool:
    """Poll ``condition`` (a state the gateway reports) until it holds; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def private_lines(key: Path) -> list[str]:
    """The body lines of the key file's PEM private key (each one a piece of the secret)."""
    pem = json.loads(key.read_text())["private_key"]
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_gemini_on_vertex_plain_and_streamed(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    reply = client(gw).chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello from Gemini on the fake Vertex."
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    sent = fake.requests[-1]
    assert sent.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{GEMINI}:generateContent"
    assert sent.bearer == fake.grants[-1].token
    assert "model" not in sent.json and "stream" not in sent.json and sent.json["contents"][0]["role"] == "user"

    chunks = list(client(gw).chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Gemini on the fake Vertex."
    streamed = fake.requests[-1]
    assert streamed.path.endswith(f"/models/{GEMINI}:streamGenerateContent") and streamed.query == "alt=sse"
    assert streamed.bearer == sent.bearer


def test_anthropic_on_vertex_plain_and_streamed(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    sdk = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    message = sdk.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Claude on the fake Vertex."
    sent = fake.requests[-1]
    assert sent.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}:rawPredict"
    assert sent.json["anthropic_version"] == ANTHROPIC_VERSION and "model" not in sent.json
    assert sent.bearer == fake.grants[-1].token and "x-api-key" not in sent.headers

    with sdk.messages.stream(model="claude", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from Claude on the fake Vertex." and final.usage.output_tokens > 0
    assert fake.requests[-1].path.endswith(":streamRawPredict") and fake.requests[-1].json["stream"] is True

    # an OpenAI client's request, translated to the Messages API for the Claude model
    reply = client(gw).chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello from Claude on the fake Vertex."
    chunks = list(client(gw).chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Claude on the fake Vertex."
    assert fake.requests[-1].path.endswith(":streamRawPredict")


def test_one_token_is_minted_and_reused(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    for model in ("gemini", "claude", "gemini", "claude"):
        client(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert len(fake.grants) == 1 and fake.token_requests == 1
    assert {r.bearer for r in fake.requests} == {fake.grants[0].token}
    row = credentials(gw)
    assert row["fingerprint"] == label_of(key)
    assert row["token"]["state"] == "valid" and row["token"]["fingerprint"] == fingerprint(fake.grants[0].token)
    assert row["token"]["minted"] == 1 and row["token"]["valid_until"] is not None


def test_a_token_is_refreshed_before_expiry_by_the_background_task(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    fake.lifetimes = deque([4])  # the first token lives 4 s (replaced after 2), the next ones an hour
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    assert fake.wait_for(lambda f: len(f.grants) >= 2), "the short-lived token was never replaced"
    assert fake.requests == []  # no request asked for it: the refresher did
    second = fake.grants[1].token
    # the fake records a grant before the gateway has read it: wait until the gateway holds it
    assert until(lambda: credentials(gw)["token"]["fingerprint"] == fingerprint(second))
    client(gw).chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    assert fake.requests[-1].bearer == second
    assert len(fake.grants) == 2  # the hour-long token is kept


def test_a_request_waits_once_for_the_first_token_and_shares_its_minting(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    fake.hold = threading.Event()
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    assert fake.wait_for(lambda f: f.token_requests >= 1)  # the refresher is minting (held at the endpoint)
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(client(gw).chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}]))
    )
    thread.start()
    row = credentials(gw)
    assert row["token"]["state"] == "not minted yet" and row["token"]["refreshing"] is True
    fake.hold.set()
    thread.join(60)
    assert result and result[0].choices[0].message.content == "Hello from Claude on the fake Vertex."
    assert fake.token_requests == 1 and len(fake.grants) == 1  # the request waited for the refresher's minting, not one of its own
    assert fake.requests[-1].bearer == fake.grants[0].token


def test_a_reload_with_a_new_key_file_switches_tokens_at_once(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json", email="first@fake-project.iam.gserviceaccount.com")
    gw = gateways(config(fake.url, key))
    client(gw).chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    old = fake.requests[-1].bearer
    assert old == fake.grants[0].token
    before = label_of(key)
    fake.key_file(key, email="second@fake-project.iam.gserviceaccount.com")  # the same path, a new key
    r = httpx.post(gw.url + "/admin/reload", headers=ADMIN, timeout=30)
    assert r.status_code == 200, r.text
    seen = len(fake.requests)
    for model in ("gemini", "claude", "gemini"):
        client(gw).chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    after = fake.requests[seen:]
    new = [g for g in fake.grants if g.email == "second@fake-project.iam.gserviceaccount.com"]
    assert len(new) == 1 and {r.bearer for r in after} == {new[0].token}
    assert old not in {r.bearer for r in after}
    row = credentials(gw)
    assert row["fingerprint"] == label_of(key) != before and row["token"]["fingerprint"] == fingerprint(new[0].token)


def test_an_unchanged_key_keeps_serving_across_a_reload_while_a_new_token_is_minted(
    fake: FakeVertex, gateways: Any, tmp_path: Path
) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    client(gw).chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    fake.hold = threading.Event()  # the next minting hangs at the token endpoint
    assert httpx.post(gw.url + "/admin/reload", headers=ADMIN, timeout=30).status_code == 200
    assert fake.wait_for(lambda f: f.token_requests >= 2)  # the reload's new token is being minted
    client(gw).chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])  # no wait: the carried token
    assert fake.requests[-1].bearer == fake.grants[0].token
    fake.hold.set()
    assert fake.wait_for(lambda f: len(f.grants) == 2)


def test_a_refused_key_is_a_clear_credential_error_naming_its_fingerprint(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json", trusted=False)  # a key the token endpoint does not know: invalid_grant
    gw = gateways(config(fake.url, key))
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        headers=ADMIN,
        json={"model": "gemini", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert r.status_code == 503, r.text
    message = r.json()["error"]["message"]
    assert label_of(key) in message and "refused its key" in message and "invalid_grant: Invalid JWT Signature." in message
    assert fake.requests == []  # nothing was sent without a token
    row = credentials(gw)
    assert row["state"] == "rejected" and row["token"]["state"] == "failed" and label_of(key) in row["token"]["error"]
    probe = httpx.post(f"{gw.url}/admin/deployments/{quote('vx/' + GEMINI, safe='')}/probe", headers=ADMIN, timeout=60).json()["probe"]
    assert probe["result"] == "credential_rejected" and label_of(key) in probe["message"], probe
    for line in private_lines(key):
        assert line not in r.text and line not in gw.logs()


def test_a_key_file_that_is_no_service_account_key_is_refused_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "sa.json"
    bad.write_text('{"type": "authorized_user", "client_id": "x"}')
    cfg = tmp_path / "faregate.yaml"
    cfg.write_text(config("http://127.0.0.1:9", bad).replace("${FAREGATE_MASTER_KEY}", "${FG_KEY}"))
    done = run_cli("check", "-c", str(cfg), env={"FG_KEY": MASTER_KEY})
    assert done.returncode != 0
    assert "providers.vx.credentials[0].key_file" in done.stdout + done.stderr and "not a service-account key" in done.stdout + done.stderr
    cfg.write_text(cfg.read_text().replace(f"key_file: {bad}", 'key: "${FG_KEY}"'))
    done = run_cli("check", "-c", str(cfg), env={"FG_KEY": MASTER_KEY})
    assert done.returncode != 0 and "service-account key file" in done.stdout + done.stderr


def test_no_token_or_private_key_in_logs_responses_headers_or_metrics(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    fake.lifetimes = deque([4])  # a refresh too, so two tokens exist
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    assert fake.wait_for(lambda f: len(f.grants) >= 2)
    seen: list[bytes] = []
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        for model in ("gemini", "claude"):
            for stream in (False, True):
                r = http.post(
                    "/v1/chat/completions",
                    headers=ADMIN,
                    json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]},
                )
                assert r.status_code == 200, r.text
                seen.append(r.content + str(r.headers).encode())
        token = fake.grants[-1].token  # an upstream that echoes the token it was sent, in an error passed to the client
        fake.replies.append(
            (400, b'{"error": {"code": 400, "message": "bad request with ' + token.encode() + b'", "status": "INVALID_ARGUMENT"}}')
        )
        r = http.post("/v1/chat/completions", headers=ADMIN, json={"model": "gemini", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 400 and f"[redacted:{fingerprint(token)}]" in r.json()["error"]["message"], r.text
        seen.append(r.content + str(r.headers).encode())
        for path in ("/metrics", "/admin/credentials", "/admin/workers", "/admin/deployments"):
            seen.append(http.get(path, headers=ADMIN).content)
    gw.stop()
    everything = b"\n".join(seen) + gw.log_path.read_bytes()
    for grant in fake.grants:
        assert grant.token.encode() not in everything
    for line in private_lines(key):
        assert line.encode() not in everything


def test_the_fake_speaks_what_the_official_sdks_send(fake: FakeVertex, tmp_path: Path) -> None:
    """google-genai (vertexai=True, service-account credentials: google-auth mints at the fake's
    token endpoint) and anthropic's AnthropicVertex, against the fake directly."""
    from google import genai
    from google.genai import types
    from google.oauth2 import service_account

    key = fake.key_file(tmp_path / "sa.json")
    creds = service_account.Credentials.from_service_account_file(str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    gclient = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=creds,
        http_options=types.HttpOptions(base_url=fake.url, api_version="v1"),
    )
    reply = gclient.models.generate_content(model=GEMINI, contents="Hi")
    assert reply.text == "Hello from Gemini on the fake Vertex."
    assert "".join(c.text or "" for c in gclient.models.generate_content_stream(model=GEMINI, contents="Hi")) == reply.text
    assert fake.requests[-1].path.endswith(":streamGenerateContent") and fake.requests[-1].bearer == fake.grants[0].token

    vertex = anthropic.AnthropicVertex(
        region=LOCATION, project_id=PROJECT, access_token=fake.grants[0].token, base_url=fake.url + "/v1", max_retries=0
    )
    message = vertex.messages.create(model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Claude on the fake Vertex."
    with vertex.messages.stream(model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == "Hello from Claude on the fake Vertex."
    assert fake.requests[-1].path.endswith(f"/publishers/anthropic/models/{CLAUDE}:streamRawPredict")


def test_verify_compares_the_key_files_fingerprints_with_the_workers(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    done = run_cli("verify", "-c", str(gw.config_path), "--url", gw.url, env={"FAREGATE_MASTER_KEY": MASTER_KEY})
    assert done.returncode == 0 and "all workers match the config" in done.stdout, done.stdout + done.stderr
    other = tmp_path / "other.yaml"  # the same config with another key file: not what the workers use
    other.write_text(config(fake.url, fake.key_file(tmp_path / "other.json")))
    done = run_cli("verify", "-c", str(other), "--url", gw.url, env={"FAREGATE_MASTER_KEY": MASTER_KEY})
    assert done.returncode == 1 and "MISMATCH" in done.stdout, done.stdout


def test_vertex_errors_are_classified_in_google_and_anthropic_shapes(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    hi = [{"role": "user", "content": "Hi"}]

    def ask(model: str, status: bytes, body: bytes) -> httpx.Response:
        fake.replies.append((int(status), body))
        return httpx.post(gw.url + "/v1/chat/completions", headers=ADMIN, json={"model": model, "messages": hi}, timeout=60)

    # Anthropic's own error for a Claude model: the client's, passed through with its message
    r = ask("claude", b"400", b'{"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: 100000 > 64000"}}')
    assert r.status_code == 400 and "max_tokens: 100000 > 64000" in r.json()["error"]["message"], r.text
    # Vertex's NOT_FOUND for a model: the deployment is misnamed
    missing = b"Publisher Model `projects/fake-project/locations/us-east5/publishers/google/models/gemini-2.5-flash` was not found"
    r = ask("gemini", b"404", b'{"error": {"code": 404, "message": "' + missing + b'", "status": "NOT_FOUND"}}')
    assert r.status_code == 503 and r.json()["error"]["code"] == "deployment_misconfigured", r.text
    # Vertex's quota: a limit
    quota = b"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model"
    r = ask("claude", b"429", b'{"error": {"code": 429, "message": "' + quota + b'", "status": "RESOURCE_EXHAUSTED"}}')
    assert r.status_code == 429 and r.json()["error"]["code"] == "upstream_rate_limited", r.text
    assert httpx.post(gw.url + "/cache/purge", headers=ADMIN, timeout=30).status_code == 200  # forget the cooldown
    # Vertex's PERMISSION_DENIED: the credential's
    denied = b'{"error": {"code": 403, "message": "Permission denied on resource project fake-project.", "status": "PERMISSION_DENIED"}}'
    r = ask("claude", b"403", denied)
    assert r.status_code == 503 and "credential rejected (403 PERMISSION_DENIED)" in r.json()["error"]["message"], r.text


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    },
}


@pytest.mark.parametrize("model", ["gemini", "claude"])
def test_a_tool_call_and_its_result_round_trip_on_vertex(fake: FakeVertex, gateways: Any, tmp_path: Path, model: str) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    if model == "gemini":
        fake.gemini.append(gemini_wire.Behaviour(parts=[gemini_wire.call("get_weather", {"city": "Paris"}, signature="c2lnbmF0dXJl")]))
    else:
        fake.claude.append(anthropic_wire.Behaviour(content=[anthropic_wire.tool_use("get_weather", {"city": "Paris"}, id="toolu_01X")]))
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client(gw).chat.completions.create(model=model, messages=ask, tools=[WEATHER])
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments) == {"city": "Paris"}
    sent = fake.requests[-1].json
    if model == "gemini":
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    else:
        assert sent["tools"][0]["name"] == "get_weather" and "model" not in sent
    follow = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C, sunny"},
    ]
    again = client(gw).chat.completions.create(model=model, messages=follow, tools=[WEATHER])
    assert again.choices[0].message.content
    sent = fake.requests[-1].json
    if model == "gemini":
        (result,) = [p for c in sent["contents"] for p in c["parts"] if "functionResponse" in p]
        assert result["functionResponse"]["name"] == "get_weather" and "18 C, sunny" in json.dumps(result)
        (call,) = [p for c in sent["contents"] for p in c["parts"] if "functionCall" in p]
        assert call["thoughtSignature"] == "c2lnbmF0dXJl"  # kept across the round trip, as Gemini 3 requires
    else:
        blocks = [b for m in sent["messages"] for b in (m["content"] if isinstance(m["content"], list) else [])]
        assert any(b.get("type") == "tool_result" and b.get("tool_use_id") == "toolu_01X" for b in blocks)


def test_every_client_format_reaches_both_kinds_of_vertex_model(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    texts = {"gemini": "Hello from Gemini on the fake Vertex.", "claude": "Hello from Claude on the fake Vertex."}
    sdk = anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    for model, text in texts.items():
        message = sdk.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
        assert message.content[0].type == "text" and message.content[0].text == text
        response = client(gw).responses.create(model=model, input="Hi", store=False)
        assert response.output_text == text
    assert {r.publisher for r in fake.requests} == {"google", "anthropic"}


def test_a_probe_sends_the_1_token_request_with_the_minted_token(fake: FakeVertex, gateways: Any, tmp_path: Path) -> None:
    key = fake.key_file(tmp_path / "sa.json")
    gw = gateways(config(fake.url, key))
    assert until(lambda: credentials(gw)["token"]["state"] == "valid")
    for label, publisher in ((f"vx/{GEMINI}", "google"), (f"vx/{CLAUDE}", "anthropic")):
        r = httpx.post(f"{gw.url}/admin/deployments/{quote(label, safe='')}/probe", headers=ADMIN, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["probe"]["result"] == "ok" and r.json()["probe"]["method"] == "completion", r.text
        sent = fake.requests[-1]
        assert sent.publisher == publisher and sent.bearer == fake.grants[0].token
