"""Admin routes: credentials (state, traffic, never the secret), safe rotation with a retiring key,
several keys per provider, cache purge, and the master key they require."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from faregate.types import fingerprint
from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
KEYS = {"KEY_NEW": "sk-admin-new-aaaa", "KEY_OLD": "sk-admin-old-bbbb", "KEY_TWO": "sk-admin-two-cccc"}
Start = Callable[..., GatewayProcess]


def two_keys(upstream: str, second: str, strategy: str = "round_robin") -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {upstream}
    credential_strategy: {strategy}
    credentials:
      - {{id: new, key: "${{KEY_NEW}}"}}
      - {second}
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
  flaky:
    - {{provider: up, model: flaky-model}}
"""


def ask(http: httpx.Client, model: str = "m") -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Hi"}]})


def credentials(http: httpx.Client) -> dict[str, dict[str, object]]:
    body = http.get("/admin/credentials").json()
    return {row["id"]: row for row in body["credentials"]}


def test_retiring_key_takes_no_traffic_while_another_is_healthy(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_keys(fake.url, '{id: old, key: "${KEY_OLD}", retiring: true}'), env=KEYS)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        for _ in range(10):
            assert ask(http).headers["x-faregate-credential"] == f"up/new:{fingerprint(KEYS['KEY_NEW'])}"
        rows = credentials(http)
        assert rows["old"]["state"] == "retiring" and rows["old"]["requests_since_load"] == 0
        assert rows["new"]["state"] == "active" and rows["new"]["requests_since_load"] == 10
        assert rows["old"]["fingerprint"] == f"up/old:{fingerprint(KEYS['KEY_OLD'])}"
        raw = http.get("/admin/credentials").text
        assert all(secret not in raw for secret in KEYS.values())
        # the healthy key is rejected by the provider: the retiring one takes over, on the same request
        fake.enqueue(errors.invalid_api_key())
        r = ask(http)
        assert r.status_code == 200 and r.headers["x-faregate-credential"].startswith("up/old:")
        rows = credentials(http)
        assert rows["new"]["state"] == "rejected" and "401" in str(rows["new"]["reason"])
    assert {r.api_key for r in fake.requests} == {KEYS["KEY_NEW"], KEYS["KEY_OLD"]}


def test_round_robin_and_per_key_429_cooldown(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_keys(fake.url, '{id: two, key: "${KEY_TWO}"}'), env=KEYS)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        for _ in range(6):
            assert ask(http).status_code == 200
        assert [r.api_key for r in fake.requests] == [KEYS["KEY_NEW"], KEYS["KEY_TWO"]] * 3
        fake.clear()
        fake.enqueue(errors.rate_limited(retry_after=30))
        r = ask(http)
        assert r.status_code == 200  # the same deployment, with the other key
        limited = fake.requests[0].api_key
        rows = credentials(http)
        cooling = [row for row in rows.values() if row["state"] == "cooling"]
        assert len(cooling) == 1 and "429" in str(cooling[0]["reason"])
        for _ in range(4):
            assert ask(http).status_code == 200
        assert all(req.api_key != limited for req in fake.requests[1:])


def test_cache_purge_drops_cooldowns_and_reports_every_worker(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_keys(fake.url, '{id: two, key: "${KEY_TWO}"}'), env=KEYS, workers=2)
    fake.set_rule("flaky-model", errors.server_error())
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        deadline = time.monotonic() + 15
        while len([w for w in http.get("/admin/workers").json()["workers"] if w["live"]]) < 2:  # both workers up
            assert time.monotonic() < deadline, "the second worker did not register"
            time.sleep(0.1)
        for _ in range(8):
            ask(http, "flaky")
        assert "cooling down" in ask(http, "flaky").json()["error"]["message"]
        fake.clear()
        purge = http.post("/cache/purge")
        assert purge.status_code == 200, purge.text
        body = purge.json()
        assert body["ok"] is True and len(body["workers"]) == 2
        assert all(w["on_new_generation"] for w in body["workers"])
        assert ask(http, "flaky").status_code == 200  # no worker remembers the cooldown


def test_admin_routes_need_the_master_key(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(two_keys(fake.url, '{id: two, key: "${KEY_TWO}"}'), env=KEYS)
    for method, path in (("POST", "/admin/reload"), ("GET", "/admin/workers"), ("GET", "/admin/credentials"), ("POST", "/cache/purge")):
        r = httpx.request(method, gw.url + path, headers={"authorization": "Bearer sk-wrong"})
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "invalid_api_key"
    bad = httpx.post(gw.url + "/admin/reload", headers=AUTH, json={"timeout": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "timeout"
    workers = httpx.get(gw.url + "/admin/workers", headers=AUTH).json()
    assert workers["bus"] == "ok" and len(workers["workers"]) == 1
    assert all(secret not in str(workers) for secret in KEYS.values())
