"""Refusals that must still be precise, through a real `faregate serve`: a virtual key's refused
body is logged against that key, and admin paging parameters out of range are a 400 naming the
parameter and its range (never a 500 from the database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
  max_body_bytes: 2048
providers:
  local: {type: mock, chunk_delay: 0}
models:
  m:
    - {provider: local, model: mock-small}
"""
HUGE = "9223372036854775808"  # 2**63: beyond every database's 64-bit integers


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("gw"), CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=20) as http:
        yield http


def logged(http: httpx.Client, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The spend row of one request, once the writer has flushed it."""
    deadline = time.monotonic() + timeout
    while True:
        r = http.get("/admin/spend/logs", params={"request_id": request_id})
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            return dict(r.json()["data"][0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.1)


def test_a_refused_body_is_logged_against_the_key_that_sent_it(gateway: GatewayProcess, admin: httpx.Client) -> None:
    team = admin.post("/admin/teams", json={"name": "refused"}).json()
    created = admin.post("/admin/keys", json={"name": "refused", "user_id": "ada", "team_id": team["id"]}).json()
    key = {"authorization": f"Bearer {created['key']}", "content-type": "application/json"}
    url = gateway.url + "/v1/chat/completions"
    cases = {
        "not json": (b"{nope", 400, "invalid_json"),
        "no model": (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "missing_field"),
        "too deep": (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * 300 + b"]" * 300 + b"}", 400, None),
        "too large": (b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 4096 + b'"}]}', 413, "request_too_large"),
    }
    for name, (content, status, code) in cases.items():
        response = httpx.post(url, content=content, headers=key, timeout=20)
        assert response.status_code == status, (name, response.text)
        row = logged(admin, response.headers["x-faregate-request-id"])
        assert (row["key_id"], row["team_id"], row["user_id"]) == (created["id"], team["id"], "ada"), name
        assert row["status"] == status and (code is None or row["error_code"] == code), name
    # a bad key with a bad body is refused for the key first, and logged without one
    refused = httpx.post(url, content=b"{nope", headers={"authorization": "Bearer sk-fg-wrong"}, timeout=20)
    assert refused.status_code == 401
    assert logged(admin, refused.headers["x-faregate-request-id"])["key_id"] is None


@pytest.mark.parametrize("route", ["/admin/keys", "/admin/teams", "/admin/spend/logs"])
@pytest.mark.parametrize(
    ("query", "param", "needle"),
    [
        (f"offset={HUGE}", "offset", "'offset' must be an integer from 0 to 10000000"),
        ("offset=10000001", "offset", "'offset' must be an integer from 0 to 10000000"),
        ("offset=-1", "offset", "from 0 to"),
        ("offset=1e3", "offset", "from 0 to"),
        ("offset=" + "9" * 5000, "offset", "from 0 to"),  # more digits than Python converts
        (f"limit={HUGE}", "limit", "'limit' must be an integer from 1 to 100"),
        ("limit=0", "limit", "from 1 to 100"),
        ("limit=abc", "limit", "from 1 to 100"),
    ],
)
def test_paging_out_of_range_is_a_400_naming_the_parameter(admin: httpx.Client, route: str, query: str, param: str, needle: str) -> None:
    response = admin.get(f"{route}?{query}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("route", ["/admin/keys", "/admin/teams", "/admin/spend/logs"])
def test_paging_within_range_still_works(admin: httpx.Client, route: str) -> None:
    for query in ("offset=0&limit=1", ""):
        assert admin.get(f"{route}?{query}").status_code == 200
    far = admin.get(f"{route}?offset=10000000&limit=100")
    assert far.status_code == 200 and far.json()["data"] == []


def test_spend_aggregate_limit_is_bounded(admin: httpx.Client) -> None:
    response = admin.get(f"/admin/spend?limit={HUGE}")
    assert response.status_code == 400 and response.json()["error"]["param"] == "limit"
    assert "from 1 to 1000" in response.json()["error"]["message"]
