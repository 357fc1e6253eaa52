"""/metrics in Prometheus text format: requests, latency, time to first token, tokens, errors, cooldowns."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess


def test_metrics_after_traffic(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(
        config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: a-model}\n  limited:\n    - {provider: up, model: l}"),
        env=UPSTREAM_ENV,
    )
    fake.set_rule("l", errors.rate_limited(retry_after=60))
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as http:
        http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        http.post("/v1/chat/completions", json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
        http.post("/v1/chat/completions", json={"model": "limited", "messages": [{"role": "user", "content": "Hi"}]})
        text = http.get("/metrics").text
    assert 'faregate_requests_total{model="m",deployment="up/a-model",status="200",format="openai_chat",provider_type="openai"} 2' in text
    assert 'faregate_requests_total{model="limited",deployment="up/l",status="429",format="openai_chat",provider_type="openai"} 1' in text
    assert 'faregate_time_to_first_token_seconds_count{model="m",format="openai_chat",provider_type="openai"} 1' in text
    assert 'faregate_request_duration_seconds_bucket{model="m",format="openai_chat",provider_type="openai",le="+Inf"} 2' in text
    assert 'faregate_upstream_errors_total{deployment="up/l",class="UpstreamRateLimited"} 1' in text
    assert 'faregate_unpriced_requests_total{model="m",format="openai_chat",provider_type="openai"} 2' in text  # a-model has no price
    assert 'faregate_deployment_cooldown{deployment="up/l"} 1' in text
    assert 'faregate_tokens_total{model="m",kind="prompt",format="openai_chat",provider_type="openai"}' in text
    assert "faregate_requests_in_flight 0" in text  # every proxied request has finished; /metrics itself is not counted
