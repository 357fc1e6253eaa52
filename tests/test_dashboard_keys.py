"""Keys and teams in the dashboard, in a real headless Chromium against a real gateway: a key made
in the UI works with the openai SDK and is refused once revoked in the UI; its secret is in the
one reveal answer and nowhere else; a hostile key name stays text; search and pages; edit and
rotate (old secret kept for the grace period); a team's keys and spend."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.browser import Browser, Tab
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HOSTILE = "<img src=x onerror=alert(1)>"
BULK = 55


def config(upstream: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {upstream}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
models:
  gpt-4o-mini:
    - {{provider: up, model: gpt-4o-mini}}
"""


class World:
    def __init__(self, gw: GatewayProcess, browser: Browser, team_id: str, hostile: dict[str, str]) -> None:
        self.gw, self.browser, self.team_id, self.hostile = gw, browser, team_id, hostile
        self.ui = gw.url + "/ui/"

    def admin(self) -> Tab:
        tab = self.browser.page()
        tab.sign_in(self.ui, MASTER_KEY)
        return tab

    def sdk(self, secret: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url + "/v1", api_key=secret, max_retries=0, timeout=20)

    def key(self, key_id: str) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(f"{self.gw.url}/admin/keys/{key_id}", headers=AUTH, timeout=10).json()
        return answer


def ask(sdk: openai.OpenAI) -> str:
    return sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dashboard-keys")
    with FakeOpenAI() as fake, GatewayProcess(tmp, config(fake.url), env=UPSTREAM_ENV) as gw, Browser() as browser:
        team = httpx.post(gw.url + "/admin/teams", headers=AUTH, json={"name": "Research"}, timeout=10).json()
        for i in range(BULK):
            body = {"name": f"bulk {i:02d}", **({"team_id": team["id"]} if i % 5 == 0 else {})}
            assert httpx.post(gw.url + "/admin/keys", headers=AUTH, json=body, timeout=10).status_code == 201
        hostile = httpx.post(gw.url + "/admin/keys", headers=AUTH, json={"name": HOSTILE, "team_id": team["id"]}, timeout=10).json()
        yield World(gw, browser, team["id"], hostile)


def test_a_key_made_in_the_ui_works_until_revoked_in_the_ui_and_its_secret_is_shown_once(world: World) -> None:
    tab = world.admin()
    tab.page.on("dialog", lambda dialog: dialog.accept())  # the revoke form asks first
    tab.goto(world.ui + "keys")
    tab.page.fill("#create-key input[name=name]", "made in the ui")
    tab.page.select_option("#create-key select[name=team_id]", world.team_id)
    tab.page.fill("#create-key input[name=budget_usd]", "2.5")
    tab.page.fill("#create-key input[name=models]", "gpt-4o-mini")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#create-key button[type=submit]")
    secret = tab.page.text_content("#new-secret") or ""
    assert secret.startswith("sk-fg-") and tab.page.locator("button[data-copy='#new-secret']").count() == 1
    reveal = [f for f in tab.responses if secret in f.body.decode("utf-8", "replace")]
    assert len(reveal) == 1 and reveal[0].url == world.ui + "keys" and reveal[0].headers["cache-control"] == "no-store"
    sdk = world.sdk(secret)
    assert ask(sdk)
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#to-key")
    key_id = tab.page.url.split("id=")[1]
    shown = world.key(key_id)
    assert shown["name"] == "made in the ui" and shown["budget_usd"] == 2.5 and shown["models"] == ["gpt-4o-mini"]
    assert shown["team_id"] == world.team_id
    for page in ("keys", "keys?q=made", f"team?id={world.team_id}", "requests", "spend?group=key"):
        assert tab.goto(world.ui + page).status == 200
    tab.goto(world.ui + f"vkey?id={key_id}")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#revoke-key button[type=submit]")
    assert (tab.page.text_content("#key-state") or "").startswith("revoked")
    with pytest.raises(openai.AuthenticationError):
        ask(sdk)
    assert world.key(key_id)["revoked_at"] is not None
    tab.responses.remove(reveal[0])  # the one answer allowed to carry it
    tab.assert_no_secret([secret, MASTER_KEY, UPSTREAM_KEY])
    tab.assert_no_errors()
    tab.close()


def test_a_hostile_key_name_stays_text(world: World) -> None:
    tab = world.admin()
    dialogs: list[str] = []
    tab.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.goto(world.ui + "keys?q=%3Cimg")
    names = tab.page.locator("#keys a.key-name")
    assert names.count() == 1 and names.first.text_content() == HOSTILE
    tab.goto(world.ui + f"vkey?id={world.hostile['id']}")
    assert tab.page.text_content("#key-name") == HOSTILE
    tab.goto(world.ui + f"team?id={world.team_id}")
    assert HOSTILE in (tab.page.text_content("#team-keys") or "")
    assert tab.page.locator("img").count() == 0 and dialogs == []
    tab.assert_no_errors()
    tab.close()


