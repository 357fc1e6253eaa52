"""Budgets that cannot be overspent: the maximum cost is reserved atomically before a request
runs and settled with the real cost afterwards, across workers, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def budget_config(database: str | None) -> str:
    state = f"\nstate:\n  database: {database}" if database else ""
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}{state}
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  m:
    - {{provider: local, model: mock-small}}
  free:
    - {{provider: local, model: mock-unpriced}}
prices:
  mock-small: {{input: 1000.0, output: 1000.0}}
"""


def run_budget(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        probe = http.post("/admin/keys", json={"name": "probe"}).json()["key"]
        r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {probe}"}, json=BODY)
        unit = float(r.headers["x-faregate-cost-usd"])  # what one such request really costs
        # the reservation is larger than the real cost; a budget of 10 real requests
        created = http.post("/admin/keys", json={"name": "capped", "budget_usd": round(10 * unit, 9), "budget_period": "daily"}).json()
        key = created["key"]

        def one(_: int) -> int:
            return httpx.post(
                gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=BODY, timeout=30
            ).status_code

        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(one, range(200)))
        admitted = statuses.count(200)
        refused = [s for s in statuses if s != 200]
        assert set(refused) <= {429}, set(refused)
        state = {}
        for _ in range(50):  # settlements run right after each response
            state = http.get(f"/admin/keys/{created['id']}").json()
            if state["reserved_usd"] == 0:
                break
            time.sleep(0.1)
        print(
            f"MEASURED budget: {admitted} of 200 admitted (budget fits 10 real requests), spent {state['spent_usd'] / unit:.2f} units, reserved {state['reserved_usd']}"
        )
        assert 1 <= admitted <= 10
        assert state["spent_usd"] <= created["budget_usd"] + 1e-12  # never overspent
        assert state["reserved_usd"] == 0  # no reservation left behind
        assert abs(state["spent_usd"] - admitted * unit) < 1e-9
        with pytest.raises(openai.RateLimitError) as caught:
            openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0).chat.completions.create(**BODY)  # type: ignore[arg-type]
        body = caught.value.body
        assert (
            isinstance(body, dict)
            and body["code"] == "budget_exceeded"
            and created["id"] in body["message"]
            and "limit $" in body["message"]
        )
        unpriced = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json={**BODY, "model": "free"})
        assert unpriced.status_code == 403 and unpriced.json()["error"]["code"] == "model_unpriced"


def run_team_budget(gw: GatewayProcess) -> None:
    """Two keys of one team, no budget of their own; the team's budget fits 10 real requests."""
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        probe = http.post("/admin/keys", json={"name": "probe"}).json()["key"]
        unit = float(
            httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {probe}"}, json=BODY).headers[
                "x-faregate-cost-usd"
            ]
        )
        team = http.post("/admin/teams", json={"name": "research", "budget_usd": round(10 * unit, 9), "budget_period": "monthly"}).json()
        keys = [http.post("/admin/keys", json={"name": f"member-{i}", "team_id": team["id"]}).json()["key"] for i in range(2)]

        def one(i: int) -> tuple[int, str]:
            r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {keys[i % 2]}"}, json=BODY, timeout=30)
            return r.status_code, r.json()["error"]["message"] if r.status_code != 200 else ""

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, range(200)))
        admitted = sum(1 for status, _ in results if status == 200)
        refusals = [message for status, message in results if status != 200]
        assert {status for status, _ in results} <= {200, 429}
        assert all(f"team {team['id']} (monthly)" in message for message in refusals), refusals[:3]
        state: dict[str, float] = {}
        for _ in range(50):
            state = http.get(f"/admin/teams/{team['id']}").json()
            if state["reserved_usd"] == 0:
                break
            time.sleep(0.1)
        print(f"MEASURED team budget: {admitted} of 200 admitted over 2 keys (budget fits 10), spent {state['spent_usd'] / unit:.2f} units")
        assert 1 <= admitted <= 10
        assert state["spent_usd"] <= team["budget_usd"] + 1e-12 and state["reserved_usd"] == 0
        assert abs(state["spent_usd"] - admitted * unit) < 1e-9
        assert state["keys"] == 2


def test_team_budget_across_two_workers_on_sqlite(gateways: Callable[..., GatewayProcess]) -> None:
    run_team_budget(gateways(budget_config(None), workers=2))


def test_team_budget_across_two_workers_on_postgresql(postgres: PostgresServer, gateways: Callable[..., GatewayProcess]) -> None:
    run_team_budget(gateways(budget_config(postgres.url_of(postgres.new_database("team_budget"))), workers=2))


def test_budget_across_two_workers_on_sqlite(gateways: Callable[..., GatewayProcess]) -> None:
    run_budget(gateways(budget_config(None), workers=2))


def test_budget_across_two_workers_on_postgresql(postgres: PostgresServer, gateways: Callable[..., GatewayProcess]) -> None:
    run_budget(gateways(budget_config(postgres.url_of(postgres.new_database("key_budget"))), workers=2))


def test_an_abandoned_stream_is_charged_not_free(gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(budget_config(None).replace("{type: mock, chunk_delay: 0}", "{type: mock, chunk_delay: 0.2, stream_chunks: 20}"))
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        created = http.post("/admin/keys", json={"name": "streamer", "budget_usd": 1000}).json()
        body = {**BODY, "stream": True}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {created['key']}"}) as r:
            assert next(r.iter_lines()).startswith("data:")  # then the client goes away
        state: dict[str, float] = {}
        for _ in range(50):
            state = http.get(f"/admin/keys/{created['id']}").json()
            if state["reserved_usd"] == 0 and state["spent_usd"] > 0:
                break
            time.sleep(0.1)
        assert state["reserved_usd"] == 0 and state["spent_usd"] > 0, state  # the unknown usage is charged at its reservation
