"""POST /admin/deployments/{label}/probe against real gateways and the fake upstreams: each outcome
named (ok, credential rejected, model not found with the closest names, quota, rate limit,
unreachable, timeout, error), the cheapest request (a listing, else one 1-token request), and no
secret in any answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from faregate.types import fingerprint
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI, errors
from tests.fakes.openai_wire import error_behaviour
from tests.support.configs import UPSTREAM_KEY
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
ANTHROPIC_KEY = "sk-ant-CANARY-probe-0c9e8d7f6a5b"
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "ANT_KEY": ANTHROPIC_KEY}
SECRETS = (UPSTREAM_KEY, ANTHROPIC_KEY, MASTER_KEY)


def probe_config(openai_url: str, anthropic_url: str, dead_url: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {openai_url}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 5
    connect_timeout: 2
  ant:
    type: anthropic
    base_url: {anthropic_url}
    credentials: [{{id: main, key: "${{ANT_KEY}}"}}]
  dead:
    type: openai
    base_url: {dead_url}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    connect_timeout: 2
  local: {{type: mock}}
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
  typo:
    - {{provider: up, model: gpt4o-mini}}
  claude:
    - {{provider: ant, model: claude-opus-4-7}}
  claude-alias:
    - {{provider: ant, model: claude-haiku-4-5}}
  claude-typo:
    - {{provider: ant, model: claude-hiaku-4-5-20251001}}
  gone:
    - {{provider: dead, model: gpt-4o-mini}}
  echo:
    - {{provider: local, model: echo}}
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeAnthropic]]:
    with FakeOpenAI() as fake, FakeAnthropic() as fake_anthropic:
        yield fake, fake_anthropic


@pytest.fixture(scope="module")
def gateway(upstreams: tuple[FakeOpenAI, FakeAnthropic], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    fake, fake_anthropic = upstreams
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    tmp: Path = tmp_path_factory.mktemp("probe")
    with GatewayProcess(tmp, probe_config(fake.url, fake_anthropic.url, dead), env=ENV) as gw:
        yield gw


@pytest.fixture
def fake(upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> Iterator[FakeOpenAI]:
    upstreams[0].clear()
    yield upstreams[0]
    upstreams[0].clear()


@pytest.fixture
def fake_anthropic(upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> Iterator[FakeAnthropic]:
    upstreams[1].clear()
    yield upstreams[1]
    upstreams[1].clear()
    upstreams[1].known_models = None


def probe(gw: GatewayProcess, label: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    r = httpx.post(f"{gw.url}/admin/deployments/{quote(label, safe='')}/probe", json=body, headers=headers or AUTH, timeout=30)
    raw = r.content + b"".join(k + b": " + v for k, v in r.headers.raw)
    for secret in SECRETS:
        assert secret.encode() not in raw, f"a secret is in the answer to the probe of {label}"
    return r


def result(gw: GatewayProcess, label: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = probe(gw, label, body)
    assert r.status_code == 200, r.text
    assert r.json()["deployment"] == label
    found: dict[str, Any] = r.json()["probe"]
    assert set(found) == {"result", "message", "closest", "method", "credential", "latency_ms"}
    return found


def test_a_listed_model_is_ok_with_one_free_listing(gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    found = result(gateway, "up/gpt-4o-mini")
    assert found["result"] == "ok" and found["method"] == "models_list", found
    assert found["credential"] == f"up/main:{fingerprint(UPSTREAM_KEY)}"
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models")]  # one request, and a free one
    assert fake.requests[0].api_key == UPSTREAM_KEY  # the provider's auth, as traffic sends it


def test_a_server_without_a_listing_gets_one_1_token_request(gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.enqueue(error_behaviour(404, "Invalid URL (GET /v1/models)", "invalid_request_error"))
    found = result(gateway, "up/gpt-4o-mini")
    assert found["result"] == "ok" and found["method"] == "completion", found
    listing, completion = fake.requests
    assert (listing.method, listing.path, completion.path) == ("GET", "/v1/models", "/v1/chat/completions")
    assert completion.json["max_tokens"] == 1 and completion.json["model"] == "gpt-4o-mini"


def test_a_misnamed_model_is_not_found_with_the_closest_listed_names(gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.set_rule("gpt4o-mini", errors.model_not_found("gpt4o-mini"))
    found = result(gateway, "up/gpt4o-mini")
    assert found["result"] == "model_not_found", found
    assert found["closest"][0] == "gpt-4o-mini" and "gpt-4o-mini" in found["message"]
    # the listing lacked it, and the provider's own answer on that model confirmed it
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/chat/completions"]
    rows = httpx.get(gateway.url + "/admin/deployments", headers=AUTH).json()["deployments"]
    row = next(r for r in rows if r["label"] == "up/gpt4o-mini")
    assert row["state"] == "misconfigured" and row["closest"][0] == "gpt-4o-mini" and "gpt4o-mini" in row["reason"]
    # the gateway now refuses the misnamed model itself, naming the deployment, without calling the provider
    fake.clear()
    r = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "typo", "messages": [{"role": "user", "content": "hi"}]}, headers=AUTH
    )
    assert r.status_code >= 400 and "up/gpt4o-mini" in r.text and fake.count() == 0
    # a model listed nowhere but that answers is never called missing: listings leave out names that work
    fake.set_rule("gpt4o-mini", Behaviour())
    found = result(gateway, "up/gpt4o-mini")
    assert found["result"] == "ok" and found["method"] == "completion" and "listing" in found["message"], found
    assert result(gateway, "up/gpt4o-mini")["result"] == "ok"
    rows = httpx.get(gateway.url + "/admin/deployments", headers=AUTH).json()["deployments"]
    assert next(r for r in rows if r["label"] == "up/gpt4o-mini")["state"] == "healthy"


@pytest.mark.parametrize(
    ("behaviour", "expected", "words"),
    [
        (errors.invalid_api_key(), "credential_rejected", "401"),
        (errors.permission_denied(), "credential_rejected", "403"),
        (errors.insufficient_quota(), "quota_exhausted", "insufficient_quota"),
        (errors.rate_limited(retry_after=7), "rate_limited", "retry after 7s"),
        (errors.server_error(), "error", "500"),
        (errors.echo_key(500), "error", "[redacted:"),  # a careless upstream repeats the key: scrubbed
        (Behaviour(status=200, body=b"<html>", headers={"content-type": "text/html"}), "error", ""),
    ],
)
def test_each_failure_is_named(gateway: GatewayProcess, fake: FakeOpenAI, behaviour: Behaviour, expected: str, words: str) -> None:
    fake.enqueue(behaviour, behaviour)
    found = result(gateway, "up/gpt-4o-mini")
    assert found["result"] == expected and words in found["message"], found
    assert len(fake.requests) <= 2


def test_a_probe_that_times_out(gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    """The upstream holds its reply until the test lets it go: the probe's own timeout ends it."""
    held = threading.Event()
    fake.enqueue(Behaviour(release=held))
    try:
        found = result(gateway, "up/gpt-4o-mini", {"timeout": 0.3})
    finally:
        held.set()
    assert found["result"] == "timeout" and "0.3s" in found["message"], found


