"""The spend log through a real `faregate serve` (2 workers, SQLite): one row per proxied request,
answered or not, and `/admin/spend` + `/admin/spend/logs` sums, filters and refusals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from faregate.store import spend
from faregate.store.db import make_engine
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
providers:
  local: {type: mock, chunk_delay: 0}
models:
  m:
    - {provider: local, model: mock-small}
  free:
    - {provider: local, model: mock-unpriced}
  broken:
    - {provider: local, model: mock-error-500}
prices:
  mock-small: {input: 1.0, output: 2.0}
"""
Start = Callable[..., GatewayProcess]
DAY = 86_400


def logged(http: httpx.Client, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The spend row of one request, once the writer has flushed it (every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        r = http.get("/admin/spend/logs", params={"request_id": request_id})
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            return dict(r.json()["data"][0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.1)


def test_every_proxied_request_gets_one_row(gateways: Start) -> None:
    gw = gateways(CONFIG, workers=2)
    chat = {"messages": [{"role": "user", "content": "hello there"}]}
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:
        team = http.post("/admin/teams", json={"name": "payers"}).json()
        created = http.post("/admin/keys", json={"name": "spender", "user_id": "ada", "team_id": team["id"]}).json()
        key = {"authorization": f"Bearer {created['key']}"}
        sent: dict[str, httpx.Response] = {}
        for name, headers, body in [
            ("plain-master", AUTH, {"model": "m", **chat}),
            ("stream-key", key, {"model": "m", "stream": True, **chat}),
            ("unpriced", key, {"model": "free", **chat}),
            ("unknown-model", key, {"model": "nope", **chat}),
            ("bad-key", {"authorization": "Bearer sk-fg-not-a-key"}, {"model": "m", **chat}),
            ("upstream-fails", AUTH, {"model": "broken", **chat}),
        ]:
            sent[name] = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json=body, timeout=20)
        rows = {name: logged(http, r.headers["x-faregate-request-id"]) for name, r in sent.items()}

        plain = rows["plain-master"]
        assert plain["key_id"] is None and plain["status"] == 200 and plain["stream"] is False and plain["endpoint"] == "chat"
        assert (plain["model"], plain["deployment"], plain["provider"], plain["upstream_model"]) == (
            "m",
            "local/mock-small",
            "local",
            "mock-small",
        )
        assert plain["credential"] == "local/none:none" and plain["attempts"] == 1 and plain["ttfb_ms"] is None
        assert plain["prompt_tokens"] > 0 and plain["completion_tokens"] > 0 and plain["cached_tokens"] == 0
        assert plain["cost_usd"] == pytest.approx(float(sent["plain-master"].headers["x-faregate-cost-usd"]), abs=1e-8)
        assert plain["day"] == time.strftime("%Y-%m-%d", time.gmtime(plain["ts"])) and plain["latency_ms"] > 0

        streamed = rows["stream-key"]
        assert streamed["key_id"] == created["id"] and streamed["stream"] is True and streamed["status"] == 200
        assert (streamed["team_id"], streamed["user_id"]) == (team["id"], "ada")
        assert streamed["ttfb_ms"] is not None and 0 < streamed["ttfb_ms"] <= streamed["latency_ms"]
        assert streamed["cost_usd"] is not None and streamed["cost_usd"] > 0 and streamed["completion_tokens"] > 0

        assert rows["unpriced"]["status"] == 200 and rows["unpriced"]["cost_usd"] is None  # unknown, never a silent 0
        assert rows["unknown-model"]["status"] == 404 and rows["unknown-model"]["error_code"] == "model_not_found"
        assert rows["unknown-model"]["cost_usd"] == 0 and rows["unknown-model"]["key_id"] == created["id"]
        refused = rows["bad-key"]
        assert (
            refused["status"] == 401
            and refused["key_id"] is None
            and refused["model"] is None
            and refused["error_code"] == "invalid_api_key"
        )
        failed = rows["upstream-fails"]
        assert failed["status"] == sent["upstream-fails"].status_code >= 500 and failed["attempts"] >= 1 and failed["cost_usd"] == 0

        totals = http.get("/admin/spend").json()["data"]
        assert totals[0]["requests"] == len(sent) and totals[0]["unpriced_requests"] == 1 and totals[0]["errors"] == 3
        by_key = {r["key_id"]: r["requests"] for r in http.get("/admin/spend", params={"group_by": "key"}).json()["data"]}
        assert by_key == {None: 3, created["id"]: 3}
        deadline = time.monotonic() + 5  # the other worker's counts arrive with its next metrics snapshot (1 s)
        while 'faregate_spend_rows_total{sink="db"} 6\n' not in (metrics := httpx.get(gw.url + "/metrics").text):
            assert time.monotonic() < deadline, metrics[-600:]
            time.sleep(0.2)
        assert "faregate_spend_outbox_rows 0" in metrics and 'sink="outbox"' not in metrics


def synthetic() -> list[dict[str, Any]]:
    """Three days of rows (2024-01-01..03 UTC) over two keys, the master key, two models and a team."""
    base = 1_704_067_200  # 2024-01-01T00:00:00Z
    out: list[dict[str, Any]] = []
    for i in range(30):
        day = i % 3
        out.append(
            {
                "request_id": f"syn-{i:03d}",
                "ts": base + day * DAY + 3600 + i,
                "key_id": ("k1", "k2", None)[i % 5 % 3],
                "team_id": "t1" if i % 2 else None,
                "endpoint": "chat",
                "model": "a" if i < 20 else "b",
                "deployment": "p/a" if i < 20 else "p/b",
                "stream": False,
                "prompt_tokens": 10,
                "completion_tokens": i,
                "cached_tokens": 0,
                "cost_usd": None if i % 7 == 0 else 0.5,
                "latency_ms": 5.0,
                "status": 200 if i % 6 else 500,
                "attempts": 1,
            }
        )
    return out


def expected(rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    chosen = [r for r in rows if keep(r)]
    return {
        "requests": len(chosen),
        "errors": sum(r["status"] >= 400 for r in chosen),
        "prompt_tokens": sum(r["prompt_tokens"] for r in chosen),
        "completion_tokens": sum(r["completion_tokens"] for r in chosen),
        "cached_tokens": 0,
        "cost_usd": sum(r["cost_usd"] or 0.0 for r in chosen),
        "unpriced_requests": sum(r["cost_usd"] is None for r in chosen),
    }


def test_spend_sums_filters_and_pages(gateways: Start, tmp_path: Path) -> None:
    gw = gateways(CONFIG, workers=2)
    rows = synthetic()

    async def load() -> None:
        engine = make_engine(f"sqlite:///{tmp_path}/.faregate/state.db")  # the gateway's own database
        try:
            await spend.insert_rows(engine, [spend.prepare(r) for r in rows])
            await spend.insert_rows(engine, [spend.prepare(r) for r in rows[:5]])  # again: no duplicates
        finally:
            await engine.dispose()

    asyncio.run(load())
    day = {0: "2024-01-01", 1: "2024-01-02", 2: "2024-01-03"}
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as http:

        def get(**params: Any) -> dict[str, Any]:
            r = http.get("/admin/spend", params=params)
            assert r.status_code == 200, r.text
            return dict(r.json())

        by_day = get(group_by="day")["data"]
        assert [r["day"] for r in by_day] == list(day.values())
        for d, got in enumerate(by_day):
            want = expected(rows, lambda r, d=d: time.strftime("%Y-%m-%d", time.gmtime(r["ts"])) == day[d])
            assert {k: v for k, v in got.items() if k != "day"} == pytest.approx(want)
        one_day = get(group_by="key,model", start="2024-01-02", end="2024-01-02")["data"]
        assert sum(r["requests"] for r in one_day) == 10
        assert [(r["key_id"], r["model"]) for r in one_day] == sorted(
            {(r["key_id"], r["model"]) for r in one_day}, key=lambda t: (t[0] is not None, t)
        )
        k1 = get(key_id="k1")["data"][0]
        assert k1 == pytest.approx(expected(rows, lambda r: r["key_id"] == "k1"))
        t1b = get(team_id="t1", model="b", group_by="team,deployment")["data"]
        assert t1b == [{"team_id": "t1", "deployment": "p/b", **expected(rows, lambda r: r["team_id"] == "t1" and r["model"] == "b")}]
        seconds = get(start=str(rows[1]["ts"]), end=str(rows[4]["ts"]))["data"][0]  # Unix seconds, `end` included
        assert seconds["requests"] == len([r for r in rows if rows[1]["ts"] <= r["ts"] <= rows[4]["ts"]])
        capped = get(group_by="key,day", limit=2)
        assert len(capped["data"]) == 2 and capped["has_more"] is True
        assert get(start="2030-01-01")["data"][0]["requests"] == 0

        page1 = http.get("/admin/spend/logs", params={"limit": 7, "model": "a"}).json()
        page2 = http.get("/admin/spend/logs", params={"limit": 7, "offset": 7, "model": "a"}).json()
        listed = page1["data"] + page2["data"]
        assert page1["has_more"] is True and len(listed) == 14 and len({r["request_id"] for r in listed}) == 14
        assert [r["ts"] for r in listed] == sorted((r["ts"] for r in rows if r["model"] == "a"), reverse=True)[:14]

        for path, params, param in [
            ("/admin/spend", {"group_by": "key,colour"}, "group_by"),
            ("/admin/spend", {"group_by": "day,day"}, "group_by"),
            ("/admin/spend", {"limit": "1001"}, "limit"),
            ("/admin/spend", {"limit": "ten"}, "limit"),
            ("/admin/spend", {"start": "2024-02-30"}, "start"),
            ("/admin/spend", {"end": "yesterday"}, "end"),
            ("/admin/spend", {"start": "2024-01-03", "end": "2024-01-02"}, "start"),
            ("/admin/spend", {"key": "k1"}, "key"),
            ("/admin/spend", {"offset": "5"}, "offset"),
            ("/admin/spend", {"model": ""}, "model"),
            ("/admin/spend/logs", {"limit": "101"}, "limit"),
            ("/admin/spend/logs", {"offset": "-1"}, "offset"),
            ("/admin/spend/logs", {"group_by": "day"}, "group_by"),
        ]:
            r = http.get(path, params=params)
            assert r.status_code == 400, (path, params, r.text)
            assert r.json()["error"]["param"] == param, (params, r.json())
        twice = http.get("/admin/spend?model=a&model=b")
        assert twice.status_code == 400 and "2 times" in twice.json()["error"]["message"]
        assert httpx.get(gw.url + "/admin/spend").status_code == 401
        created = http.post("/admin/keys", json={"name": "not-admin"}).json()
        assert httpx.get(gw.url + "/admin/spend/logs", headers={"authorization": f"Bearer {created['key']}"}).status_code == 401
        assert http.post("/admin/spend").status_code == 405
