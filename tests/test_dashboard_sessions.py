"""Dashboard sessions over plain HTTP against a real two-worker gateway: the cookie's flags and the
security headers, sign-out ends the session on every worker (sessions live in the database),
sign-in attempts are rate limited with a clear message, and `server.ui: false` turns /ui off."""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from faregate.dashboard import sessions
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}%s
providers:
  local: {type: mock, chunk_delay: 0}
models:
  m:
    - {provider: local, model: mock-small}
"""
CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]*)">')


class Answer:
    def __init__(self, r: http.client.HTTPResponse) -> None:
        self.status = r.status
        self.headers = r.getheaders()
        self.body = r.read().decode()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def cookies(self) -> dict[str, str]:
        found = [v for k, v in self.headers if k.lower() == "set-cookie"]
        return {c.split("=", 1)[0]: c for c in found}


def call(
    gw: GatewayProcess,
    method: str,
    path: str,
    *,
    cookie: str = "",
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a fresh connection (so the kernel may hand it to either worker)."""
    conn = http.client.HTTPConnection(urlsplit(gw.url).netloc, timeout=20)
    sent = {**(headers or {}), **({"cookie": cookie} if cookie else {})}
    body = urlencode(form).encode() if form is not None else None
    if body is not None:
        sent["content-type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=sent)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def sign_in(gw: GatewayProcess, key: str, headers: dict[str, str] | None = None) -> Answer:
    page = call(gw, "GET", "/ui/signin", headers=headers)
    pre = value(page.cookies()[sessions.PRE_COOKIE])
    csrf = CSRF.search(page.body)
    assert csrf is not None
    return call(gw, "POST", "/ui/signin", cookie=pre, form={"csrf": csrf.group(1), "key": key}, headers=headers)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("sessions"), CONFIG % "", workers=2) as gateway:
        yield gateway


def test_cookie_flags_and_security_headers(gw: GatewayProcess) -> None:
    signed = sign_in(gw, MASTER_KEY)
    assert signed.status == 303 and signed.header("location") == "./"  # relative: works behind a path prefix
    flags = signed.cookies()[sessions.COOKIE]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Max-Age=28800" in flags and "Secure" not in flags
    assert "Path=" not in flags  # the browser scopes it to the dashboard's folder, whatever the prefix
    page = call(gw, "GET", "/ui/", cookie=value(flags))
    assert page.status == 200
    csp = page.header("content-security-policy") or ""
    assert "default-src 'self'" in csp and "style-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.header("x-frame-options") == "DENY" and page.header("x-content-type-options") == "nosniff"
    assert page.header("referrer-policy") == "no-referrer" and page.header("cache-control") == "no-store"
    assert "<script>" not in page.body and " style=" not in page.body and 'href="/' not in page.body and 'src="/' not in page.body
    # behind a TLS proxy on loopback: the cookie is Secure
    secure = sign_in(gw, MASTER_KEY, headers={"x-forwarded-proto": "https"})
    assert "; Secure" in secure.cookies()[sessions.COOKIE]
    assert call(gw, "GET", "/ui").header("location") == "ui/"
    assert call(gw, "GET", "/ui/deployments").header("location") == "./signin"


def test_signing_out_ends_the_session_on_every_worker(gw: GatewayProcess) -> None:
    cookie = value(sign_in(gw, MASTER_KEY).cookies()[sessions.COOKIE])
    served: set[str] = set()
    while len(served) < 2:  # the session is good on both workers (fresh connections until both answered)
        page = call(gw, "GET", "/ui/config", cookie=cookie)
        assert page.status == 200
        served.add(page.header("x-faregate-worker") or "")
    csrf = CSRF.search(page.body)
    assert csrf is not None
    out = call(gw, "POST", "/ui/signout", cookie=cookie, form={"csrf": csrf.group(1)})
    assert out.status == 303 and out.header("location") == "./signin" and "Max-Age=0" in out.cookies()[sessions.COOKIE]
    refused: set[str] = set()
    while len(refused) < 2:  # and ended on both
        page = call(gw, "GET", "/ui/config", cookie=cookie)
        assert page.status == 303 and page.header("location") == "./signin"
        refused.add(page.header("x-faregate-worker") or "")
    assert refused == served


def test_sign_in_attempts_are_rate_limited(gw: GatewayProcess) -> None:
    """Failed sign-ins count per worker; with two workers the 11th attempt at the latest is refused
    (each worker refuses from its 6th failure from one address), even with the right key."""
    statuses = []
    for _ in range(2 * sessions.FAILURES_PER_IP + 1):
        answer = sign_in(gw, "sk-fg-wrong-guess-0000000000")
        statuses.append(answer.status)
        if answer.status == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    assert "too many failed sign-ins from your address" in answer.body and int(answer.header("retry-after") or "0") > 0
    limited_worker = answer.header("x-faregate-worker")
    while True:  # the worker that refused refuses the right key too (fresh connections until it answers)
        right = sign_in(gw, MASTER_KEY)
        if right.header("x-faregate-worker") == limited_worker:
            break
    assert right.status == 429 and sessions.COOKIE not in right.cookies()


def test_ui_false_turns_the_dashboard_off(gateways: Callable[..., GatewayProcess], tmp: Path) -> None:
    off = gateways(CONFIG % "\n  ui: false")
    for path in ("/ui", "/ui/", "/ui/signin", "/ui/static/app.js"):
        answer = call(off, "GET", path)
        assert answer.status == 404 and "server.ui: false" in answer.body, path
