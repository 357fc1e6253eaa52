"""A real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright's sync API.

One ``Browser`` per test module (it is slow to start); ``browser.page()`` opens a fresh context (no
cookies) and returns a ``Tab``: the page, every console error and page error it raised, and every
response it fetched (URL, status, headers, body) so a test can assert that no secret appears in any
of them. Screenshots go to tests/artifacts/ (gitignored). Never ``playwright install``: the browser
is the system package (``chromium`` in the Makefile's APT_PACKAGES).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright, Response, sync_playwright

from tests.support.procs import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"  # the README's, committed: rewritten only when asked (a test run leaves git clean)
README_SHOTS = os.environ.get("FAREGATE_README_SCREENSHOTS") == "1"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@dataclass
class Fetched:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Tab:
    """One page in its own context, with what it said and fetched."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)  # console errors and uncaught page errors
    responses: list[Fetched] = field(default_factory=list)

    def sign_in(self, ui: str, key: str) -> None:
        """Sign in on the dashboard at ``ui`` (its URL, ending in /) with a master or virtual key."""
        self.goto(ui + "signin")
        self.page.fill("input[name=key]", key)
        with self.page.expect_navigation(wait_until="networkidle"):
            self.page.click("form.signin button[type=submit]")

    def goto(self, url: str) -> Fetched:
        """Open ``url`` and wait until the network is idle (every script's fetch answered)."""
        response = self.page.goto(url, wait_until="networkidle")
        assert response is not None, f"no response for {url}"
        return next((f for f in reversed(self.responses) if f.url == response.url), None) or self._record(response)

    def _record(self, response: Response) -> Fetched:
        try:
            body = response.body()
        except Exception:
            body = b""
        fetched = Fetched(response.url, response.status, {k.lower(): v for k, v in response.all_headers().items()}, body)
        self.responses.append(fetched)
        return fetched

    def everything(self) -> str:
        """The DOM as it is now (with every input's value), every response's headers and body, every
        cookie value and the console: what a secret must not be found in."""
        parts = [
            self.page.content(),
            self.page.evaluate("() => [...document.querySelectorAll('input,textarea')].map(e => e.value).join('\\n')"),
        ]
        for f in self.responses:
            parts.append(f.url)
            parts.extend(f"{k}: {v}" for k, v in f.headers.items())
            parts.append(f.body.decode("utf-8", "replace"))
        parts.extend(c.get("value", "") for c in self.context.cookies())
        parts.extend(self.errors)
        return "\n".join(parts)

    def assert_no_secret(self, secrets: Iterable[str]) -> None:
        text = self.everything()
        for secret in secrets:
            assert secret not in text, "a secret appears in the page, a response it fetched, a cookie or the console"

    def assert_no_errors(self) -> None:
        assert not self.errors, f"console or page errors: {self.errors}"

    def screenshot(self, name: str, *, readme: str | None = None) -> Path:
        """Save a full-page PNG as tests/artifacts/NAME.png (and, with FAREGATE_README_SCREENSHOTS=1 in the
        environment, as docs/screenshots/README.png for the README)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if readme and README_SHOTS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / f"{readme}.png")
        return path

    def close(self) -> None:
        self.context.close()


class Browser:
    """``with Browser() as browser: tab = browser.page()``; each tab is a fresh context (no cookies)."""

    def __init__(self) -> None:
        self._pw: Playwright | None = None
        self._manager: Any = None
        self._contexts: list[BrowserContext] = []

    def __enter__(self) -> Browser:
        self._manager = sync_playwright()
        self._pw = self._manager.__enter__()
        self._browser = self._pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(FLAGS)
        )  # Playwright gives every launch a fresh, temporary --user-data-dir (it refuses one in args)
        return self

    def page(self, *, base_url: str | None = None, ignore_https_errors: bool = False) -> Tab:
        """``ignore_https_errors``: for a loopback TLS proxy whose test CA Chromium does not know."""
        context = self._browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}, ignore_https_errors=ignore_https_errors
        )
        page = context.new_page()
        tab = Tab(page, context)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                tab.errors.append(f"console: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
        page.on("response", tab._record)
        return tab

    def __exit__(self, *exc: Any) -> None:
        try:
            self._browser.close()
        finally:
            self._manager.__exit__(*exc)


def browser_session() -> Iterator[Browser]:
    """For a module-scoped fixture: ``browser = pytest.fixture(scope="module")(browser_session)``."""
    with Browser() as browser:
        yield browser