def test_an_unreachable_provider(gateway: GatewayProcess) -> None:
    found = result(gateway, "dead/gpt-4o-mini")
    assert found["result"] == "unreachable" and "cannot connect" in found["message"], found


def test_anthropic_pages_through_the_listing_with_its_own_auth(gateway: GatewayProcess, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.page_size = 1  # three models, one per page: the last is found on the third
    found = result(gateway, "ant/claude-opus-4-7")
    assert found["result"] == "ok" and found["method"] == "models_list", found
    pages = fake_anthropic.requests
    assert [r.path.split("?")[0] for r in pages] == ["/v1/models"] * 3
    assert "after_id=claude-sonnet-4-6" in pages[1].path
    assert all(r.x_api_key == ANTHROPIC_KEY and r.version for r in pages)


def test_anthropic_alias_not_listed_answers_and_typo_is_named(gateway: GatewayProcess, fake_anthropic: FakeAnthropic) -> None:
    found = result(gateway, "ant/claude-haiku-4-5")  # an alias: the Models API lists only dated ids
    assert found["result"] == "ok" and found["method"] == "completion", found
    assert fake_anthropic.requests[-1].json["max_tokens"] == 1
    fake_anthropic.known_models = frozenset({"claude-haiku-4-5-20251001"})
    found = result(gateway, "ant/claude-hiaku-4-5-20251001")
    assert found["result"] == "model_not_found" and found["closest"][0] == "claude-haiku-4-5-20251001", found


def test_a_local_provider_is_ok_without_a_request(gateway: GatewayProcess) -> None:
    found = result(gateway, "local/echo")
    assert found["result"] == "ok" and found["method"] == "local" and found["credential"] is None


def test_refusals_unknown_label_bad_body_wrong_method_and_key(gateway: GatewayProcess) -> None:
    unknown = probe(gateway, "up/nope#2")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "deployment_not_found"
    assert "up/nope#2" in unknown.json()["error"]["message"]
    bad = probe(gateway, "up/gpt-4o-mini", {"timeout": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "timeout"
    wrong = httpx.get(f"{gateway.url}/admin/deployments/up%2Fgpt-4o-mini/probe", headers=AUTH)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    for path in ("/admin/deployments/up%2Fgpt-4o-mini/probe", "/admin/deployments/nothing/here"):
        refused = httpx.post(gateway.url + path, headers={"authorization": "Bearer sk-not-the-master"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(gateway.url + "/admin/deployments", headers={"authorization": "Bearer sk-x"}).status_code == 401
