"""The LiteLLM-compatible management routes on a real gateway (one process for the module): keys
made, read, changed, regenerated and deleted in LiteLLM's field names and used with the openai SDK,
the spend log after traffic, /model/info, /health with one healthy and one unreachable deployment,
liveliness and readiness.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port


def _config(fake_url: str, dead_url: str) -> str:
    return f"""
server: {{master_key: "${{FAREGATE_MASTER_KEY}}"}}
providers:
  openai-main: {{type: openai, base_url: "{fake_url}", credentials: [{{key: "${{OPENAI_API_KEY}}"}}]}}
  gone: {{type: openai, base_url: "{dead_url}", credentials: [{{key: "${{OPENAI_API_KEY}}"}}], connect_timeout: 2}}
models:
  gpt-4o-mini: [{{provider: openai-main, model: gpt-4o-mini}}]
  broken: [{{provider: gone, model: gpt-4o-mini}}]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp: Path = tmp_path_factory.mktemp("litellm-api")
    with FakeOpenAI() as fake:
        config = _config(fake.url, f"http://127.0.0.1:{free_port()}/v1")
        with GatewayProcess(tmp, config, env={"OPENAI_API_KEY": "sk-upstream-secret-0123456789"}) as gateway:
            yield gateway


def call(gw: GatewayProcess, method: str, path: str, body: Any = None, key: str | None = MASTER_KEY) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {key}"} if key else {})
    request = urllib.request.Request(gw.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def chat(gw: GatewayProcess, key: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_generated_key_works_and_info_update_regenerate_delete_follow_litellm(gw: GatewayProcess) -> None:
    body = {"key_alias": "batch", "models": ["gpt-4o-mini"], "max_budget": 5, "budget_duration": "30d", "rpm_limit": 60}
    body |= {"tpm_limit": 100000, "metadata": {"team": "data"}, "duration": "1h", "send_invite_email": False, "aliases": {}}
    status, made = call(gw, "POST", "/key/generate", body)
    assert status == 200, made
    secret, token = made["key"], made["token"]
    assert secret.startswith("sk-fg-") and token.startswith("key_")
    assert (made["key_alias"], made["models"], made["max_budget"], made["budget_duration"]) == ("batch", ["gpt-4o-mini"], 5, "30d")
    assert (made["rpm_limit"], made["tpm_limit"], made["metadata"], made["blocked"]) == (60, 100000, {"team": "data"}, False)
    assert made["expires"] is not None
    assert chat(gw, secret).choices[0].message.content

    for ref in (secret, token):
        status, info = call(gw, "GET", f"/key/info?key={ref}")
        assert status == 200 and info["key"] == token and info["info"]["key_alias"] == "batch"
        assert secret not in json.dumps(info)

    status, updated = call(gw, "POST", "/key/update", {"key": token, "rpm_limit": 120, "key_alias": "batch-2"})
    assert status == 200 and updated["rpm_limit"] == 120 and updated["key_alias"] == "batch-2" and updated["confirmed"]
    status, refused = call(gw, "POST", "/key/update", {"key": token, "model_max_budget": {"gpt-4o-mini": 1}})
    assert status == 400 and refused["error"]["param"] == "model_max_budget"
    status, refused = call(gw, "POST", "/key/generate", {"key": "sk-my-own-secret"})
    assert status == 400 and refused["error"]["param"] == "key"
    status, refused = call(gw, "POST", "/key/update", {"key": token, "rpm_limit": -1})
    assert status == 400 and refused["error"]["param"] == "rpm_limit" and "'rpm_limit'" in refused["error"]["message"]

    status, again = call(gw, "POST", "/key/regenerate", {"key": secret})
    assert status == 200 and again["token"] == token and again["key"] != secret
    with pytest.raises(openai.AuthenticationError):
        chat(gw, secret)  # the old secret is refused at once
    assert chat(gw, again["key"]).choices[0].message.content
    status, third = call(gw, "POST", f"/key/{token}/regenerate", {"grace_period": "1h"})
    assert status == 200 and third["key"] not in (secret, again["key"])
    assert chat(gw, again["key"]).choices[0].message.content  # within its grace period

    status, deleted = call(gw, "POST", "/key/delete", {"keys": [token]})
    assert status == 200 and deleted["deleted_keys"] == [token] and deleted["confirmed"]
    with pytest.raises(openai.AuthenticationError):
        chat(gw, third["key"])
    status, gone = call(gw, "GET", f"/key/info?key={token}")
    assert status == 404 and gone["error"]["code"] == "key_not_found"


def test_management_routes_need_the_master_key(gw: GatewayProcess) -> None:
    status, made = call(gw, "POST", "/key/generate", {"key_alias": "plain"})
    assert status == 200
    for method, path in (("POST", "/key/generate"), ("GET", "/model/info"), ("GET", "/health"), ("GET", "/spend/logs")):
        assert call(gw, method, path, {} if method == "POST" else None, key=made["key"])[0] == 401
        assert call(gw, method, path, {} if method == "POST" else None, key=None)[0] == 401
    for method, path in (("POST", f"/key/{made['key']}/block"), ("GET", f"/key/{made['key']}/regenerate")):
        assert call(gw, method, path, key=made["key"])[0] == 401
        status, unknown = call(gw, method, path)
        assert status == 404 and made["key"] not in json.dumps(unknown)  # a URL that may hold a secret is never echoed
    assert chat(gw, made["key"]).choices[0].message.content  # the GET rotated nothing: the secret still works


def test_spend_logs_after_traffic_in_litellm_names(gw: GatewayProcess) -> None:
    status, made = call(gw, "POST", "/key/generate", {"key_alias": "spender"})
    assert status == 200
    reply = chat(gw, made["key"])
    request_id = reply._request_id
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:  # rows are written in batches, within about a second
        status, rows = call(gw, "GET", f"/spend/logs?api_key={made['key']}")
        assert status == 200
        if not rows:
            time.sleep(0.1)
    assert len(rows) == 1
    row = rows[0]
    assert row["request_id"] == request_id and row["api_key"] == made["token"] and row["call_type"] == "acompletion"
    assert row["model_group"] == "gpt-4o-mini" and row["model"] == "gpt-4o-mini" and row["status"] == "success"
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"] > 0
    assert row["startTime"] <= row["endTime"] and row["spend"] > 0
    status, by_id = call(gw, "GET", f"/spend/logs?request_id={request_id}")
    assert status == 200 and [r["request_id"] for r in by_id] == [request_id]
    status, refused = call(gw, "GET", "/spend/logs?user_id=someone")
    assert status == 400 and refused["error"]["param"] == "user_id"
    status, refused = call(gw, "GET", "/spend/logs?start_date=2026-01-01&end_date=2026-01-02")
    assert status == 400 and refused["error"]["param"] == "summarize"


def test_model_info_lists_deployments_without_secrets(gw: GatewayProcess) -> None:
    status, info = call(gw, "GET", "/model/info")
    assert status == 200
    by_name = {m["model_name"]: m for m in info["data"]}
    assert set(by_name) == {"gpt-4o-mini", "broken"}
    mini = by_name["gpt-4o-mini"]
    assert mini["litellm_params"]["model"] == "openai/gpt-4o-mini"
    assert mini["model_info"]["id"] == "openai-main/gpt-4o-mini" and mini["model_info"]["input_cost_per_token"] > 0
    assert "sk-upstream-secret" not in json.dumps(info)


def test_health_probes_every_deployment_and_liveliness_readiness_answer(gw: GatewayProcess) -> None:
    status, health = call(gw, "GET", "/health")
    assert status == 200
    assert (health["healthy_count"], health["unhealthy_count"]) == (1, 1)
    assert [e["model_name"] for e in health["healthy_endpoints"]] == ["gpt-4o-mini"]
    bad = health["unhealthy_endpoints"][0]
    assert bad["model_name"] == "broken" and bad["probe"]["result"] == "unreachable" and bad["error"]
    assert "sk-upstream-secret" not in json.dumps(health)
    status, only = call(gw, "GET", "/health?model=gpt-4o-mini")
    assert status == 200 and (only["healthy_count"], only["unhealthy_count"]) == (1, 0)
    assert call(gw, "GET", "/health/liveliness", key=None) == (200, "I'm alive!")
    status, ready = call(gw, "GET", "/health/readiness", key=None)
    assert status == 200 and ready["status"] == "healthy" and ready["db"] == "connected"
