"""Who is calling: the master key (constant-time) or a virtual key, from `Authorization: Bearer`,
`x-api-key` (the anthropic SDK) or `api-key` (the openai SDK's AzureOpenAI)."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from faregate.credentials.keyring import Snapshot, master_key_matches
from faregate.credentials.virtual import PREFIX, VirtualKey, hash_key
from faregate.errors import AuthenticationFailed, KeyStoreUnavailable
from faregate.gateway import Gateway
from faregate.server.http import Scope

log = logging.getLogger("faregate.auth")
MASTER = None  # the principal of a request made with the master key (or with `auth: none`)


def presented_key(scope: Scope) -> str:
    presented: list[bytes] = []
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                raise AuthenticationFailed("the Authorization header must be 'Bearer <key>'")
            presented.append(token.strip())
        elif key == b"x-api-key" or key == b"api-key":
            presented.append(value.strip())
    if not presented:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>', 'x-api-key: <key>' or 'api-key: <key>'")
    if len(set(presented)) > 1:
        raise AuthenticationFailed("more than one API key was sent; send exactly one")
    try:
        return presented[0].decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("invalid API key") from None


async def authenticate(gw: Gateway, snap: Snapshot, scope: Scope) -> VirtualKey | None:
    """Proxy routes: the master key or an enabled, unexpired virtual key (None means the master
    key). A database failure for a key not in the cache is a 503, never a 401."""
    if snap.generation.server.auth == "none":
        return MASTER
    presented = presented_key(scope)
    if master_key_matches(snap.generation, presented):
        return MASTER
    if not presented.startswith(PREFIX) or gw.keys is None:
        raise AuthenticationFailed("invalid API key")
    try:
        key = await gw.keys.resolve(hash_key(presented))
    except (SQLAlchemyError, OSError) as exc:
        log.warning(f"key store unreachable: {exc.__class__.__name__}")
        raise KeyStoreUnavailable("the key store is unreachable and this key is not cached; retry shortly") from None
    if key is None:
        raise AuthenticationFailed("invalid API key")
    refusal = key.refusal(time.time())
    if refusal is not None:
        raise AuthenticationFailed(refusal)
    return key


def authenticate_admin(snap: Snapshot, scope: Scope) -> None:
    """Admin routes: the master key only (with `auth: none` they are open, on loopback only)."""
    if snap.generation.server.auth == "none":
        return
    if not master_key_matches(snap.generation, presented_key(scope)):
        raise AuthenticationFailed("invalid API key: admin routes need the master key")
