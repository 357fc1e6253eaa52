"""Usage an upstream reports that cannot be true (issue 9, item 22): negative counts never refund
a budget, absurd ones never crash the log line or count 1e300 tokens; the request is priced at its
reservation, its cost is recorded as unknown (never negative), and the anomaly is logged."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from faregate.limits import max_cost
from faregate.types import Price
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

Start = Callable[..., GatewayProcess]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
PRICE = Price(input=1000.0, output=1000.0)
RESERVATION = max_cost(BODY, PRICE)  # what admission reserves for BODY at this price
DEPLOYMENT = "up/gpt-4o-mini"


@pytest.fixture
def gw(fake: FakeOpenAI, gateways: Start) -> GatewayProcess:
    prices = "\n  gpt-4o-mini: {input: 1000.0, output: 1000.0}"
    return gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}", prices=prices), env=UPSTREAM_ENV)


def settled(http: httpx.Client, key_id: str) -> dict[str, Any]:
    """The key's budget state once the request's settlement (run right after the response) is in."""
    deadline = time.monotonic() + 10
    while True:
        state: dict[str, Any] = http.get(f"/admin/keys/{key_id}").json()
        if state["reserved_usd"] == 0:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def spend_row(http: httpx.Client, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        data = http.get("/admin/spend/logs", params={"request_id": request_id}).json()["data"]
        if data:
            return dict(data[0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.1)


def ask(http: httpx.Client, fake: FakeOpenAI, usage: dict[str, Any], *, stream: bool) -> tuple[str, dict[str, Any], str]:
    """One request by a fresh budgeted key whose reply reports ``usage``: (request id, key state, body)."""
    fake.set_rule("gpt-4o-mini", Behaviour(usage=usage))
    created = http.post("/admin/keys", json={"name": f"k{time.monotonic_ns()}", "budget_usd": 1000}).json()
    body = {**BODY, "stream": stream}
    with httpx.stream(
        "POST", http.base_url.join("/v1/chat/completions"), json=body, headers={"authorization": f"Bearer {created['key']}"}
    ) as r:
        text = r.read().decode()
        assert r.status_code == 200, text
        request_id = r.headers["x-request-id"]
    return request_id, settled(http, created["id"]), text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_negative_usage_is_charged_the_reservation_not_refunded(fake: FakeOpenAI, gw: GatewayProcess, stream: bool) -> None:
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        _, normal, _ = ask(http, fake, {"prompt_tokens": 10, "completion_tokens": 5}, stream=stream)
        assert normal["spent_usd"] == pytest.approx(15 * 1000 / 1e6)  # valid usage: priced as reported, as before
        request_id, state, text = ask(http, fake, {"prompt_tokens": -1_000_000_000, "completion_tokens": 5}, stream=stream)
        assert "Hello from the fake upstream" in text or '"content":"' in text  # the reply itself is delivered
        assert state["spent_usd"] >= 0
        assert state["spent_usd"] == pytest.approx(RESERVATION)  # the whole reservation, as for unknown usage
        row = spend_row(http, request_id)
        assert row["cost_usd"] is None and row["prompt_tokens"] is None  # unknown, never negative
        metrics = http.get("/metrics").text
    assert f'faregate_usage_anomalies_total{{deployment="{DEPLOYMENT}"}} 1' in metrics
    assert "-1e+09" not in metrics and "faregate_cost_usd_total" in metrics
    gw.stop()
    warnings = [json.loads(line) for line in gw.logs().splitlines() if "invalid usage" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning", warnings
    assert DEPLOYMENT in warnings[0]["msg"] and "prompt_tokens is negative" in warnings[0]["msg"] and request_id in warnings[0]["msg"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_absurd_usage_keeps_the_log_line_and_the_metrics_sane(fake: FakeOpenAI, gw: GatewayProcess, stream: bool) -> None:
    asked: list[str] = []
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as http:
        for usage in ({"prompt_tokens": 1e300, "completion_tokens": 1}, {"prompt_tokens": 5, "completion_tokens": 18446744073709551616.0}):
            request_id, state, _ = ask(http, fake, usage, stream=stream)
            assert state["spent_usd"] == pytest.approx(RESERVATION)
            asked.append(request_id)
        metrics = http.get("/metrics").text
    tokens = [
        float(v)
        for v in re.findall(
            r'^faregate_tokens_total\{model="m",kind="\w+",format="openai_chat",provider_type="openai"\} (\S+)$', metrics, re.M
        )
    ]
    assert all(v < 1e6 for v in tokens), tokens  # not 1e300
    gw.stop()
    lines = {json.loads(line)["request_id"]: json.loads(line) for line in gw.logs().splitlines() if '"faregate.access"' in line}
    for request_id in asked:  # the access line is written, after the 200
        assert lines[request_id]["status"] == 200 and lines[request_id]["prompt_tokens"] is None
