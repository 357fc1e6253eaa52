"""Deeply nested JSON through a real `faregate serve`: orjson reads 1,024 levels but writes at most
254, so anything deeper than faregate can forward is a 400 naming the limit (never a 500 with a
traceback), on every endpoint, for an OpenAI upstream and for the mock; 254 levels still work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
DEPTHS = [253, 254, 255, 1024, 1025, 100_000]
LIMIT = 254
ROUTES = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:{provider("up", upstream.url)}
  local: {{type: mock, chunk_delay: 0}}
models:
  up-chat: [{{provider: up, model: gpt-4o}}]
  up-completions: [{{provider: up, model: gpt-3.5-turbo-instruct}}]
  up-embeddings: [{{provider: up, model: text-embedding-3-small}}]
  mock-chat: [{{provider: local, model: mock-small}}]
  mock-completions: [{{provider: local, model: mock-small}}]
  mock-embeddings: [{{provider: local, model: mock-embed}}]
"""
    with GatewayProcess(tmp_path_factory.mktemp("gw"), config, env=UPSTREAM_ENV) as gw:
        yield gw


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def body(endpoint: str, model: str, depth: int) -> bytes:
    """A request whose arrays and objects nest exactly ``depth`` levels (the body itself is level 1),
    with the deep part where the mock serialises it too (messages, prompt, input)."""
    if endpoint == "chat":  # body > messages > message > x
        return b'{"model":"%s","messages":[{"role":"user","content":"hi","x":%s}]}' % (model.encode(), nested(depth - 3))
    field = b"prompt" if endpoint == "completions" else b"input"  # body > prompt > nested
    return b'{"model":"%s","%s":["hi",%s]}' % (model.encode(), field, nested(depth - 2))


def test_the_bodies_nest_as_deep_as_they_say() -> None:
    for endpoint in ROUTES:
        for depth in (253, 254, 255):
            payload = orjson.loads(body(endpoint, "m", depth))
            if depth <= LIMIT:
                orjson.dumps(payload)
            else:
                with pytest.raises(orjson.JSONEncodeError):
                    orjson.dumps(payload)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("target", ["up", "mock"])
@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_nesting_is_forwarded_up_to_the_limit_and_refused_beyond(
    gateway: GatewayProcess, upstream: FakeOpenAI, endpoint: str, target: str, depth: int
) -> None:
    upstream.clear()
    model = f"{target}-{endpoint}"
    response = httpx.post(gateway.url + ROUTES[endpoint], content=body(endpoint, model, depth), headers=AUTH, timeout=30)
    assert "Traceback" not in response.text
    if depth <= LIMIT:
        assert response.status_code == 200, response.text
        assert len(upstream.requests) == (1 if target == "up" else 0)
        return
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    assert "254 levels" in error["message"]
    assert upstream.requests == []  # refused before any upstream attempt


def test_deep_streamed_request_is_refused_the_same(gateway: GatewayProcess, upstream: FakeOpenAI) -> None:
    upstream.clear()
    raw = b'{"model":"up-chat","stream":true,"messages":[{"role":"user","content":"hi"}],"tools":%s}' % nested(300)
    response = httpx.post(gateway.url + "/v1/chat/completions", content=raw, headers=AUTH, timeout=30)
    assert response.status_code == 400 and "254 levels" in response.json()["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(("depth", "status"), [(32, 201), (33, 400), (300, 400), (1000, 400)])
def test_key_metadata_nesting_is_bounded(gateway: GatewayProcess, depth: int, status: int) -> None:
    raw = b'{"name":"deep","metadata":{"a":%s}}' % nested(depth - 1)  # metadata is level 1
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
        response = http.post("/admin/keys", content=raw)
        assert response.status_code == status, response.text
        if status == 400:
            assert response.json()["error"]["param"] == "metadata" and "32 levels" in response.json()["error"]["message"]
        listing = http.get("/admin/keys", params={"limit": 100})
        assert listing.status_code == 200, listing.text  # a stored key is always listable