def test_search_and_pages(world: World) -> None:
    tab = world.admin()
    tab.goto(world.ui + "keys")
    total = len(httpx.get(world.gw.url + "/admin/keys?limit=100", headers=AUTH, timeout=10).json()["data"])
    assert tab.page.locator("#keys tbody tr").count() == 50
    assert tab.page.text_content("#total") == f"{total} key(s)"
    seen = set(tab.page.locator("#keys tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)"))
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("nav.pager a:has-text('older')")
    rest = set(tab.page.locator("#keys tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)"))
    assert len(rest) == total - 50 and not seen & rest and tab.page.locator("nav.pager a:has-text('older')").count() == 0
    tab.page.fill("form.search input[name=q]", "BULK 1")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("form.search button[type=submit]")
    names = tab.page.locator("#keys a.key-name").all_text_contents()
    assert sorted(names) == [f"bulk {i}" for i in range(10, 20)]
    tab.goto(world.ui + "keys")
    tab.page.select_option("form.search select[name=team]", world.team_id)
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("form.search button[type=submit]")
    in_team = tab.page.locator("#keys a.key-name").all_text_contents()
    assert HOSTILE in in_team and {n for n in in_team if n.startswith("bulk")} == {f"bulk {i:02d}" for i in range(0, BULK, 5)}
    tab.goto(world.ui + "teams")
    assert "Research" in (tab.page.text_content("#teams") or "")
    tab.assert_no_errors()
    tab.close()


def test_edit_and_rotate_with_grace(world: World) -> None:
    created = httpx.post(world.gw.url + "/admin/keys", headers=AUTH, json={"name": "to edit"}, timeout=10).json()
    tab = world.admin()
    tab.page.on("dialog", lambda dialog: dialog.accept())
    tab.goto(world.ui + f"vkey?id={created['id']}")
    tab.page.fill("#edit-key input[name=budget_usd]", "9")
    tab.page.select_option("#edit-key select[name=budget_period]", "monthly")
    tab.page.fill("#edit-key input[name=rpm]", "7")
    tab.page.fill("#edit-key input[name=expires]", "2099-01-31")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#edit-key button[type=submit]")
    assert (tab.page.text_content("#notice") or "").startswith("Saved.")
    shown = world.key(created["id"])
    assert (shown["budget_usd"], shown["budget_period"], shown["rpm"]) == (9.0, "monthly", 7)
    assert shown["expires_at"] == 4_073_500_800.0  # 2099-01-31T00:00:00Z
    tab.page.fill("#edit-key input[name=rpm]", "lots")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#edit-key button[type=submit]")
    assert "'rpm' must be a whole number" in (tab.page.text_content("#error") or "") and world.key(created["id"])["rpm"] == 7
    tab.errors.clear()  # the refused form is answered 400, which the console logs by design
    tab.page.fill("#rotate-key input[name=grace_seconds]", "600")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#rotate-key button[type=submit]")
    new_secret = tab.page.text_content("#new-secret") or ""
    assert new_secret.startswith("sk-fg-") and new_secret != created["key"]
    assert ask(world.sdk(new_secret)) and ask(world.sdk(created["key"]))  # the old one works during its grace
    until = world.key(created["id"])["previous_secret_valid_until"]
    assert isinstance(until, float) and until > time.time() + 500
    tab.assert_no_errors()
    tab.close()


def test_a_virtual_key_session_and_a_forged_post_cannot_change_keys(world: World) -> None:
    tab = world.browser.page()
    tab.sign_in(world.ui, world.hostile["key"])
    for page in (
        "keys",
        f"vkey?id={world.hostile['id']}",
        "teams",
        f"team?id={world.team_id}",
        "spend",
        "spend.csv",
        "requests",
        "request?id=x",
    ):
        assert tab.goto(world.ui + page).status == 403, page
    tab.close()
    before = httpx.get(world.gw.url + "/admin/keys?limit=100", headers=AUTH, timeout=10).json()["total"]
    tab = world.admin()
    tab.goto(world.ui + "keys")
    tab.page.evaluate("() => document.querySelector('#create-key input[name=csrf]').remove()")
    tab.page.fill("#create-key input[name=name]", "forged")
    with tab.page.expect_navigation():
        tab.page.click("#create-key button[type=submit]")
    assert "CSRF token is missing or wrong" in (tab.page.text_content("#message") or "")
    assert httpx.get(world.gw.url + "/admin/keys?limit=100", headers=AUTH, timeout=10).json()["total"] == before
    tab.close()


def test_create_and_edit_a_team_in_the_ui(world: World) -> None:
    tab = world.admin()
    tab.goto(world.ui + "teams")
    tab.page.fill("#create-team input[name=name]", "Made here")
    tab.page.fill("#create-team input[name=budget_usd]", "40")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#create-team button[type=submit]")
    team_id = tab.page.url.split("id=")[1]
    team = httpx.get(f"{world.gw.url}/admin/teams/{team_id}", headers=AUTH, timeout=10).json()
    assert (team["name"], team["budget_usd"], team["enabled"]) == ("Made here", 40.0, True)
    member = httpx.post(world.gw.url + "/admin/keys", headers=AUTH, json={"name": "member", "team_id": team_id}, timeout=10).json()
    assert ask(world.sdk(member["key"]))
    tab.page.fill("#edit-team input[name=tpm]", "5000")
    tab.page.uncheck("#edit-team input[name=enabled][type=checkbox]")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#edit-team button[type=submit]")
    assert (tab.page.text_content("#notice") or "").startswith("Saved.")
    team = httpx.get(f"{world.gw.url}/admin/teams/{team_id}", headers=AUTH, timeout=10).json()
    assert (team["tpm"], team["enabled"], team["budget_usd"]) == (5000, False, 40.0)
    with pytest.raises(openai.AuthenticationError):
        ask(world.sdk(member["key"]))  # a disabled team's keys are refused
    tab.goto(world.ui + "teams")
    tab.page.fill("#create-team input[name=name]", "Made here")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#create-team button[type=submit]")
    assert "exists already" in (tab.page.text_content("#error") or "")
    tab.close()
