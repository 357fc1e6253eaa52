"""Spend and Requests in the dashboard, in a real headless Chromium against a real gateway with real
traffic: the spend table's numbers per key, team, model, deployment and day are the admin API's
(/admin/spend), the CSV holds the same and defuses formulas, the requests list is the spend log's
(/admin/spend/logs) and its search filters, and one request's story shows its fallback, failed
attempts, generation and credential fingerprint. No secret in anything the pages fetched."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from faregate.dashboard.pages_spend import cell
from faregate.types import fingerprint
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.browser import Browser, Tab
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY
from tests.support.procs import MASTER_KEY, GatewayProcess, free_port

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
FORMULA = '=HYPERLINK("http://evil.example","x")'
COLUMN = {"key": "key_id", "team": "team_id", "model": "model", "deployment": "deployment", "day": "day"}


def config(upstream: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {upstream}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
  dead:
    type: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    connect_timeout: 2
models:
  gpt-4o-mini:
    - {{provider: up, model: gpt-4o-mini}}
  primary:
    - {{provider: dead, model: gpt-4o}}
fallbacks:
  primary: [gpt-4o-mini]
routing:
  retries: 0
"""


class World:
    def __init__(self, gw: GatewayProcess, browser: Browser, secrets: tuple[str, ...], key_ids: list[str]) -> None:
        self.gw, self.browser, self.secrets, self.key_ids = gw, browser, secrets, key_ids
        self.ui = gw.url + "/ui/"

    def admin(self) -> Tab:
        tab = self.browser.page()
        tab.sign_in(self.ui, MASTER_KEY)
        return tab

    def api(self, path: str) -> Any:
        return httpx.get(self.gw.url + path, headers=AUTH, timeout=10).json()


def chat(sdk: openai.OpenAI, model: str = "gpt-4o-mini", stream: bool = False) -> None:
    answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=stream)
    if stream:
        for _ in answer:  # type: ignore[union-attr]
            pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dashboard-spend")
    with FakeOpenAI() as fake, GatewayProcess(tmp, config(fake.url), env=UPSTREAM_ENV) as gw, Browser() as browser:
        team = httpx.post(gw.url + "/admin/teams", headers=AUTH, json={"name": "Research"}, timeout=10).json()
        a = httpx.post(gw.url + "/admin/keys", headers=AUTH, json={"name": FORMULA, "team_id": team["id"]}, timeout=10).json()
        b = httpx.post(gw.url + "/admin/keys", headers=AUTH, json={"name": "plain"}, timeout=10).json()
        sdk_a, sdk_b = (openai.OpenAI(base_url=gw.url + "/v1", api_key=k["key"], max_retries=0, timeout=20) for k in (a, b))
        for _ in range(3):
            chat(sdk_a)
        chat(sdk_a, "primary")  # the dead deployment fails, the fallback answers
        chat(sdk_b)
        chat(sdk_b, stream=True)
        with pytest.raises(openai.NotFoundError):
            chat(sdk_b, "no-such-model")
        chat(openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20))
        while httpx.get(gw.url + "/admin/spend", headers=AUTH, timeout=10).json()["data"][0]["requests"] != 8:
            time.sleep(0.05)  # the spend log is written in batches
        yield World(gw, browser, (MASTER_KEY, UPSTREAM_KEY, a["key"], b["key"]), [a["id"], b["id"]])


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def table(tab: Tab) -> dict[str | None, tuple[int, float]]:
    rows = tab.page.locator("#spend tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.value, r.querySelector('.requests').textContent, r.querySelector('.cost').dataset.usd])"
    )
    return {value or None: (int(requests), float(usd)) for value, requests, usd in rows}


def test_spend_numbers_are_the_admin_apis_for_every_grouping(world: World) -> None:
    tab = world.admin()
    for group in ("key", "team", "model", "deployment", "day"):
        tab.goto(world.ui + f"spend?group={group}&start={today()}&end={today()}")
        api = world.api(f"/admin/spend?group_by={group}&start={today()}&end={today()}")["data"]
        want = {r[COLUMN[group]]: (r["requests"], r["cost_usd"]) for r in api}
        got = table(tab)
        assert got.keys() == want.keys(), group
        for value, (requests, cost) in want.items():
            assert got[value][0] == requests and got[value][1] == pytest.approx(cost, abs=1e-12), (group, value)
        assert tab.page.locator("figure.chart svg rect").count() >= 1
        total = world.api(f"/admin/spend?start={today()}&end={today()}")["data"][0]
        assert tab.page.text_content("#spend-requests") == str(total["requests"]) == "8"
    tab.goto(world.ui + "spend?group=key")
    assert FORMULA in (tab.page.text_content("#spend") or "")  # the name, as text
    tab.screenshot("dashboard-spend")
    tab.assert_no_errors()
    tab.assert_no_secret(world.secrets)
    tab.close()


