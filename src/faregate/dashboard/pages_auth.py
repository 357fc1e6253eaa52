"""Sign-in, sign-out and a virtual-key session's own page."""

from __future__ import annotations

import secrets
import time
from typing import Any

from faregate.dashboard import sessions
from faregate.dashboard.web import Request, Response, redirect, render
from faregate.store import keys as key_store
from faregate.store import spend as spend_store

KEY_FIELDS = ("budget_usd", "budget_period", "spent_usd", "reserved_usd", "rpm", "tpm", "max_parallel", "expires_at")


async def signin(request: Request) -> Response:
    if request.session is not None and request.method == "GET":
        return redirect(request, "")
    if request.method == "GET":
        pre = request.cookies.get(sessions.PRE_COOKIE) or secrets.token_urlsafe(24)
        page = render(request, "signin.html", csrf=sessions.csrf_of(pre), error="")
        page.headers.append(sessions.cookie(sessions.PRE_COOKIE, pre, request, 3600))
        return page
    now = time.time()
    refusal = sessions.LIMIT.refusal(request.client_ip, now)
    if refusal is not None:
        message, retry = refusal
        page = _again(request, 429, f"{message}: try again in {retry} s.")
        page.headers.append((b"retry-after", str(retry).encode()))
        return page
    opened = await sessions.sign_in(request, request.form.get("key", "").strip())
    if opened is None:
        sessions.LIMIT.failed(request.client_ip, now)
        return _again(request, 401, "That is neither the master key nor an enabled virtual key.")
    session, value = opened
    expire_pre = sessions.cookie(sessions.PRE_COOKIE, "", request, 0)
    return redirect(
        request, "" if session.admin else "key", [sessions.cookie(sessions.COOKIE, value, request, int(sessions.LIFETIME)), expire_pre]
    )


def _again(request: Request, status: int, error: str) -> Response:
    pre = request.cookies.get(sessions.PRE_COOKIE, "")
    return render(request, "signin.html", status, csrf=sessions.csrf_of(pre) if pre else "", error=error)


async def signout(request: Request) -> Response:
    await sessions.sign_out(request)
    return redirect(request, "signin", [sessions.cookie(sessions.COOKIE, "", request, 0)])


async def key_view(request: Request) -> Response:
    """A virtual key's own usage, budget, limits and models (an admin picks the key with ?id=)."""
    session = request.session
    assert session is not None and request.gw.engine is not None
    key_id = session.principal if not session.admin else request.query.get("id", "")
    key = await key_store.get_key(request.gw.engine, key_id) if key_id else None
    if key is None:
        return render(request, "message.html", 404, title="No such key", message="There is no virtual key with that id.")
    usage, _ = await spend_store.aggregate(request.gw.engine, ["model"], spend_store.Filters(key_id=key["id"]), 100)
    shown: dict[str, Any] = {name: key[name] for name in KEY_FIELDS}
    summary = {
        "id": key["id"],
        "name": key["name"],
        "prefix": key["prefix"],
        "enabled": bool(key["enabled"]) and key["revoked_at"] is None,
        "models": list(key["models"] or []) or ["(every model)"],
        **shown,
    }
    return render(request, "key.html", key=summary, usage=usage, now=time.time())
