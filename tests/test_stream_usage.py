"""Streams are priced from the usage the upstream reports, even when the client did not ask for it;
the client then does not see the usage event."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, client, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

Start = Callable[..., GatewayProcess]
MESSAGES = [{"role": "user", "content": "Hi"}]
PRICES = "\n  gpt-4o-mini: {input: 0.15, output: 0.6}"


def stream_raw(gw: GatewayProcess, body: dict[str, object]) -> bytes:
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
        assert r.status_code == 200
        return r.read()


def test_stream_priced_without_showing_usage_to_a_client_that_did_not_ask(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}", prices=PRICES), env=UPSTREAM_ENV)
    raw = stream_raw(gw, {"model": "m", "stream": True, "messages": MESSAGES})
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}  # asked upstream
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"choices":[]' in e for e in events)  # ...and hidden from the client
    text = "".join(c.choices[0].delta.content or "" for c in client(gw).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert text == "Hello from the fake upstream."
    metrics = httpx.get(gw.url + "/metrics").text
    cost = [
        line
        for line in metrics.splitlines()
        if line.startswith('faregate_cost_usd_total{model="m",format="openai_chat",provider_type="openai"}')
    ]
    assert cost and float(cost[0].split()[-1]) > 0
    assert 'faregate_tokens_total{model="m",kind="completion",format="openai_chat",provider_type="openai"}' in metrics


def test_a_client_that_asked_for_usage_gets_it(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}", prices=PRICES), env=UPSTREAM_ENV)
    chunks = list(
        client(gw).chat.completions.create(model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True})  # type: ignore[arg-type]
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_usage_is_not_requested_when_the_provider_says_so(fake: FakeOpenAI, gateways: Start) -> None:
    up = provider("up", fake.url, extra="\n    stream_usage: false")
    gw = gateways(config(up, "\n  m:\n    - {provider: up, model: gpt-4o-mini}"), env=UPSTREAM_ENV)
    stream_raw(gw, {"model": "m", "stream": True, "messages": MESSAGES})
    assert "stream_options" not in fake.requests[-1].json


def test_client_disconnect_mid_stream_releases_the_request(fake: FakeOpenAI, gateways: Start) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: slow}"), env=UPSTREAM_ENV)
    fake.set_rule("slow", Behaviour(chunks=30, chunk_delay=0.1))
    body = {"model": "m", "stream": True, "messages": MESSAGES}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data:")
    # the client is gone after ~1 of 30 events; the gateway notices at the next event and lets go
    text = ""
    for _ in range(50):
        text = httpx.get(gw.url + "/metrics").text
        if 'status="499"' in text:
            break
        time.sleep(0.1)
    assert 'faregate_requests_total{model="m",deployment="up/slow",status="499",format="openai_chat",provider_type="openai"} 1' in text
    assert "faregate_requests_in_flight 0" in text
