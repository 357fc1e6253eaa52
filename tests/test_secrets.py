"""A canary upstream key never leaves: not in bodies, headers, logs or metrics, whatever happens."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_canary_key_never_appears_anywhere(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(
        config(
            provider("up", fake.url),
            """
  m:
    - {provider: up, model: a-model}
    - {provider: up, model: b-model, priority: 1}
  echo:
    - {provider: up, model: echo-model}""",
        ),
        env=UPSTREAM_ENV,
    )
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    seen: list[str] = []

    def record(r: httpx.Response) -> None:
        seen.append(r.text)
        seen.extend(f"{k}: {v}" for k, v in r.headers.items())

    with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as http:
        record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
        record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}))
        # an upstream that echoes the key it was sent in a 400 message: scrubbed before it reaches the client
        fake.set_rule("echo-model", errors.bad_request(f"invalid header value {UPSTREAM_KEY}"))
        echoed = http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
        assert echoed.status_code == 400 and "[redacted:" in echoed.text
        record(echoed)
        assert any(r.api_key == UPSTREAM_KEY for r in fake.requests)  # the key was really used
        for behaviour in (errors.server_error(), errors.rate_limited(retry_after=1), errors.drop_mid_stream(2), errors.invalid_api_key()):
            fake.clear()
            fake.set_rule("a-model", behaviour)
            record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
            record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}))
        record(http.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES}))
        record(http.post("/v1/chat/completions", content=b"{bad"))
        record(http.get("/v1/models"))
        record(http.get("/metrics"))
        record(http.get("/readyz"))
    gw.stop()
    logs = gw.logs()
    assert "faregate.access" in logs  # the logs were really written
    for text in [*seen, logs]:
        assert UPSTREAM_KEY not in text
        assert "CANARY" not in text
        assert MASTER_KEY not in text
