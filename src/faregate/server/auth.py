"""Who is calling: the master key (constant-time), from `Authorization: Bearer` or `x-api-key`."""

from __future__ import annotations

from faregate.credentials.keyring import Snapshot, master_key_matches
from faregate.errors import AuthenticationFailed
from faregate.server.http import Scope


def presented_key(scope: Scope) -> str:
    presented: list[bytes] = []
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
            presented.append(token.strip())
        elif key == b"x-api-key":
            presented.append(value.strip())
    if not presented:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    if len(set(presented)) > 1:
        raise AuthenticationFailed("more than one API key was sent; send exactly one")
    try:
        return presented[0].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("invalid API key") from None


def authenticate(snap: Snapshot, scope: Scope) -> None:
    """Proxy routes: the master key, unless `auth: none`."""
    if snap.generation.server.auth == "none":
        return
    if not master_key_matches(snap.generation, presented_key(scope)):
        raise AuthenticationFailed("invalid API key")


def authenticate_admin(snap: Snapshot, scope: Scope) -> None:
    """Admin routes: always the master key; with `auth: none` they are open on loopback only."""
    authenticate(snap, scope)
