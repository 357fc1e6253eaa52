"""Sign-in, sessions, CSRF and the sign-in rate limit.

A session is a random cookie value; the database keeps only its sha256 (``store.sessions``), so
signing out (the row deleted) ends it on every worker and instance. The cookie is HttpOnly,
SameSite=Strict, Secure when served over HTTPS, without a Path (the browser scopes it to the
dashboard's own folder, behind any prefix). A session ends 8 h after sign-in or after 1 h idle,
when the master key it was opened with changes, or when its virtual key is revoked, disabled,
expired or deleted. The CSRF token is sha256 of a label and the cookie value: the page knows it,
another site cannot, and it never reveals the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from faregate.credentials.keyring import master_key_matches
from faregate.credentials.virtual import PREFIX, hash_key
from faregate.dashboard.web import Request
from faregate.store import keys as key_store
from faregate.store import sessions as store

COOKIE = "faregate_session"
PRE_COOKIE = "faregate_signin"  # before sign-in: the sign-in form's own CSRF token comes from it
LIFETIME = 8 * 3600.0
IDLE = 3600.0
TOUCH_EVERY = 60.0  # last_seen is written at most this often
ADMIN, KEY = "admin", "key"
FAILURES_PER_IP = 5  # failed sign-ins from one address within WINDOW
FAILURES_PER_WORKER = 30  # failed sign-ins from anywhere within WINDOW, per worker
WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    role: str  # ADMIN | KEY
    principal: str  # admin: the master key's fingerprint; key: the virtual key's id
    id_hash: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_of(cookie_value: str) -> str:
    return digest("faregate-ui-csrf:" + cookie_value)


def cookie(name: str, value: str, request: Request, max_age: int) -> tuple[bytes, bytes]:
    flags = f"{name}={value}; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if request.https else "")
    return b"set-cookie", flags.encode()


def csrf_ok(request: Request, presented: str | None) -> bool:
    """The token of this session (or, before sign-in, of the sign-in cookie) was sent back."""
    if request.session is not None:
        expected = request.session.csrf
    else:
        pre = request.cookies.get(PRE_COOKIE)
        if not pre:
            return False
        expected = csrf_of(pre)
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


async def current(request: Request) -> Session | None:
    """The request's live session, or None (an ended one is deleted)."""
    value = request.cookies.get(COOKIE)
    engine = request.gw.engine
    if not value or engine is None:
        return None
    id_hash = digest(value)
    row = await store.get(engine, id_hash)
    if row is None:
        return None
    now = time.time()
    alive = now < float(row["expires_at"]) and now - float(row["last_seen"]) < IDLE and await _principal_alive(request, row, now)
    if not alive:
        await store.end(engine, id_hash)
        return None
    if now - float(row["last_seen"]) >= TOUCH_EVERY:
        await store.touch(engine, id_hash, now)
    return Session(str(row["role"]), str(row["principal"]), id_hash, csrf_of(value))


async def _principal_alive(request: Request, row: dict[str, object], now: float) -> bool:
    if row["role"] == ADMIN:
        master = request.gw.keyring.current.generation.master_key
        return master is not None and hmac.compare_digest(master.fingerprint, str(row["principal"]))
    engine = request.gw.engine
    assert engine is not None
    key = await key_store.get_key(engine, str(row["principal"]))
    if key is None or not key["enabled"] or key["revoked_at"] is not None:
        return False
    return key["expires_at"] is None or float(key["expires_at"]) > now


async def sign_in(request: Request, presented: str) -> tuple[Session, str] | None:
    """A new session for the master key or an enabled virtual key, and the cookie value; None if
    the key is neither."""
    gen = request.gw.keyring.current.generation
    engine = request.gw.engine
    if engine is None or not presented:
        return None
    if master_key_matches(gen, presented) and gen.master_key is not None:
        role, principal = ADMIN, gen.master_key.fingerprint
    elif presented.startswith(PREFIX):
        try:
            key = await key_store.by_hash(engine, hash_key(presented), time.time())
        except SQLAlchemyError:
            return None
        if (
            key is None
            or key["key_hash"] != hash_key(presented)
            or not await _principal_alive(request, {"role": KEY, "principal": key["id"]}, time.time())
        ):
            return None  # a rotated key's previous secret does not open a session
        role, principal = KEY, str(key["id"])
    else:
        return None
    value = secrets.token_urlsafe(32)
    id_hash = digest(value)
    await store.create(engine, id_hash, role, principal, time.time(), LIFETIME)
    return Session(role, principal, id_hash, csrf_of(value)), value


async def sign_out(request: Request) -> None:
    if request.session is not None and request.gw.engine is not None:
        await store.end(request.gw.engine, request.session.id_hash)


class SignInLimit:
    """Failed sign-ins per client address and in all, per worker, over a sliding minute."""

    def __init__(self) -> None:
        self.per_ip: dict[str, deque[float]] = {}
        self.all: deque[float] = deque()

    def _trim(self, q: deque[float], now: float) -> deque[float]:
        while q and q[0] <= now - WINDOW:
            q.popleft()
        return q

    def refusal(self, ip: str, now: float) -> tuple[str, int] | None:
        """Why a sign-in from ``ip`` is refused now, and in how many seconds to retry, or None."""
        mine = self._trim(self.per_ip.get(ip, deque()), now)
        if not mine:
            self.per_ip.pop(ip, None)
        every = self._trim(self.all, now)
        if len(mine) >= FAILURES_PER_IP:
            return f"too many failed sign-ins from your address ({FAILURES_PER_IP} in {WINDOW:g} s)", int(mine[0] + WINDOW - now) + 1
        if len(every) >= FAILURES_PER_WORKER:
            return "too many failed sign-ins on this server", int(every[0] + WINDOW - now) + 1
        return None

    def failed(self, ip: str, now: float) -> None:
        if len(self.per_ip) > 10_000:  # bounded: a flood of addresses forgets the oldest
            self.per_ip.pop(next(iter(self.per_ip)))
        self.per_ip.setdefault(ip, deque()).append(now)
        self.all.append(now)


LIMIT = SignInLimit()  # one per worker process
