"""CORS (`server.cors`) through a real `faregate serve`, the way a browser asks: preflights, actual
answers (success and error) readable by listed origins only, credentials never with `*`, reloads
that change the origins, and no CORS at all (not even a wrapper) when it is off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from faregate.gateway import Gateway
from faregate.server.app import build_app
from faregate.server.cors import Cors
from faregate.server.middleware import ErrorGuard
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
APP = "https://app.example.com"
LOCAL = "http://localhost:3000"
EVIL = "https://evil.example.net"
Start = Callable[..., GatewayProcess]


def config(cors: str = "") -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}{cors}
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  m:
    - {{provider: local, model: mock-small}}
"""


WITH_CREDENTIALS = config(f'\n  cors: {{origins: ["{APP}", "{LOCAL}"], allow_credentials: true, max_age: 600}}')
ANY_ORIGIN = config('\n  cors: {origins: ["*"]}')
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), WITH_CREDENTIALS) as gw:
        yield gw


def preflight(gw: GatewayProcess, origin: str, path: str = "/v1/chat/completions", asked: str | None = None) -> httpx.Response:
    headers = {"origin": origin, "access-control-request-method": "POST"}
    if asked is not None:
        headers["access-control-request-headers"] = asked
    return httpx.options(gw.url + path, headers=headers, timeout=10)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_preflight_from_a_listed_origin(gateway: GatewayProcess) -> None:
    gw = gateway
    asked = "authorization, content-type, x-stainless-os, openai-beta"
    response = preflight(gw, APP, asked=asked)  # no key: browsers send none on a preflight
    assert response.status_code == 204 and response.content == b""
    assert response.headers["access-control-allow-origin"] == APP  # the origin itself, never * with credentials
    assert response.headers["access-control-allow-credentials"] == "true"
    assert {"POST", "GET", "OPTIONS"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert response.headers["access-control-allow-headers"] == asked
    assert response.headers["access-control-max-age"] == "600"
    assert "Origin" in response.headers["vary"]
    fixed = preflight(gw, LOCAL, path="/v1/models").headers["access-control-allow-headers"]
    for name in ("authorization", "content-type", "x-api-key", "anthropic-version", "openai-beta"):
        assert name in fixed
    odd = preflight(gw, APP, asked="x-ok, <script>:1")  # not a list of header names: the fixed list instead
    assert odd.status_code == 204 and odd.headers["access-control-allow-headers"] == fixed


def test_preflight_from_an_origin_not_listed_is_refused(gateway: GatewayProcess) -> None:
    gw = gateway
    for origin in (EVIL, APP + ":8443", "http://app.example.com", "null", APP + ".evil.net"):
        response = preflight(gw, origin)
        assert response.status_code == 403, origin
        assert cors_headers(response) == {}
        assert response.json()["error"]["code"] == "origin_not_allowed"


def test_answers_to_a_listed_origin_are_readable_and_expose_faregate_headers(gateway: GatewayProcess) -> None:
    gw = gateway
    ok = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, "origin": APP}, timeout=20)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == APP
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in ok.headers["vary"]
    exposed = {h.strip() for h in ok.headers["access-control-expose-headers"].split(",")}
    faregate_headers = {name for name in ok.headers if name.startswith("x-")}
    assert "x-faregate-request-id" in faregate_headers and faregate_headers <= exposed
    streamed = httpx.post(gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers={**AUTH, "origin": LOCAL}, timeout=20)
    assert streamed.status_code == 200 and streamed.headers["access-control-allow-origin"] == LOCAL
    assert streamed.text.rstrip().endswith("data: [DONE]")
    refused = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-x", "origin": APP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP  # the page can read why
    assert httpx.get(gw.url + "/healthz", headers={"origin": APP}).headers["access-control-allow-origin"] == APP


def test_answers_to_other_origins_or_without_origin_carry_no_cors(gateway: GatewayProcess) -> None:
    gw = gateway
    for headers in ({"origin": EVIL}, {}):
        response = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, **headers}, timeout=20)
        assert response.status_code == 200 and cors_headers(response) == {}
    plain_options = httpx.options(gw.url + "/v1/chat/completions", headers={"origin": APP})  # not a preflight
    assert plain_options.status_code == 405


def test_any_origin_without_credentials(gateways: Start) -> None:
    gw = gateways(ANY_ORIGIN)
    response = preflight(gw, EVIL, asked="authorization")
    assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    ok = httpx.get(gw.url + "/v1/models", headers={**AUTH, "origin": EVIL})
    assert ok.headers["access-control-allow-origin"] == "*" and "access-control-allow-credentials" not in ok.headers


@pytest.mark.parametrize(
    ("cors", "needle"),
    [
        ('{origins: ["*"], allow_credentials: true}', "allow_credentials cannot be used with origins ['*']"),
        ('{origins: ["*", "https://a.example"]}', "list it alone"),
        ('{origins: ["https://a.example/"]}', "is not an origin"),
        ('{origins: ["https://a.example/app"]}', "is not an origin"),
        ('{origins: ["HTTPS://A.EXAMPLE"]}', "lower case"),
        ('{origins: ["null"]}', "is not an origin"),
        ("{origins: []}", "at least 1 item"),
        ('{origins: ["https://a.example"], max_age: -1}', "greater than or equal to 0"),
    ],
)
def test_check_refuses_a_bad_cors_setting(tmp: Path, cors: str, needle: str) -> None:
    path = tmp / "faregate.yaml"
    path.write_text(config(f"\n  cors: {cors}"))
    result = run_cli("check", "-c", str(path), env={"FAREGATE_MASTER_KEY": MASTER_KEY})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "server.cors" in result.stdout + result.stderr and needle in result.stdout + result.stderr


def _reload(gw: GatewayProcess, text: str) -> dict[str, object]:
    gw.config_path.write_text(text)
    response = httpx.post(gw.url + "/admin/reload", headers=AUTH, json={"timeout": 20}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["ok"] is True
    return body


def test_a_reload_changes_the_origins_on_every_worker_or_turns_cors_off(gateways: Start) -> None:
    gw = gateways(WITH_CREDENTIALS, workers=2)
    assert preflight(gw, APP).status_code == 204
    _reload(gw, config('\n  cors: {origins: ["https://other.example"]}'))
    for _ in range(6):  # several connections: whichever worker answers
        assert preflight(gw, APP).status_code == 403
        assert preflight(gw, "https://other.example").headers["access-control-allow-origin"] == "https://other.example"
    _reload(gw, config())
    for _ in range(6):
        off = preflight(gw, "https://other.example")
        assert off.status_code == 405 and cors_headers(off) == {}


def test_turning_cors_on_by_reload_asks_for_a_restart(gateways: Start) -> None:
    gw = gateways(config())
    assert preflight(gw, APP).status_code == 405
    body = _reload(gw, WITH_CREDENTIALS)
    assert any("server.cors" in str(w) and "restart" in str(w) for w in body["warnings"])  # type: ignore[attr-defined]
    assert cors_headers(preflight(gw, APP)) == {}
    assert "server.cors" in gw.logs() and "restart" in gw.logs()


def test_the_app_is_not_wrapped_when_cors_is_off(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAREGATE_MASTER_KEY", MASTER_KEY)
    monkeypatch.chdir(tmp)
    off, on = tmp / "off.yaml", tmp / "on.yaml"
    off.write_text(config())
    on.write_text(WITH_CREDENTIALS)
    assert type(build_app(Gateway(off))) is ErrorGuard
    assert type(build_app(Gateway(on))) is Cors
