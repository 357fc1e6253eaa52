"""The dashboard in a real headless Chromium against a real gateway with real traffic (the openai
SDK through faregate to a fake OpenAI upstream): every page loads with no console error, the
overview's numbers are the admin API's, no secret reaches the page or anything it fetched, the
probe and reload buttons act, a state change without the CSRF token is refused, and a
virtual-key session sees only its own key (names rendered as text)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from faregate.types import fingerprint
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.browser import Browser, Tab
from tests.support.configs import UPSTREAM_ENV, UPSTREAM_KEY
from tests.support.nginx import MAIN_CONF, Nginx
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.raw_http import make_ca

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HOSTILE = "<img src=x onerror=alert(1)>"
ADMIN_PAGES = ("", "deployments", "credentials", "config", "doctor")


PREFIXED_SITE = """
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location /llm/ {{
      proxy_pass http://127.0.0.1:{upstream}/;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
"""


def config(upstream: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {upstream}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    headers: {{x-extra: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    - {{provider: up, model: gpt-4o-mini}}
  "{HOSTILE}":
    - {{provider: up, model: gpt-4o, weight: 0}}
"""


class World:
    def __init__(self, gw: GatewayProcess, browser: Browser, key_secret: str, key_id: str) -> None:
        self.gw, self.browser, self.key_secret, self.key_id = gw, browser, key_secret, key_id
        self.ui = gw.url + "/ui/"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (MASTER_KEY, UPSTREAM_KEY, self.key_secret)

    def tab(self, key: str) -> Tab:
        tab = self.browser.page()
        tab.sign_in(self.ui, key)
        return tab


def spend_total(gw: GatewayProcess) -> dict[str, object]:
    rows = httpx.get(gw.url + "/admin/spend", headers=AUTH, timeout=10).json()["data"]
    return rows[0] if rows else {"requests": 0}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with FakeOpenAI() as fake, GatewayProcess(tmp, config(fake.url), env=UPSTREAM_ENV) as gw, Browser() as browser:
        created = httpx.post(gw.url + "/admin/keys", headers=AUTH, json={"name": HOSTILE, "budget_usd": 5.0, "rpm": 100}, timeout=10).json()
        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=created["key"], max_retries=0, timeout=20)
        for i in range(3):
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i}"}])
        stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}], stream=True)
        for _ in stream:
            pass
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        admin_sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        admin_sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "admin"}])
        while spend_total(gw)["requests"] != 6:  # the spend log is written in batches: wait for all six rows
            time.sleep(0.05)
        yield World(gw, browser, created["key"], created["id"])


def test_every_admin_page_loads_without_an_error_or_a_secret(world: World) -> None:
    tab = world.tab(MASTER_KEY)
    assert tab.page.url == world.ui  # signed in: the overview
    for page in ADMIN_PAGES:
        answer = tab.goto(world.ui + page)
        assert answer.status == 200, (page, answer.body[:300])
        name = page or "overview"
        tab.screenshot(f"dashboard-{name}", readme=name if name in ("overview", "deployments") else None)
    tab.assert_no_errors()
    tab.assert_no_secret(world.secrets)
    assert not any(f.status >= 400 for f in tab.responses), [(f.url, f.status) for f in tab.responses if f.status >= 400]
    tab.close()


def test_overview_numbers_are_the_admin_apis(world: World) -> None:
    tab = world.tab(MASTER_KEY)
    tab.goto(world.ui + "?window=month")
    total = spend_total(world.gw)
    text = {i: tab.page.text_content(f"#{i}") for i in ("requests", "errors", "prompt-tokens", "completion-tokens")}
    assert text == {
        "requests": str(total["requests"]),
        "errors": str(total["errors"]),
        "prompt-tokens": str(total["prompt_tokens"]),
        "completion-tokens": str(total["completion_tokens"]),
    }
    assert float(tab.page.get_attribute("#spend", "data-usd") or "nan") == pytest.approx(total["cost_usd"])
    assert total["requests"] == 6 and total["errors"] == 1
    top_models = tab.page.text_content("#top-models") or ""
    assert "gpt-4o-mini" in top_models
    assert HOSTILE in (tab.page.text_content("#top-keys") or "")  # the key's name, as text
    assert tab.page.locator("img").count() == 0
    assert tab.page.locator("#latency-p50").text_content() != "–" and tab.page.locator("#ttfb-p50").text_content() != "–"
    assert tab.page.text_content("#sampled") == "6"  # the page says what the percentiles are over
    tab.assert_no_errors()
    tab.close()


def test_deployments_probe_and_the_reload_acknowledgements(world: World) -> None:
    tab = world.tab(MASTER_KEY)
    tab.goto(world.ui + "deployments")
    rows = tab.page.locator("#deployments tbody tr")
    assert rows.count() == 2
    disabled = tab.page.locator("#deployments tbody tr", has_text="weight 0")
    assert HOSTILE in (disabled.text_content() or "") and "disabled" in (disabled.text_content() or "")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.locator("#deployments tbody tr", has_text="healthy").locator("button.probe").click()
    assert tab.page.text_content("#probe-verdict") == "ok"
    tab.goto(world.ui + "credentials")
    assert f"up/main:{fingerprint(UPSTREAM_KEY)}" in (tab.page.text_content("table.credentials") or "")
    with tab.page.expect_navigation(wait_until="networkidle"):
        tab.page.click("#reload")
    assert tab.page.get_attribute("#reload-result", "data-ok") == "true"
    acks = tab.page.locator("#acks tbody tr")
    assert acks.count() == 1 and "yes" in (acks.text_content() or "")
    tab.screenshot("dashboard-credentials-reloaded")
    tab.assert_no_errors()
    tab.assert_no_secret(world.secrets)
    tab.close()


