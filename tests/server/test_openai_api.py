"""The OpenAI-compatible routes through the official openai SDK, against a fake upstream."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, client, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    text = config(
        provider("openai-main", upstream.url),
        """
  gpt-4o:
    - provider: openai-main
      model: gpt-4o-2024-08-06
  text-embedding-3-small:
    - provider: openai-main
      model: text-embedding-3-small
  gpt-3.5-turbo-instruct:
    - provider: openai-main
      model: gpt-3.5-turbo-instruct""",
        server="\n  max_body_bytes: 65536",
    )
    with GatewayProcess(tmp_path_factory.mktemp("gw"), text, env=UPSTREAM_ENV) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeOpenAI) -> None:
    upstream.clear()


def test_chat_plain(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage is not None and completion.usage.total_tokens > 0
    # the upstream saw the upstream model name and our credential
    [seen] = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.json["model"] == "gpt-4o-2024-08-06"
    assert seen.api_key == UPSTREAM_KEY
    headers = raw.headers
    assert headers["x-faregate-provider"] == "openai-main"
    assert headers["x-faregate-model"] == "gpt-4o-2024-08-06"
    assert headers["x-faregate-credential"].startswith("openai-main/main:")
    assert len(headers["x-faregate-credential"].split(":")[1]) == 8
    assert len(headers["x-faregate-request-id"]) == 24
    assert len(headers["x-faregate-generation"]) == 12
    assert "x-faregate-fallback" not in headers


def test_chat_stream_every_event_arrives(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    stream = client(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_headers_disable_buffering(gateway: GatewayProcess) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
        raw = r.read()
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache, no-transform"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-faregate-credential"].startswith("openai-main/main:")
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]"
    assert len(events) == 1 + 5 + 1 + 1  # role, 5 content chunks, finish, [DONE]


def test_completions(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    result = client(gateway).completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert result.choices[0].text
    assert upstream.requests[0].path == "/v1/completions"
    streamed = list(client(gateway).completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == result.choices[0].text


def test_embeddings_base64_and_float(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    sdk = client(gateway)
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [8, 8]
    default = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # the SDK asks for base64
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding)
    assert upstream.requests[-1].json["encoding_format"] == "base64"
    assert upstream.requests[-1].path == "/v1/embeddings"
    struct.unpack("<8f", base64.b64decode(base64.b64encode(struct.pack("<8f", *floats.data[0].embedding))))


def test_models_lists_public_names(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    names = [m.id for m in client(gateway).models.list()]
    assert names == ["gpt-3.5-turbo-instruct", "gpt-4o", "text-embedding-3-small"]
    assert upstream.requests == []  # answered from the config, not the upstream


def _post(gateway: GatewayProcess, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json", **(headers or {})}
    return httpx.post(gateway.url + path, content=content, headers=h, timeout=10)


def _error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b"", "invalid_json", "empty"),
        (b"[1, 2]", "invalid_json", "must be a JSON object, not an array"),
        (b"null", "invalid_json", "not null"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]} trailing', "invalid_json", "not valid JSON"),
        (b'{"model": NaN, "messages": []}', "invalid_json", "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "missing_field", "'model'"),
        (
            b'{"model": 4, "messages": [{"role": "user", "content": "x"}]}',
            "invalid_type",
            "'model' must be a non-empty string, not a number",
        ),
        (b'{"model": "gpt-4o"}', "missing_field", "'messages'"),
        (b'{"model": "gpt-4o", "messages": "hi"}', "invalid_type", "'messages' must be an array"),
        (b'{"model": "gpt-4o", "messages": []}', "invalid_value", "at least one message"),
        (b'{"model": "gpt-4o", "messages": [3]}', "invalid_type", "'messages[0]' must be an object"),
        (b'{"model": "gpt-4o", "messages": [{"content": "x"}]}', "invalid_type", "'messages[0].role'"),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "true"}',
            "invalid_type",
            "'stream' must be a boolean",
        ),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff"}]}', "invalid_json", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json", "more than 254 levels deep"),
    ],
)
def test_bad_requests_are_400_and_never_forwarded(
    gateway: GatewayProcess, upstream: FakeOpenAI, content: bytes, code: str, needle: str
) -> None:
    response = _post(gateway, "/v1/chat/completions", content)
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert needle in error["message"]
    assert "Traceback" not in response.text
    assert response.headers["x-faregate-request-id"]
    assert upstream.requests == []


def test_missing_input_for_embeddings(gateway: GatewayProcess) -> None:
    error = _error(_post(gateway, "/v1/embeddings", b'{"model": "text-embedding-3-small"}'))
    assert error["param"] == "input" and "'input'" in error["message"]


def test_unknown_model_is_404_with_suggestions(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "'gpt-4'" in error["message"] and "did you mean 'gpt-4o'" in error["message"]
    assert upstream.requests == []


def test_auth(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}'
    url = gateway.url + "/v1/chat/completions"
    missing = httpx.post(url, content=body)
    assert missing.status_code == 401 and _error(missing)["code"] == "invalid_api_key"
    assert "missing API key" in _error(missing)["message"]
    wrong = httpx.post(url, content=body, headers={"authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401 and _error(wrong)["message"] == "invalid API key"
    basic = httpx.post(url, content=body, headers={"authorization": "Basic abc"})
    assert basic.status_code == 401 and "Bearer" in _error(basic)["message"]
    sqlish = httpx.post(url, content=body, headers={"authorization": "Bearer ' OR pg_sleep(8)--"})
    assert sqlish.status_code == 401
    two = httpx.post(url, content=body, headers={"authorization": f"Bearer {MASTER_KEY}", "x-api-key": "sk-other"})
    assert two.status_code == 401 and "more than one" in _error(two)["message"]
    via_x_api_key = httpx.post(url, content=body, headers={"x-api-key": MASTER_KEY})
    assert via_x_api_key.status_code == 200
    assert len(upstream.requests) == 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-nope", max_retries=0).models.list()


def test_body_size_limit_is_413(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    big = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'
    response = _post(gateway, "/v1/chat/completions", big)
    assert response.status_code == 413
    error = _error(response)
    assert error["code"] == "request_too_large" and "65536" in error["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        yield big[:1000]
        yield big[1000:]

    response = httpx.post(gateway.url + "/v1/chat/completions", content=chunked(), headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert response.status_code == 413
    assert upstream.requests == []


def test_unknown_route_and_method(gateway: GatewayProcess) -> None:
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    assert httpx.get(gateway.url + "/v1/nope").status_code == 401  # a caller without a valid key learns nothing
    response = httpx.get(gateway.url + "/v1/nope", headers=auth)
    assert response.status_code == 404 and _error(response)["code"] == "unknown_url"
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    for odd in ("//v1/chat/completions", "/v1/chat/completions/", "/V1/CHAT/COMPLETIONS", "/v1/chat/completions;x=1"):
        assert httpx.post(gateway.url + odd, content=b"{}", headers=auth).status_code == 404


def test_ops_endpoints(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/readyz").json()
    assert ready["status"] == "ready" and len(ready["generation"]) == 12
    metrics = httpx.get(gateway.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE faregate_requests_total counter" in metrics.text
