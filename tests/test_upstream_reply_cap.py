"""server.max_reply_bytes through a real gateway (issue 9 item 21): an upstream reply over the cap
is a 502 `upstream_reply_too_large` naming the limit and the setting, and is not retried on the
next deployment (the upstream did the work; another deployment would answer as large)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

MODELS = """
  big:
    - {provider: up, model: big-a}
    - {provider: up, model: big-b, priority: 1}
  small:
    - {provider: up, model: small}"""


def test_a_reply_over_max_reply_bytes_is_a_502_naming_the_setting(fake: FakeOpenAI, gateways: Callable[..., GatewayProcess]) -> None:
    fake.set_rule("big-a", Behaviour(reply_text="x" * 20_000))
    fake.set_rule("big-b", Behaviour(reply_text="x" * 20_000))
    gw = gateways(config(provider("up", fake.url), MODELS, server="\n  max_reply_bytes: 8192"), env=UPSTREAM_ENV)
    headers = {"authorization": f"Bearer {MASTER_KEY}"}

    def ask(model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)

    refused = ask("big")
    assert refused.status_code == 502, refused.text
    error = refused.json()["error"]
    assert error["code"] == "upstream_reply_too_large"
    assert error["type"] == "upstream_error"
    assert "8192 bytes (server.max_reply_bytes)" in error["message"]
    assert fake.count("big-a") == 1 and fake.count("big-b") == 0  # not retried elsewhere
    assert ask("small").status_code == 200  # under the cap: answered as ever
