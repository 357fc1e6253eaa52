"""GET /admin/deployments: every deployment's state (healthy, cooling down, misconfigured,
disabled, at its own rate limit) with its reason, its traffic summed over every live worker, and
probes whose verdict on a model reaches every worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from faregate.health import RECENT
from faregate.store.base import DeploymentProbed, WorkerInfo, decode_event, encode_event
from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
Start = Callable[..., GatewayProcess]
MODELS = """
  m:
    - {provider: up, model: gpt-4o-mini, priority: 0}
    - {provider: up, model: gpt-4o, weight: 0}
  also:
    - {provider: up, model: gpt-4o-mini}
  flaky:
    - {provider: up, model: flaky-model, priority: 2, weight: 3}
  limited:
    - {provider: up, model: gpt-4o-mini-2024-07-18, rpm: 1}
  typo:
    - {provider: up, model: gpt4o}"""


def ask(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "Hi"}]})


def listing(http: httpx.Client) -> dict[str, Any]:
    r = http.get("/admin/deployments")
    assert r.status_code == 200, r.text
    for secret in (UPSTREAM_KEY, MASTER_KEY):
        assert secret.encode() not in r.content + b"".join(k + v for k, v in r.headers.raw)
    body: dict[str, Any] = r.json()
    return body


def rows(http: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["model"], d["label"]): d for d in listing(http)["deployments"]}


def test_each_state_with_its_reason(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), MODELS), env=UPSTREAM_ENV)
    fake.set_rule("flaky-model", errors.server_error())
    fake.set_rule("gpt4o", errors.model_not_found("gpt4o"))
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        for _ in range(4):
            assert ask(http, "m").status_code == 200
        for _ in range(3):  # cooldown: {failures: 3, seconds: 30}
            assert ask(http, "flaky").status_code == 503
        assert ask(http, "limited").status_code == 200
        assert ask(http, "limited").status_code == 429  # rpm: 1
        probe = http.post(f"/admin/deployments/{quote('up/gpt4o', safe='')}/probe")
        assert probe.status_code == 200 and probe.json()["probe"]["result"] == "model_not_found", probe.text
        body = listing(http)
        table = {(d["model"], d["label"]): d for d in body["deployments"]}
    assert body["workers_counted"] == 1 and body["generation"]
    assert list(table) == [
        ("m", "up/gpt-4o-mini"),
        ("m", "up/gpt-4o"),
        ("also", "up/gpt-4o-mini"),  # a deployment served for two models: once per model
        ("flaky", "up/flaky-model"),
        ("limited", "up/gpt-4o-mini-2024-07-18"),
        ("typo", "up/gpt4o"),
    ]
    ok = table["m", "up/gpt-4o-mini"]
    assert (ok["state"], ok["reason"], ok["successes"], ok["errors"]) == ("healthy", None, 4, 0)
    assert ok["latency_ms"]["samples"] == 4 and 0 <= ok["latency_ms"]["p50"] <= ok["latency_ms"]["p95"]
    assert ok["price"] is not None and ok["price"]["input"] > 0 and ok["type"] == "openai" and ok["provider"] == "up"
    assert table["also", "up/gpt-4o-mini"]["successes"] == 4  # health is the deployment's, whichever model asked
    off = table["m", "up/gpt-4o"]
    assert off["state"] == "disabled" and "weight 0" in off["reason"] and off["weight"] == 0 and off["successes"] == 0
    cooling = table["flaky", "up/flaky-model"]
    assert cooling["state"] == "cooling_down" and "3 consecutive failures" in cooling["reason"] and "500" in cooling["reason"]
    assert cooling["until"] > time.time() and cooling["errors"] == 3 and "500" in cooling["last_error"]
    assert (cooling["priority"], cooling["weight"], cooling["price"]) == (2, 3, None)
    limited = table["limited", "up/gpt-4o-mini-2024-07-18"]
    assert limited["state"] == "rate_limited" and "rpm/tpm" in limited["reason"] and limited["until"] > time.time()
    typo = table["typo", "up/gpt4o"]
    assert typo["state"] == "misconfigured" and "gpt4o" in typo["reason"] and "gpt-4o" in typo["closest"]
    assert typo["upstream_model"] == "gpt4o"
    assert [w["state"] for w in typo["workers"]] == ["misconfigured"]


def every_worker(http: httpx.Client, state: str, deadline: float) -> bool:
    """Until both workers show ``up/gpt4o`` in ``state`` (True), or the deadline passes (False)."""
    while time.monotonic() < deadline:
        row = rows(http)["typo", "up/gpt4o"]
        if row["state"] == state and [w["state"] for w in row["workers"]] == [state, state]:
            return True
        time.sleep(0.05)
    return False


def test_counts_are_summed_over_two_workers_and_a_probe_reaches_both(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), MODELS), env=UPSTREAM_ENV, workers=2)
    fake.known_models = frozenset({"gpt-4o-mini"})  # it lists and serves only this one (for now)
    sent = 0

    def one(_: int) -> int:
        with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:  # a new connection: any worker may take it
            return ask(http, "m").status_code

    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http, ThreadPoolExecutor(8) as pool:
        deadline = time.monotonic() + 90
        while True:  # until each worker has served some (the kernel chooses which takes a connection)
            assert all(status == 200 for status in pool.map(one, range(8)))
            sent += 8
            row = rows(http)["m", "up/gpt-4o-mini"]
            if len(row["workers"]) == 2 and all(w["successes"] > 0 for w in row["workers"]):
                break
            assert time.monotonic() < deadline, row
        while (row := rows(http)["m", "up/gpt-4o-mini"])["successes"] < sent:  # the other worker's next heartbeat
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        body = listing(http)
        assert body["workers_counted"] == 2
        assert row["successes"] == sent == sum(w["successes"] for w in row["workers"])
        assert row["latency_ms"]["samples"] == sum(min(w["successes"], RECENT) for w in row["workers"])

        # a probe finds gpt4o missing: every worker takes it out of traffic (the answer waits up to 2 s for
        # each to confirm it; a loaded machine may take longer, so the registry is watched here)
        label = quote("up/gpt4o", safe="")
        missing = http.post(f"/admin/deployments/{label}/probe").json()
        assert missing["probe"]["result"] == "model_not_found" and set(missing["shared"]) == {"ok", "laggards"}, missing
        assert every_worker(http, "misconfigured", deadline)
        fake.clear()
        for _ in range(4):
            r = ask(http, "typo")
            assert r.status_code == 503 and "up/gpt4o" in r.json()["error"]["message"]
        assert fake.count("gpt4o") == 0
        # the provider now serves it: one probe that succeeds gives it back to every worker
        fake.known_models = frozenset({"gpt-4o-mini", "gpt4o"})
        found = http.post(f"/admin/deployments/{label}/probe").json()
        assert found["probe"]["result"] == "ok", found
        assert every_worker(http, "healthy", deadline)
        assert all(ask(http, "typo").status_code == 200 for _ in range(4))


def test_heartbeats_without_deployments_still_decode_and_probe_events_travel() -> None:
    old = b'{"id": "h/1", "instance": "h", "pid": 1, "generation": "g", "credentials": [], "started": 1.0, "heartbeat": 2.0}'
    assert WorkerInfo.decode(old).deployments == {}
    event = DeploymentProbed("up/gpt4o", False, "probe: no such model", ("gpt-4o",), origin="h/1")
    assert decode_event(encode_event(event)) == event
