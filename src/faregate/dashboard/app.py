"""The dashboard's route table and the checks every request passes, in order: the dashboard is on
(``server.ui``), the page exists and takes the method, a POST body is a small form, the session
(``sessions.current``), the role the page needs, the CSRF token of every POST, then the page.

A page is ``async def page(request: Request) -> Response`` in one of the ``pages_*`` modules, listed
in PAGES by its name below /ui/ with the methods it takes and who may see it: ``PUBLIC`` (sign-in),
``ANY`` (an admin or a virtual-key session), ``ADMIN`` (master-key sessions only; a virtual-key
session gets 403). Links and redirects are relative (``request.base``): see web.Request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from faregate.dashboard import pages_auth, pages_keys, pages_ops, pages_requests, pages_spend, pages_state, sessions
from faregate.dashboard.web import (
    FormTooLarge,
    Handler,
    Receive,
    Response,
    Scope,
    Send,
    json_response,
    parse,
    read_form,
    redirect,
    render,
    static,
)
from faregate.gateway import Gateway

log = logging.getLogger("faregate.dashboard")
PUBLIC, ANY, ADMIN = "public", "any", "admin"


@dataclass(frozen=True, slots=True)
class Page:
    handler: Handler
    who: str  # PUBLIC | ANY | ADMIN
    methods: tuple[str, ...] = ("GET",)


PAGES: dict[str, Page] = {
    "signin": Page(pages_auth.signin, PUBLIC, ("GET", "POST")),
    "signout": Page(pages_auth.signout, ANY, ("POST",)),
    "key": Page(pages_auth.key_view, ANY),  # a virtual-key session's own usage, budget, limits, models
    "": Page(pages_ops.overview, ANY),  # a virtual-key session is sent on to "key"
    "deployments": Page(pages_ops.deployments, ADMIN, ("GET", "POST")),  # POST: probe one
    "credentials": Page(pages_ops.credentials, ADMIN, ("GET", "POST")),  # POST: reload on every worker
    "config": Page(pages_state.config, ADMIN),
    "doctor": Page(pages_state.doctor, ADMIN, ("GET", "POST")),  # POST: live probes
    "keys": Page(pages_keys.keys, ADMIN, ("GET", "POST")),  # POST: create (the secret shown once)
    "vkey": Page(pages_keys.vkey, ADMIN, ("GET", "POST")),  # one key; POST: update | rotate | revoke
    "teams": Page(pages_keys.teams, ADMIN, ("GET", "POST")),  # POST: create a team
    "team": Page(pages_keys.team, ADMIN, ("GET", "POST")),  # one team; POST: edit its budget, limits, name, enabled
    "spend": Page(pages_spend.spend, ADMIN),
    "spend.csv": Page(pages_spend.spend_csv, ADMIN),
    "requests": Page(pages_requests.requests, ADMIN),
    "request": Page(pages_requests.request_story, ADMIN),
}


def _plain(status: int, message: str) -> Response:
    return Response(status, message.encode(), b"text/plain; charset=utf-8")


async def handle(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Every request under /ui (``faregate.server.app`` routes the prefix here)."""
    if not gw.keyring.current.generation.server.ui:
        body = b'{"error":{"message":"the dashboard is turned off (server.ui: false)","type":"invalid_request_error","param":null,"code":"not_found"}}'
        await Response(404, body, b"application/json").send(send)
        return
    try:
        response = await _answer(gw, scope, receive)
    except SQLAlchemyError as exc:
        log.warning(f"dashboard: the database is unreachable: {exc.__class__.__name__}")
        response = _plain(503, "the database is unreachable; retry shortly")
    response.headers.append((b"x-faregate-worker", str(gw.pid).encode()))  # which worker answered (a pid: never a secret)
    await response.send(send)


async def _answer(gw: Gateway, scope: Scope, receive: Receive) -> Response:
    if scope["path"] == "/ui":
        return Response(308, b"", b"text/plain; charset=utf-8", [(b"location", b"ui/")])
    request = parse(gw, scope)
    if request.page.startswith("static/"):
        found = static(request.page.removeprefix("static/")) if request.method in ("GET", "HEAD") else None
        return found or _plain(404, "no such file")
    page = PAGES.get(request.page)
    if page is None:
        return render(request, "message.html", 404, title="Not found", message="There is no such page.")
    if request.method not in page.methods:
        return Response(405, b"", b"text/plain; charset=utf-8", [(b"allow", ", ".join(page.methods).encode())])
    if request.method == "POST":
        try:
            await read_form(request, receive)
        except FormTooLarge:
            return _plain(413, "the form is too large")
    request.session = await sessions.current(request)
    if page.who != PUBLIC and request.session is None:
        if request.method == "GET":
            return redirect(request, "signin")
        return render(request, "message.html", 403, title="Signed out", message="Your session has ended: sign in again.")
    if page.who == ADMIN and request.session is not None and not request.session.admin:
        return render(
            request, "message.html", 403, title="Forbidden", message="This page needs an admin session (signed in with the master key)."
        )
    if request.method == "POST" and not sessions.csrf_ok(request, request.form.get("csrf") or request.headers.get("x-csrf-token")):
        message = "The form's CSRF token is missing or wrong, so nothing was changed: reload the page and try again."
        if request.headers.get("accept", "").startswith("application/json"):
            return json_response({"error": {"message": message, "type": "invalid_request_error", "param": "csrf", "code": "csrf"}}, 403)
        return render(request, "message.html", 403, title="Refused", message=message)
    return await page.handler(request)