def test_config_shows_fingerprints_and_doctor_runs_live(world: World) -> None:
    tab = world.tab(MASTER_KEY)
    tab.goto(world.ui + "config")
    shown = tab.page.text_content("#config") or ""
    assert "${UPSTREAM_KEY} (sha256:" + fingerprint(UPSTREAM_KEY) + ")" in shown
    assert "x-extra: '[redacted:" in shown or 'x-extra: "[redacted:' in shown or "x-extra: [redacted:" in shown
    assert tab.page.text_content("#generation") == httpx.get(world.gw.url + "/readyz").json()["generation"]
    tab.goto(world.ui + "doctor")
    offline = tab.page.text_content("#counts") or ""
    with tab.page.expect_navigation(wait_until="networkidle", timeout=90_000):
        tab.page.click("#live")
    assert "with the live walk" in (tab.page.text_content("#counts") or "") and offline != tab.page.text_content("#counts")
    assert "gateway up and ready" in tab.page.content()
    tab.screenshot("dashboard-doctor-live")
    tab.assert_no_errors()
    tab.assert_no_secret(world.secrets)
    tab.close()


def test_a_state_change_without_the_csrf_token_is_refused(world: World) -> None:
    tab = world.tab(MASTER_KEY)
    tab.goto(world.ui + "credentials")
    before = tab.page.text_content("#generation")
    tab.page.evaluate("() => document.querySelector('form.actions input[name=csrf]').remove()")
    with tab.page.expect_navigation():
        tab.page.click("#reload")
    assert "CSRF token is missing or wrong" in (tab.page.text_content("#message") or "")
    assert tab.page.locator("#reload-result").count() == 0
    tab.page.evaluate("() => document.title")  # the page is still usable
    # a forged fetch with a wrong token: 403 in JSON
    status = tab.page.evaluate(
        """async () => (await fetch('deployments', {method: 'POST', headers: {'x-csrf-token': 'forged', accept: 'application/json',
        'content-type': 'application/x-www-form-urlencoded'}, body: 'label=up%2Fgpt-4o-mini'})).status"""
    )
    assert status == 403
    tab.goto(world.ui + "credentials")
    assert tab.page.text_content("#generation") == before
    tab.errors.clear()  # the refused fetch logs a console error by design
    tab.close()


def test_a_virtual_key_session_sees_only_its_own_key(world: World) -> None:
    tab = world.tab(world.key_secret)
    assert tab.page.url == world.ui + "key"
    assert tab.page.text_content("#key-name") == HOSTILE  # text, never markup
    assert tab.page.locator("img").count() == 0
    usage = tab.page.text_content("#usage") or ""
    assert "gpt-4o-mini" in usage and "no-such-model" in usage
    tab.screenshot("dashboard-key")
    tab.assert_no_errors()
    for page in ADMIN_PAGES[1:]:
        assert tab.goto(world.ui + page).status == 403, page
    assert tab.goto(world.ui).status == 200 and tab.page.url == world.ui + "key"  # the overview sends it on
    csrf = tab.page.get_attribute('meta[name="csrf-token"]', "content")
    for action, body in (("credentials", ""), ("deployments", "label=up%2Fgpt-4o-mini"), ("doctor", "")):
        status = tab.page.evaluate(
            """async ([action, body, csrf]) => (await fetch(action, {method: 'POST', headers: {'x-csrf-token': csrf,
            'content-type': 'application/x-www-form-urlencoded'}, body})).status""",
            [action, body, csrf],
        )
        assert status == 403, action
    tab.errors.clear()  # the refused loads log console errors by design
    tab.assert_no_secret(world.secrets)
    tab.close()


def test_behind_a_tls_proxy_under_a_path_prefix(world: World, tmp_path: Path) -> None:
    """nginx with TLS serves faregate under /llm/: every link, form and redirect stays under the
    prefix (they are relative) and the session cookie is Secure, scoped to /llm/ui."""
    ca = make_ca(tmp_path)
    assert ca is not None, "openssl is needed to make the proxy's certificate"
    proxy = Nginx(tmp_path, world.gw.port, tls=ca)
    site = PREFIXED_SITE.format(port=proxy.port, cert=ca.cert, key=ca.key, upstream=world.gw.port)
    (proxy.dir / "nginx.conf").write_text(MAIN_CONF.format(dir=proxy.dir, site=site))
    with proxy:
        tab = world.browser.page(ignore_https_errors=True)
        ui = proxy.url + "/llm/ui/"
        tab.goto(proxy.url + "/llm/ui")  # redirected to /llm/ui/, then to the sign-in page
        assert tab.page.url == ui + "signin"
        tab.sign_in(ui, MASTER_KEY)
        assert tab.page.url == ui
        cookie = next(c for c in tab.context.cookies() if c["name"] == "faregate_session")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/llm/ui"
        for label, page in (
            ("Deployments", "deployments"),
            ("Credentials", "credentials"),
            ("Config", "config"),
            ("Doctor", "doctor"),
            ("Overview", ""),
        ):
            with tab.page.expect_navigation(wait_until="networkidle"):
                tab.page.click(f"header nav >> text={label}")
            assert tab.page.url == ui + page
        with tab.page.expect_navigation(wait_until="networkidle"):
            tab.page.click("form.signout button")
        assert tab.page.url == ui + "signin"
        assert all(urlsplit(f.url).path.startswith("/llm/") for f in tab.responses), [f.url for f in tab.responses]
        tab.assert_no_errors()
        tab.close()