def test_the_csv_holds_the_same_sums_and_defuses_formulas(world: World) -> None:
    tab = world.admin()
    tab.goto(world.ui + f"spend?group=key&start={today()}&end={today()}")
    with tab.page.expect_download() as download:
        tab.page.click("#csv")
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    rows = list(csv.DictReader(io.StringIO(text)))
    api = {r["key_id"] or "": r for r in world.api(f"/admin/spend?group_by=key&start={today()}&end={today()}")["data"]}
    assert {r["key"]: int(r["requests"]) for r in rows} == {k: v["requests"] for k, v in api.items()}
    assert {r["key"]: float(r["cost_usd"]) for r in rows} == pytest.approx({k: v["cost_usd"] for k, v in api.items()})
    names = {r["key"]: r["name"] for r in rows}
    assert names[world.key_ids[0]] == "'" + FORMULA and names[world.key_ids[1]] == "plain"
    assert '"\'=HYPERLINK(""http://evil.example"",""x"")"' in text  # quoted, its quotes doubled
    assert [cell(v) for v in ("=1", "+1", "-1", "@A1", "\tx", "\rx", "ok", 5)] == ["'=1", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "ok", 5]
    tab.close()


def test_the_requests_list_is_the_spend_log_and_its_search_filters(world: World) -> None:
    tab = world.admin()
    tab.goto(world.ui + "requests")
    listed = tab.page.locator("#requests tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    logs = world.api("/admin/spend/logs?limit=100")["data"]
    assert listed == [r["request_id"] for r in logs] and len(listed) == 8
    assert tab.page.text_content("#total") == "8 request(s) match; newest first."
    for query, want in (
        ("status=404", [r for r in logs if r["status"] == 404]),
        ("status=error", [r for r in logs if r["status"] >= 400]),
        (f"key_id={world.key_ids[1]}", [r for r in logs if r["key_id"] == world.key_ids[1]]),
        ("model=primary", [r for r in logs if r["model"] == "primary"]),
        (f"request_id={logs[3]['request_id']}", [logs[3]]),
        (f"start={today()}&end={today()}", logs),
        ("start=2001-01-01&end=2001-01-02", []),
    ):
        tab.goto(world.ui + "requests?" + query)
        got = tab.page.locator("#requests tbody tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
        assert got == [r["request_id"] for r in want], query
    tab.goto(world.ui + "requests?status=nonsense")
    assert "status is a code" in (tab.page.text_content("#note") or "")
    tab.assert_no_errors()
    tab.assert_no_secret(world.secrets)
    tab.close()


def test_one_requests_whole_story(world: World) -> None:
    tab = world.admin()
    fallback = world.api("/admin/spend/logs?model=primary")["data"][0]
    tab.goto(world.ui + "requests?model=primary")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#requests a.story")
    story = {name: tab.page.text_content(f"#story-{name}") or "" for name in ("model", "deployment", "credential", "fallback", "failures",
             "status", "generation", "attempts", "cost", "tokens")}  # fmt: skip
    assert story["model"] == "primary" and story["fallback"] == "from primary" and story["status"] == "200"
    assert story["deployment"].startswith("up/gpt-4o-mini") and story["credential"] == f"up/main:{fingerprint(UPSTREAM_KEY)}"
    assert story["failures"].startswith("dead/gpt-4o: ") and story["attempts"] == str(fallback["attempts"])
    assert story["generation"] == httpx.get(world.gw.url + "/readyz", timeout=10).json()["generation"]
    assert f"completion {fallback['completion_tokens']}" in story["tokens"] and story["cost"].startswith("$")
    refused = world.api("/admin/spend/logs?model=no-such-model")["data"][0]
    tab.goto(world.ui + f"request?id={refused['request_id']}")
    assert tab.page.text_content("#story-status") == "404" and tab.page.text_content("#story-error") == refused["error_code"]
    assert tab.goto(world.ui + "request?id=nope").status == 404
    tab.errors.clear()  # the 404 just asked for is logged by the console by design
    tab.assert_no_secret(world.secrets)
    tab.close()
