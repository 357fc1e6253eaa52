"""Alerts to a loopback webhook from a real gateway: each event raised by real traffic (or a real
failed reload), in Slack's and the plain JSON form, retried when the webhook is down, deduplicated
across two workers, never carrying a secret."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI, errors
from tests.fakes.webhook import FakeWebhook, event_of
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY, provider
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HOOK_PATH = "/services/T0FAREGATE/B0ALERTS/hooksecret0123456789abcdef"  # a Slack webhook URL's path is its secret
LOCKED_KEY = "sk-CANARY-locked-9e8d7c6b5a4f3e2d"


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as server:
        yield server


def gateway_config(fake: FakeOpenAI, alerts: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:{provider("up", fake.url)}{provider("locked", fake.url, key_env="LOCKED_KEY")}
  local:
    type: mock
models:
  m-good:
    - {{provider: local, model: mock-small}}
  m-ghost:
    - {{provider: up, model: ghost}}
  m-locked:
    - {{provider: locked, model: locked}}
  m-down:
    - {{provider: up, model: down}}
routing:
  retries: 0
  cooldown: {{failures: 1, seconds: 600}}
prices:
  mock-small: {{input: 1000.0, output: 1000.0}}
alerts:{alerts}
"""


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics", headers=AUTH, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(gw: GatewayProcess, name: str, value: float, timeout: float = 60.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while metric(gw, name, **labels) < value:
        assert time.monotonic() < deadline, f"{name}{labels} did not reach {value}"
        time.sleep(0.2)


def chat(gw: GatewayProcess, model: str, key: str = MASTER_KEY) -> httpx.Response:
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}  # a bounded reservation
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def break_config(gw: GatewayProcess) -> httpx.Response:
    gw.config_path.write_text(gw.config_path.read_text() + "\nnot: [valid\n")
    return httpx.post(gw.url + "/admin/reload", headers=AUTH, timeout=30)


def test_every_event_reaches_a_slack_webhook_without_a_secret(
    fake: FakeOpenAI, hook: FakeWebhook, gateways: Callable[..., GatewayProcess]
) -> None:
    alerts = """
  - url: ${HOOK_URL}
    budget_thresholds: [0.01, 1.0]
    cooldown_minutes: 0.02"""
    env = {**UPSTREAM_ENV, "LOCKED_KEY": LOCKED_KEY, "HOOK_URL": hook.url + HOOK_PATH}
    gw = gateways(gateway_config(fake, alerts), env=env)
    fake.set_rule("ghost", errors.model_not_found("ghost"))
    fake.set_rule("locked", errors.invalid_api_key())
    fake.set_rule("down", errors.server_error())

    # a budget: one request costs `unit`; a budget of 50 units is past its 1 % threshold after one request
    # (and has room for the reservation, which is larger than what a request really costs)
    probe = chat(gw, "m-good")
    unit = float(probe.headers["x-faregate-cost-usd"])
    created = httpx.post(gw.url + "/admin/keys", headers=AUTH, json={"name": "alice-<b>", "budget_usd": round(50 * unit, 9)}).json()
    spent = chat(gw, "m-good", created["key"])
    assert spent.status_code == 200, spent.text
    assert chat(gw, "m-ghost").status_code == 503
    assert chat(gw, "m-locked").status_code in (401, 502, 503)
    assert chat(gw, "m-down").status_code in (502, 503)
    assert break_config(gw).status_code != 200

    budget = hook.wait_for_post("budget_threshold").json
    assert "alice-&lt;b&gt;" in budget["text"] and "<b>" not in budget["text"]  # a name a client chose cannot become Slack markup
    assert created["id"] in str(budget) and "threshold 1%" in budget["text"]
    misnamed = hook.wait_for_post("deployment_misconfigured").json
    assert "up/ghost" in misnamed["text"]
    rejected = hook.wait_for_post("credential_rejected").json
    assert "locked/main:" in rejected["text"]  # the credential's label and fingerprint, never its key
    cooling = hook.wait_for_post("deployment_cooldown").json
    assert "up/down" in cooling["text"] and "minutes with no success" in cooling["text"]
    reload = hook.wait_for_post("reload_failed").json
    assert "keeps serving" in reload["text"]
    assert chat(gw, "m-good").status_code == 200  # the old generation still serves

    for post in hook.requests:
        assert post.path == HOOK_PATH
        assert post.headers["content-type"] == "application/json"
        data = post.json
        assert set(data) == {"text", "blocks"} and data["text"].startswith("[faregate ")
        for secret in (UPSTREAM_KEY, LOCKED_KEY, MASTER_KEY, created["key"], HOOK_PATH, "hooksecret"):
            assert secret.encode() not in post.body, event_of(post)
    log = gw.log_path.read_text()
    assert "hooksecret" not in log and LOCKED_KEY not in log


def test_a_webhook_that_is_down_is_retried_and_one_that_never_answers_is_counted(
    fake: FakeOpenAI, hook: FakeWebhook, gateways: Callable[..., GatewayProcess]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    alerts = f"""
  - url: {hook.url}/alerts
    format: json
    events: [reload_failed]
  - url: {closed}
    format: json
    events: [reload_failed]"""
    gw = gateways(gateway_config(fake, alerts), env={**UPSTREAM_ENV, "LOCKED_KEY": LOCKED_KEY})
    hook.enqueue(503, 503)  # down for two attempts, then back
    assert break_config(gw).status_code != 200
    posted = hook.wait_for_post("reload_failed")
    assert [p.headers["x-answered"] for p in hook.requests] == ["503", "503", "200"]
    data = posted.json
    assert data["source"] == "faregate" and data["event"] == "reload_failed" and data["severity"] == "critical"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["at"])
    assert "YAML syntax error" in data["details"]["error"]
    assert chat(gw, "m-good").status_code == 200  # requests never wait on a webhook
    wait_metric(gw, "faregate_alerts_total", 1, event="reload_failed", result="failed")  # the closed port, after every attempt
    assert metric(gw, "faregate_alerts_total", event="reload_failed", result="sent") == 1
    assert closed not in gw.log_path.read_text()  # named by its fingerprint


def test_two_workers_send_one_alert_for_one_condition(
    fake: FakeOpenAI, hook: FakeWebhook, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    alerts = """
  - url: ${HOOK_URL}
    events: [reload_failed]"""
    env = {**UPSTREAM_ENV, "LOCKED_KEY": LOCKED_KEY, "HOOK_URL": hook.url + HOOK_PATH}
    gw = gateways(gateway_config(fake, alerts), env=env, workers=2)
    assert break_config(gw).status_code != 200
    wait_metric(gw, "faregate_alerts_total", 1, event="reload_failed", result="deduplicated")  # the other worker saw it too
    hook.wait_for_post("reload_failed")
    wait_metric(gw, "faregate_alerts_total", 1, event="reload_failed", result="sent")  # each worker's snapshot is merged every second
    assert metric(gw, "faregate_alerts_total", event="reload_failed", result="sent") == 1
    assert len(hook.requests) == 1
