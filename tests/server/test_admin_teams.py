"""Teams through the admin API: created, listed, changed and deleted; their budget and enabled
flag reach every worker at once; fields faregate keeps are refused by name."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server.test_admin_keys import AUTH, MOCK, Start, chat
from tests.support.procs import GatewayProcess


@pytest.fixture
def admin(gateways: Start) -> Iterator[tuple[GatewayProcess, httpx.Client]]:
    gw = gateways(MOCK, workers=2)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        yield gw, http


def test_team_lifecycle_and_its_keys(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, http = admin
    created = http.post("/admin/teams", json={"name": "search", "metadata": {"cc": "7"}, "rpm": 100})
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["id"].startswith("team_") and team["spent_usd"] == 0 and team["keys"] == 0 and team["rpm"] == 100
    key = http.post("/admin/keys", json={"name": "member", "team_id": team["id"]}).json()
    assert key["team_id"] == team["id"]
    assert http.get(f"/admin/teams/{team['id']}").json()["keys"] == 1
    assert http.post("/admin/teams", json={"name": "search"}).status_code == 409  # names are unique
    # a key's owner is fixed at creation: no moving it between teams by PATCH
    moved = http.patch(f"/admin/keys/{key['id']}", json={"team_id": None})
    assert moved.status_code == 400 and moved.json()["error"]["param"] == "team_id"
    for _ in range(10):
        assert chat(gw, key["key"]) == 200  # both workers cache the key with its team
    assert http.patch(f"/admin/teams/{team['id']}", json={"enabled": False}).status_code == 200
    began = time.monotonic()
    statuses = []
    while time.monotonic() - began < 1.0:
        with httpx.Client(timeout=10) as fresh:
            status = fresh.post(
                gw.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {key['key']}"},
                json={"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
            ).status_code
            statuses.append((time.monotonic() - began, status))
    last_served = max((t for t, status in statuses if status == 200), default=0.0)
    print(f"MEASURED team disabled: last request served {last_served * 1000:.0f} ms after the change, {len(statuses)} requests in 1 s")
    assert {status for _, status in statuses} <= {200, 401} and last_served < 0.5, statuses  # every worker within the bus latency
    refusal = httpx.post(
        gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"}, json={"model": "chat-small", "messages": []}
    )
    assert "team" in refusal.json()["error"]["message"] and "disabled" in refusal.json()["error"]["message"]
    assert http.patch(f"/admin/teams/{team['id']}", json={"enabled": True}).status_code == 200
    time.sleep(0.5)  # the other worker hears of it over the bus (polled every 0.2 s without Redis)
    assert [chat(gw, key["key"]) for _ in range(6)] == [200] * 6
    deleted = http.delete(f"/admin/teams/{team['id']}").json()
    assert deleted == {"id": team["id"], "deleted": True, "keys_detached": 1, "confirmed": True, "laggards": []}
    assert http.get(f"/admin/keys/{key['id']}").json()["team_id"] is None
    assert chat(gw, key["key"]) == 200  # the key outlives its team
    assert http.get(f"/admin/teams/{team['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "spent_usd": 0}, "spent_usd"),
        ({"name": "x", "reserved_usd": 0}, "reserved_usd"),
        ({"name": "x", "id": "team_mine"}, "id"),
        ({"name": "x", "role": "admin"}, "role"),
        ({"name": "x", "budget_usd": "lots"}, "budget_usd"),
        ({"name": "x", "max_parallel": 0}, "max_parallel"),
        ({"budget_usd": 5}, "name"),
    ],
)
def test_team_fields_are_checked_by_name(admin: tuple[GatewayProcess, httpx.Client], body: dict[str, object], field: str) -> None:
    _, http = admin
    r = http.post("/admin/teams", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field and f"'{field}'" in r.json()["error"]["message"]
    assert http.get("/admin/teams").json()["total"] == 0


def test_team_pages_are_bounded(admin: tuple[GatewayProcess, httpx.Client]) -> None:
    _, http = admin
    for i in range(3):
        assert http.post("/admin/teams", json={"name": f"t{i}"}).status_code == 201
    page = http.get("/admin/teams?limit=2").json()
    assert len(page["data"]) == 2 and page["has_more"] is True and page["total"] == 3
    for query in ("limit=101", "limit=0", "offset=-3", "limit=x"):
        assert http.get(f"/admin/teams?{query}").status_code == 400, query
    assert http.get("/admin/teams/team_nope").json()["error"]["code"] == "team_not_found"
    assert http.get("/admin/teams", headers={"authorization": "Bearer nope"}).status_code == 401
