"""Virtual keys through the admin API and the `openai` SDK: shown once, stored hashed, refused by
name when a body tries to set what it may not, revoked and rotated on every worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
MOCK = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
providers:
  local: {type: mock, chunk_delay: 0}
models:
  chat-small:
    - {provider: local, model: mock-small}
  chat-large:
    - {provider: local, model: mock-large}
"""
Start = Callable[..., GatewayProcess]


@pytest.fixture
def admin(gateways: Start) -> Iterator[tuple[GatewayProcess, httpx.Client]]:
    gw = gateways(MOCK)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        yield gw, http


def sdk(gw: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def chat(gw: GatewayProcess, key: str, model: str = "chat-small") -> int:
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )
    return r.status_code


def test_create_use_and_never_read_again(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, http = admin
    created = http.post("/admin/keys", json={"name": "team-a", "models": ["chat-s*"], "metadata": {"cost_center": "42"}})
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["key"]
    assert secret.startswith("sk-fg-") and body["prefix"].endswith(secret[-4:])
    reply = sdk(gw, secret).chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(gw, secret).chat.completions.create(model="chat-large", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(denied.value.body, dict) and denied.value.body["code"] == "model_not_allowed"
    assert [m.id for m in sdk(gw, secret).models.list()] == ["chat-small"]  # only what the key may use
    listed = http.get("/admin/keys").text + http.get(f"/admin/keys/{body['id']}").text
    assert secret not in listed and "key_hash" not in listed
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-fg-not-a-real-key-000000000000").models.list()
    # a virtual key is not an admin key
    assert httpx.get(gw.url + "/admin/keys", headers={"authorization": f"Bearer {secret}"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "spend": 0}, "spend"),
        ({"name": "x", "key_hash": "0" * 64}, "key_hash"),
        ({"name": "x", "user_role": "admin"}, "user_role"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "tpm": 1.5}, "tpm"),
        ({"name": "x", "team_id": "team_missing"}, "team_id"),
        ({"name": "x", "reserved_usd": 0}, "reserved_usd"),
        ({"name": "x", "budget_usd": -1}, "budget_usd"),
        ({"name": "x", "budget_period": "hourly"}, "budget_period"),
        ({"name": "x", "spent_usd": 0}, "spent_usd"),
        ({"name": "x", "models": "all"}, "models"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "line\nbreak"}, "name"),
        ({"models": []}, "name"),
    ],
)
def test_mass_assignment_and_bad_input_are_refused_by_name(
    admin: tuple[GatewayProcess, httpx.Client], body: dict[str, object], field: str
) -> None:
    _, http = admin
    r = http.post("/admin/keys", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field and f"'{field}'" in r.json()["error"]["message"]
    assert http.get("/admin/keys").json()["total"] == 0  # nothing was created


def test_pagination_is_bounded(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    _, http = admin
    for i in range(3):
        assert http.post("/admin/keys", json={"name": f"k{i}"}).status_code == 201
    page = http.get("/admin/keys?limit=2").json()
    assert len(page["data"]) == 2 and page["has_more"] is True and page["total"] == 3
    assert http.get("/admin/keys?limit=2&offset=2").json()["has_more"] is False
    for query in ("limit=1000000000", "limit=0", "offset=-1", "limit=abc"):
        assert http.get(f"/admin/keys?{query}").status_code == 400, query
    assert http.get("/admin/keys/key_nope").status_code == 404


def test_revoke_and_expiry_reach_every_worker(gateways: Start) -> None:
    gw = gateways(MOCK, workers=2)
    http = httpx.Client(base_url=gw.url, headers=AUTH, timeout=20)
    created = http.post("/admin/keys", json={"name": "soon-revoked"}).json()
    secret = created["key"]
    for _ in range(20):  # both workers cache it as valid
        assert chat(gw, secret) == 200
    assert http.post(f"/admin/keys/{created['id']}/revoke").status_code == 200
    t_revoke = time.monotonic()
    statuses = []
    while time.monotonic() - t_revoke < 1.0:
        with httpx.Client(timeout=10) as fresh:  # a new connection each time: any worker may answer
            statuses.append(
                fresh.post(
                    gw.url + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {secret}"},
                    json={"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
                ).status_code
            )
    assert statuses and all(s == 401 for s in statuses[len(statuses) // 2 :]), statuses
    assert 200 not in statuses[-5:]
    expired = http.post("/admin/keys", json={"name": "expired", "expires_at": time.time() - 1}).json()
    assert chat(gw, expired["key"]) == 401


def test_rotation_with_and_without_grace(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, http = admin
    created = http.post("/admin/keys", json={"name": "rotating"}).json()
    old = created["key"]
    assert chat(gw, old) == 200
    rotated = http.post(f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 1.5}).json()
    new = rotated["key"]
    assert new != old and chat(gw, new) == 200
    assert chat(gw, old) == 200  # within the grace period
    time.sleep(1.7)
    assert chat(gw, old) == 401
    again = http.post(f"/admin/keys/{created['id']}/rotate").json()["key"]
    assert chat(gw, new) == 401 and chat(gw, again) == 200


def test_keys_cli(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, _ = admin
    env = {"FAREGATE_MASTER_KEY": MASTER_KEY}
    made = run_cli("keys", "create", "--name", "from-cli", "--model", "chat-small", "--url", gw.url, env=env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert chat(gw, secret) == 200
    listed = run_cli("keys", "list", "--url", gw.url, env=env)
    assert "from-cli" in listed.stdout and secret not in listed.stdout
    key_id = listed.stdout.split()[0]
    assert run_cli("keys", "revoke", key_id, "--url", gw.url, env=env).returncode == 0
    assert chat(gw, secret) == 401
    assert run_cli("keys", "revoke", "key_missing", "--url", gw.url, env=env).returncode == 1
    limited = run_cli("keys", "create", "--name", "limited", "--rpm", "1", "--budget", "5", "--period", "daily", "--url", gw.url, env=env)
    assert limited.returncode == 0, limited.stderr
    assert chat(gw, limited.stdout.strip()) == 403  # a budgeted key may not use the unpriced mock model
    shown = httpx.get(gw.url + "/admin/keys", headers=AUTH).json()["data"][-1]
    assert (shown["rpm"], shown["budget_usd"], shown["budget_period"]) == (1, 5, "daily")


def test_a_revoked_key_stays_revoked(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, http = admin
    created = http.post("/admin/keys", json={"name": "gone"}).json()
    http.post(f"/admin/keys/{created['id']}/revoke")
    again = http.patch(f"/admin/keys/{created['id']}", json={"enabled": True})
    assert again.status_code == 400 and again.json()["error"]["param"] == "enabled"
    assert chat(gw, created["key"]) == 401
    paused = http.post("/admin/keys", json={"name": "paused"}).json()
    assert http.patch(f"/admin/keys/{paused['id']}", json={"enabled": False}).json()["enabled"] is False
    assert chat(gw, paused["key"]) == 401
    assert http.patch(f"/admin/keys/{paused['id']}", json={"enabled": True}).json()["enabled"] is True
    assert chat(gw, paused["key"]) == 200
