"""`faregate serve --workers 2`: two processes serve correctly, and /metrics counts for both."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

N = 200


def _counter(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    assert want is not None
    return total


def test_two_workers_serve_and_metrics_cover_both(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(
        config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: a-model}\n  bad:\n    - {provider: up, model: e}"),
        env=UPSTREAM_ENV,
        workers=2,
    )
    fake.set_rule("e", errors.server_error())
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}

    def one(i: int) -> tuple[int, str]:
        with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as http:
            r = http.post("/v1/chat/completions", json=body if i % 10 else {**body, "model": "bad"})
            return r.status_code, r.headers["x-faregate-generation"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(N)))
    assert sorted({s for s, _ in results}) == [200, 503]
    assert sum(s == 200 for s, _ in results) == N - N // 10
    assert len({g for _, g in results}) == 1
    time.sleep(1.5)  # each worker publishes its counts at most once a second, and flushes its log lines
    gw_logs = gw.logs()
    assert gw_logs.count('"logger":"faregate.access"') == N  # one line per request, from every worker
    pids = set(re.findall(r'"logger":"faregate.access".*?"worker":(\d+)', gw_logs))
    assert len(pids) == 2, pids  # both worker processes served
    text = httpx.get(gw.url + "/metrics").text
    assert _counter(text, "faregate_requests_total", model="m", deployment="up/a-model", status="200") == N - N // 10
    assert _counter(text, "faregate_requests_total", model="bad", status="503") == N // 10
    assert _counter(text, "faregate_upstream_errors_total", deployment="up/e", **{"class": "UpstreamServerError"}) >= 3
    assert _counter(text, "faregate_deployment_cooldown", deployment="up/e") == 1
    assert _counter(text, "faregate_request_duration_seconds_count", model="m") == N - N // 10
    assert _counter(text, "faregate_tokens_total", model="m", kind="completion") > 0
