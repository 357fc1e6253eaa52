"""HTTP details real clients rely on, through a real `faregate serve` and the `openai` SDK: HEAD on
the health routes, `GET /v1/models/{id}`, auth before "unknown URL", and metrics labels that a
client cannot multiply."""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
providers:
  local: {type: mock, chunk_delay: 0}
models:
  chat-small:
    - {provider: local, model: mock-small}
  hidden:
    - {provider: local, model: mock-hidden}
  team/llama-3:
    - {provider: local, model: mock-llama}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def virtual_key(gateway: GatewayProcess) -> str:
    """A virtual key that may use chat-small and team/* only."""
    created = httpx.post(gateway.url + "/admin/keys", headers=AUTH, json={"name": "edges", "models": ["chat-small", "team/*"]}, timeout=20)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def sdk(gateway: GatewayProcess, key: str = MASTER_KEY, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + base, api_key=key, max_retries=0, timeout=20)


# -- HEAD on /healthz and /readyz -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_routes_sends_headers_only(gateway: GatewayProcess, path: str) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        got = http.get(path)
        head = http.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == "application/json"
        assert http.get(path).json() == got.json()  # the same connection, still in step
    # on the wire: nothing follows the HEAD answer's headers but the next answer
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(got.content)


def test_other_methods_on_health_routes_are_405(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.url + "/healthz")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"


# -- GET /v1/models/{id} --------------------------------------------------------------------------


def test_models_retrieve_with_the_sdk(gateway: GatewayProcess, virtual_key: str) -> None:
    model = sdk(gateway).models.retrieve("chat-small")
    assert (model.id, model.object, model.owned_by) == ("chat-small", "model", "faregate")
    listed = {m.id: m.created for m in sdk(gateway).models.list()}
    assert model.created == listed["chat-small"]
    assert sdk(gateway).models.retrieve("team/llama-3").id == "team/llama-3"  # the SDK sends team%2Fllama-3
    assert sdk(gateway, base="").models.retrieve("chat-small").id == "chat-small"  # a bare base URL
    assert sdk(gateway, virtual_key).models.retrieve("team/llama-3").id == "team/llama-3"


def test_models_retrieve_reveals_nothing_the_key_may_not_use(gateway: GatewayProcess, virtual_key: str) -> None:
    errors = {}
    for name in ("hidden", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(gateway, virtual_key).models.retrieve(name)
        body = caught.value.body
        assert isinstance(body, dict) and body["code"] == "model_not_found" and body["type"] == "invalid_request_error"
        errors[name] = body["message"].replace(name, "NAME")
    assert errors["hidden"] == errors["no-such-model"]  # a model the key may not use looks like one that does not exist
    assert sdk(gateway).models.retrieve("hidden").id == "hidden"  # the master key may use every model
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-fg-nope").models.retrieve("chat-small")
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-fg-nope").models.retrieve("no-such-model")
    wrong_method = httpx.delete(gateway.url + "/v1/models/chat-small", headers=AUTH)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"


# -- auth before "unknown URL" --------------------------------------------------------------------

PROXIED_UNKNOWN = ["/v1/chat/completionz", "/v1/whatever", "/v1/chat/completions/", "/chat/completionz", "/embeddings/x"]
ADMIN_UNKNOWN = ["/admin/nope", "/admin/keysx", "/cache/nope"]


@pytest.mark.parametrize("path", PROXIED_UNKNOWN)
def test_unknown_proxied_route_needs_a_valid_key_before_it_is_called_unknown(gateway: GatewayProcess, virtual_key: str, path: str) -> None:
    for method in ("GET", "POST"):
        for headers in ({}, {"authorization": "Bearer sk-fg-wrong"}, {"x-api-key": "sk-wrong"}):
            refused = httpx.request(method, gateway.url + path, headers=headers, content=b"{}")
            assert refused.status_code == 401, (method, path, headers)
            assert refused.json()["error"]["code"] == "invalid_api_key"
        for key in (MASTER_KEY, virtual_key):
            unknown = httpx.request(method, gateway.url + path, headers={"authorization": f"Bearer {key}"}, content=b"{}")
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


@pytest.mark.parametrize("path", ADMIN_UNKNOWN)
def test_unknown_admin_route_needs_the_master_key_before_it_is_called_unknown(gateway: GatewayProcess, virtual_key: str, path: str) -> None:
    for key in ("sk-fg-wrong", virtual_key):
        assert httpx.get(gateway.url + path, headers={"authorization": f"Bearer {key}"}).status_code == 401
    assert httpx.get(gateway.url + path).status_code == 401
    unknown = httpx.get(gateway.url + path, headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"


def test_paths_outside_the_api_are_plain_404(gateway: GatewayProcess) -> None:
    for path in ("/", "/favicon.ico", "/V1/CHAT/COMPLETIONS", "//v1/chat/completions"):
        assert httpx.get(gateway.url + path).status_code == 404, path


# -- metrics cardinality --------------------------------------------------------------------------


def _requests_total(metrics: str, model: str, status: str) -> float:
    pattern = rf'^faregate_requests_total\{{model="{re.escape(model)}",deployment="-",status="{status}",format="openai_chat",provider_type="-"\}} (\S+)$'
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_client_chosen_model_names_share_one_metrics_label(gateway: GatewayProcess, virtual_key: str) -> None:
    before = httpx.get(gateway.url + "/metrics").text
    names = [f"made-up-{secrets.token_hex(6)}" for _ in range(5)]
    for name in names:
        with pytest.raises(openai.NotFoundError):
            sdk(gateway).chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError):  # configured, but not for this key: its own (bounded) label
        sdk(gateway, virtual_key).chat.completions.create(model="hidden", messages=[{"role": "user", "content": "hi"}])
    sdk(gateway).chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "hi"}])
    after = httpx.get(gateway.url + "/metrics").text
    for name in names:
        assert name not in after
    assert _requests_total(after, "(unknown)", "404") - _requests_total(before, "(unknown)", "404") == 5
    assert _requests_total(after, "hidden", "403") - _requests_total(before, "hidden", "403") == 1
    assert (
        'faregate_requests_total{model="chat-small",deployment="local/mock-small",status="200",format="openai_chat",provider_type="mock"}'
        in after
    )
    assert 'faregate_request_duration_seconds_count{model="(unknown)",format="openai_chat",provider_type="-"}' in after
