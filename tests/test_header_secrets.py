"""A secret in a provider header (`Authorization: Bearer ${NAME}`) reaches the upstream expanded,
and never anything else: not responses, headers, logs or metrics, even when the upstream echoes it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.support.procs import MASTER_KEY, GatewayProcess

HEADER_KEY = "sk-CANARY-header-key-3c9e1f7a5d"
PROJECT = "CANARY-project-0b6d"
ENV = {"HDR_KEY": HEADER_KEY, "HDR_PROJECT": PROJECT}
MESSAGES = [{"role": "user", "content": "Hi"}]


def test_header_secret_is_expanded_upstream_and_never_shown(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(
        f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {fake.url}
    headers:
      Authorization: "Bearer ${{HDR_KEY}}"
      X-Project: "team-${{HDR_PROJECT}}"
      X-Title: faregate-test
    timeout: 5
models:
  m:
    - {{provider: up, model: a-model}}
  echo:
    - {{provider: up, model: echo-model}}
""",
        env=ENV,
    )
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    seen: list[str] = []

    def record(r: httpx.Response) -> httpx.Response:
        seen.append(r.text)
        seen.extend(f"{k}: {v}" for k, v in r.headers.items())
        return r

    with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as http:
        plain = record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
        assert plain.status_code == 200, plain.text
        assert plain.headers["x-faregate-credential"] == "up/none:none"  # about the credential, not the header
        record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}))
        (first, second) = fake.requests
        for sent in (first, second):
            assert sent.headers["authorization"] == f"Bearer {HEADER_KEY}"
            assert sent.headers["x-project"] == f"team-{PROJECT}"
            assert sent.headers["x-title"] == "faregate-test"
        # an upstream that repeats the header secrets in its error: scrubbed before it reaches the client
        fake.set_rule("echo-model", errors.bad_request(f"invalid key {HEADER_KEY} for project {PROJECT}"))
        echoed = record(http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES}))
        assert echoed.status_code == 400
        assert echoed.text.count("[redacted:") == 2
        fake.set_rule("a-model", errors.invalid_api_key())
        record(http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
        record(http.get("/metrics"))
        record(http.get("/v1/models"))
    gw.stop()
    logs = gw.logs()
    assert "faregate.access" in logs  # the logs were really written
    for text in [*seen, logs]:
        assert HEADER_KEY not in text
        assert PROJECT not in text
