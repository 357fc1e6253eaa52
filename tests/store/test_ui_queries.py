"""The dashboard's queries (faregate.store.ui_queries) on SQLite and a real PostgreSQL: the daily
sums kept by migration 0008's trigger equal the spend log's own sums (replays counted once, rows
from before the migration summed in), key search matches literally, capped counts, keyset pages
that visit every row once, status classes, and one request's story."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.store import keys as key_store
from faregate.store import spend
from faregate.store import teams as team_store
from faregate.store import ui_queries as uq
from faregate.store.db import make_engine, upgrade
from tests.support.migrations import to_revision

DAY1 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
GROUP_OF = {"key": "key_id", "team": "team_id", "model": "model", "deployment": "deployment", "day": "day"}


def row(request_id: str, ts: float, **extra: Any) -> dict[str, Any]:
    return spend.prepare({"request_id": request_id, "ts": ts, "endpoint": "chat", "status": 200, "latency_ms": 1.0, **extra})


def rows() -> list[dict[str, Any]]:
    out = []
    for i in range(60):
        out.append(
            row(
                f"r{i:03d}",
                DAY1 + (i % 3) * 86_400 + i,
                key_id=None if i % 3 == 0 else ("k1", "k2")[i % 2],
                team_id="t1" if i % 2 else None,
                model=("m1", "m2", "m3")[i % 3],
                deployment=f"up/{i % 2}",
                status=(200, 200, 200, 429, 500)[i % 5],
                prompt_tokens=i,
                completion_tokens=2 * i,
                cached_tokens=1,
                cost_usd=None if i % 7 == 0 else i / 100,
            )
        )
    return out


def key(key_id: str, name: str, created: float, team_id: str | None = None) -> dict[str, Any]:
    return {"id": key_id, "key_hash": key_id * 4, "prefix": f"sk-fg-{key_id}…", "name": name, "team_id": team_id, "models": [],
            "metadata": {}, "enabled": True, "created_at": created, "updated_at": created}  # fmt: skip


def run(database: str, body: Any) -> None:
    async def main() -> None:
        engine = make_engine(database)
        try:
            await body(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_daily_sums_equal_the_logs_own_sums_and_replays_count_once(database: str) -> None:
    async def body(engine: AsyncEngine) -> None:
        await upgrade(engine)
        batch = rows()
        await spend.insert_rows(engine, batch[:40])
        await spend.insert_rows(engine, batch)  # a replay of the first 40 with 20 new ones
        first, last = dt.date(2024, 1, 1), dt.date(2024, 1, 3)
        for group in uq.GROUPS:
            got, totals, more = await uq.spend(engine, uq.SpendQuery(group, first, last), 100)
            want, _ = await spend.aggregate(engine, [group], spend.Filters(since=DAY1, before=DAY1 + 3 * 86_400), 100)
            column = GROUP_OF[group]
            assert {r["value"]: _sums(r) for r in got} == {w[column]: _sums(w) for w in want}, group
            assert not more and totals["requests"] == 60
        assert [r["value"] for r in (await uq.spend(engine, uq.SpendQuery("day", first, last), 100))[0]] == [
            "2024-01-01",
            "2024-01-02",
            "2024-01-03",
        ]
        by_cost, _, more = await uq.spend(engine, uq.SpendQuery("model", first, last), 2)
        assert more and by_cost[0]["cost_usd"] >= by_cost[1]["cost_usd"]
        second = dt.date(2024, 1, 2)
        one_day, totals, _ = await uq.spend(engine, uq.SpendQuery("day", second, second, key_id="k2"), 10)
        want, _ = await spend.aggregate(engine, [], spend.Filters(since=DAY1 + 86_400, before=DAY1 + 2 * 86_400, key_id="k2"), 1)
        assert [r["value"] for r in one_day] == ["2024-01-02"] and _sums(totals) == _sums(want[0]) and totals["requests"] > 0

    run(database, body)


def _sums(r: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(round(r[name], 9) if name == "cost_usd" else r[name] for name in uq.SUMS)


def test_the_migration_sums_rows_logged_before_it(database: str) -> None:
    async def body(engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            await connection.run_sync(to_revision("0007"))
            await connection.execute(
                text(
                    "INSERT INTO spend_log (request_id, ts, day, key_id, endpoint, stream, latency_ms, status, attempts, cost_usd) "
                    "VALUES ('old1', :ts, '2024-01-01', 'k1', 'chat', false, 1.0, 200, 1, 0.5), "
                    "('old2', :ts, '2024-01-01', NULL, 'chat', false, 1.0, 502, 2, NULL)"
                ),
                {"ts": DAY1},
            )
        await upgrade(engine)
        await spend.insert_rows(engine, [row("new", DAY1 + 5, key_id="k1", cost_usd=0.25, generation="abc123")])
        got, _, _ = await uq.spend(engine, uq.SpendQuery("key", dt.date(2024, 1, 1), dt.date(2024, 1, 1)), 10)
        assert {r["value"]: (r["requests"], r["errors"], r["cost_usd"], r["unpriced_requests"]) for r in got} == {
            "k1": (2, 0, 0.75, 0),
            None: (1, 1, 0.0, 1),
        }
        story = await uq.request_story(engine, "new")
        assert story is not None and story["generation"] == "abc123" and story["failures"] is None

    run(database, body)


def test_key_search_is_literal_and_counts_are_capped(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(engine: AsyncEngine) -> None:
        await upgrade(engine)
        await team_store.insert_team(engine, {"id": "t1", "name": "Research", "metadata": {}, "created_at": 1.0, "updated_at": 1.0})
        await key_store.insert_key(engine, key("key_a1", "Billing <b>bot</b>", 1.0, "t1"))
        await key_store.insert_key(engine, key("key_a2", "100% ready", 2.0))
        await key_store.insert_key(engine, key("key_b3", "under_score", 3.0))
        await key_store.insert_key(engine, key("key_b4", "underXscore", 4.0))

        async def names(search: str | None, team: str | None = None) -> list[str]:
            return [r["name"] for r in (await uq.find_keys(engine, search, team, 10, 0)).rows]

        assert await names(None) == ["underXscore", "under_score", "100% ready", "Billing <b>bot</b>"]  # newest first
        assert await names("BILLING") == ["Billing <b>bot</b>"]  # any case
        assert await names("research") == ["Billing <b>bot</b>"]  # the team's name
        assert await names("key_b") == ["underXscore", "under_score"]  # an id from the start
        assert await names("y_b") == []  # ...not from the middle
        assert await names("%") == ["100% ready"] and await names("r_s") == ["under_score"]  # wildcards are literal
        assert await names(None, "t1") == ["Billing <b>bot</b>"]
        page = await uq.find_keys(engine, None, None, 2, 2)
        assert [r["id"] for r in page.rows] == ["key_a2", "key_a1"] and (page.total, page.capped) == (4, False)
        assert page.rows[1]["team_name"] == "Research"
        monkeypatch.setattr(uq, "COUNT_CAP", 3)
        page = await uq.find_keys(engine, None, None, 2, 0)
        assert (page.total, page.capped) == (3, True)
        teams = await uq.find_teams(engine, "res", 10, 0)
        assert [(t["name"], t["keys"]) for t in teams.rows] == [("Research", 1)]

    run(database, body)


def test_request_pages_visit_every_match_once_newest_first(database: str) -> None:
    async def body(engine: AsyncEngine) -> None:
        await upgrade(engine)
        batch = [*rows(), row("tie-a", DAY1 + 500_000), row("tie-b", DAY1 + 500_000)]  # the same ts: the id breaks the tie
        await spend.insert_rows(engine, batch)
        seen: list[str] = []
        after = None
        while True:
            page, after, total, capped = await uq.find_requests(engine, uq.RequestQuery(), 7, after)
            seen += [r["request_id"] for r in page]
            assert (total, capped) == (62, False)
            if after is None:
                break
        want = [r["request_id"] for r in sorted(batch, key=lambda r: (-r["ts"], r["request_id"]))]
        assert seen == want and seen[:2] == ["tie-a", "tie-b"]
        listed, _ = await spend.list_rows(engine, spend.Filters(), 62, 0)  # the admin API's order
        assert [r["request_id"] for r in listed] == want

        async def ids(q: uq.RequestQuery) -> set[str]:
            return {r["request_id"] for r in (await uq.find_requests(engine, q, 100, None))[0]}

        by_status = {s: {r["request_id"] for r in batch if r["status"] == s} for s in (200, 429, 500)}
        assert await ids(uq.RequestQuery(status=429)) == by_status[429]
        assert await ids(uq.RequestQuery(status="error")) == by_status[429] | by_status[500]
        assert await ids(uq.RequestQuery(status="5xx")) == by_status[500]
        assert await ids(uq.RequestQuery(status="ok")) == by_status[200]
        assert await ids(uq.RequestQuery(model="m2", key_id="k1")) == {
            r["request_id"] for r in batch if r["model"] == "m2" and r["key_id"] == "k1"
        }
        assert await ids(uq.RequestQuery(since=DAY1 + 86_400, before=DAY1 + 2 * 86_400)) == {
            r["request_id"] for r in batch if DAY1 + 86_400 <= r["ts"] < DAY1 + 2 * 86_400
        }
        assert await ids(uq.RequestQuery(request_id="r007")) == {"r007"}
        assert uq.Cursor.parse(uq.Cursor(1.5, "a~b").text()) == uq.Cursor(1.5, "a~b")
        assert uq.Cursor.parse("nan~x") is None and uq.Cursor.parse("garbage") is None

    run(database, body)
