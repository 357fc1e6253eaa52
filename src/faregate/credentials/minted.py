"""Secrets minted from a credential rather than configured (type vertex: OAuth access tokens from a
service-account key file), bound to the generation of the credential they were minted from.

State. Each credential of a minting provider type carries a ``generation.Minted``
(``Credential.minted``), made by the keyring together with the credential, so it lives and dies
with its generation: a reload builds new credentials and so new state. A new key file means a new
token, and the old one is never sent again; an unchanged key keeps its token across the reload
(``carry_over``) while a new one is minted at once, so a reload rotates tokens without a request
waiting. The transport reads ``minted.value`` (a Secret: the bearer token) and nothing else.

Who mints (``start``: one minting in flight per credential, shared by whoever waits for it):
- the ``Refresher``, one background task per worker: every minting credential of the current
  generation as soon as it is installed, then again ``REFRESH_MARGIN`` before expiry (at most half
  the token's lifetime), so requests find a valid token and never wait for a refresh;
- a request, only when its credential holds no usable token (first use before the refresher got
  there, or after failures): it waits once for the minting in flight, bounded (``ready``).

Minting runs in a thread (google-auth is synchronous HTTP). A failure is kept (``error``, shown by
/admin/credentials; ``failure``, the error class a request gets) and retried after
``RETRY_SECONDS`` (``REFUSED_RETRY_SECONDS`` for a refused key). Tokens and keys are Secrets listed in ``minted.secrets``, so the generation's
scrubber removes them (``Generation.rescrub``); only their fingerprints are ever shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faregate.errors import CredentialRejected, UpstreamConnectionError, UpstreamError, UpstreamServerError, UpstreamTimeout
from faregate.generation import Credential, Generation, Minted
from faregate.types import Secret

log = logging.getLogger("faregate.credentials")

REFRESH_MARGIN = 300.0  # seconds before expiry a token is replaced (at most half its lifetime)
USABLE_MARGIN = 30.0  # a token this close to its expiry (at most a quarter of its lifetime) is not sent any more
MINT_TIMEOUT = 30.0  # seconds for each HTTP call of one minting
WAIT_SECONDS = 60.0  # the longest a request waits for a token when its credential holds none (at most the provider's timeout)
RETRY_SECONDS = 5.0  # after a failed minting, the next attempt waits this long
REFUSED_RETRY_SECONDS = 60.0  # ... and this long when the token endpoint refused the key (a reload brings a new one)
IDLE_SECONDS = 60.0  # the refresher looks again at least this often


@dataclass(frozen=True, slots=True)
class Kind:
    """How one provider type's credentials mint: ``mint`` blocks (it runs in a thread) and returns
    (the value the transport sends, the Unix time it expires); ``read_key`` reads a ``key_file``
    (None: the one-line key reader); ``private`` lists the parts of a secret to scrub on their own."""

    name: str
    mint: Callable[[Credential, float], tuple[Secret, float]]
    read_key: Callable[[str, Path], Secret] | None = None
    private: Callable[[Secret], tuple[Secret, ...]] = lambda secret: ()


def _google(credential: Credential, timeout: float) -> tuple[Secret, float]:
    if credential.secret is None:
        raise CredentialRejected(f"credential {credential.label}: no service-account key file")
    from faregate.credentials import google_oauth  # google-auth (~11 MiB) only where a vertex provider mints

    return google_oauth.mint(credential.label, credential.secret, timeout)


def _google_key_file(path: str, base_dir: Path) -> Secret:
    from faregate.credentials import google_oauth

    return google_oauth.read_key_file(path, base_dir)


def _google_private(secret: Secret) -> tuple[Secret, ...]:
    from faregate.credentials import google_oauth

    return google_oauth.private_parts(secret)


KINDS: dict[str, Kind] = {  # provider type -> how its credentials mint
    "vertex": Kind("google_service_account", _google, _google_key_file, _google_private),
}
_BY_NAME = {kind.name: kind for kind in KINDS.values()}
KIND_NAMES = frozenset(_BY_NAME)  # the Minted kinds this module mints (others are kept by their own code)
_ERRORS: dict[str, type[UpstreamError]] = {
    cls.__name__: cls for cls in (CredentialRejected, UpstreamConnectionError, UpstreamServerError, UpstreamTimeout)
}


def new_state(provider_type: str, secret: Secret | None) -> Minted | None:
    """The minting state of a new credential of ``provider_type`` (None when that type does not mint)."""
    kind = KINDS.get(provider_type)
    if kind is None:
        return None
    return Minted(kind=kind.name, secrets=kind.private(secret) if secret is not None else ())


def minting(generation: Generation) -> Iterator[Credential]:
    """The credentials of ``generation`` that mint."""
    for provider in generation.providers.values():
        for credential in provider.credentials:
            if credential.minted is not None:
                yield credential


def refresh_at(m: Minted) -> float:
    """When the value held should be replaced: REFRESH_MARGIN before it expires, at most half its lifetime."""
    if m.expires is None:
        return float("inf")
    lifetime = max(m.expires - (m.minted_at or m.expires), 0.0)
    return m.expires - min(REFRESH_MARGIN, lifetime / 2)


def usable(m: Minted, now: float) -> bool:
    """Whether the value held may still be sent: minted, and not within USABLE_MARGIN (at most a
    quarter of its lifetime) of its expiry."""
    if m.value is None:
        return False
    if m.expires is None:
        return True
    lifetime = max(m.expires - (m.minted_at or m.expires), 0.0)
    return now < m.expires - min(USABLE_MARGIN, lifetime / 4)


def due_at(m: Minted) -> float:
    """When the refresher should next mint for ``m``: now when it holds nothing it minted itself
    (a new generation, or only a token carried over), after RETRY_SECONDS following a failure,
    else ahead of expiry. Infinity while a minting is in flight."""
    if _running(m) is not None:
        return float("inf")
    if m.failure:
        return m.retry_at
    if m.count == 0:
        return 0.0
    return refresh_at(m)


def _running(m: Minted) -> asyncio.Task[None] | None:
    job = m.job
    return job if isinstance(job, asyncio.Task) and not job.done() else None


def start(credential: Credential, generation: Generation) -> asyncio.Task[None]:
    """The minting in flight for ``credential``; a new one when none is."""
    m = credential.minted
    assert m is not None
    running = _running(m)
    if running is not None:
        return running
    task = asyncio.get_running_loop().create_task(_mint(credential, generation))
    m.job = task
    return task


async def _mint(credential: Credential, generation: Generation) -> None:
    """One minting; its outcome goes into ``credential.minted`` (this never raises)."""
    m = credential.minted
    assert m is not None
    kind = _BY_NAME[m.kind]
    try:
        value, expires = await asyncio.to_thread(kind.mint, credential, MINT_TIMEOUT)
    except UpstreamError as err:
        err.redact(generation.scrub)
        pause = REFUSED_RETRY_SECONDS if isinstance(err, CredentialRejected) else RETRY_SECONDS
        m.error, m.failure, m.retry_at = err.reason, type(err).__name__, time.time() + pause
        log.warning(f"minting a token failed (tried again in {pause:g}s): {m.error}")
        return
    except Exception as exc:  # noqa: BLE001 - an unexpected library error: reported, never lost (its text is not shown: it may hold anything)
        m.error = f"credential {credential.label}: minting a token failed ({type(exc).__name__})"
        m.failure, m.retry_at = "UpstreamServerError", time.time() + RETRY_SECONDS
        log.error(m.error)
        return
    previous = m.value if isinstance(m.value, Secret) else None
    private = kind.private(credential.secret) if credential.secret is not None else ()
    m.value, m.expires, m.minted_at, m.fingerprint = value, expires, time.time(), value.fingerprint
    m.secrets = (*private, *((previous,) if previous is not None else ()), value)  # the one before too: it may still be echoed
    m.count += 1
    m.error, m.failure, m.retry_at = None, "", 0.0
    generation.rescrub()


async def ready(credential: Credential, generation: Generation, wait: float) -> None:
    """Make sure ``credential.minted`` holds a usable value. Returns at once when it does (the hot
    path); otherwise waits for the minting in flight, at most ``wait`` seconds, and raises the
    UpstreamError that says why there is none (naming the credential, so its fingerprint)."""
    m = credential.minted
    assert m is not None
    now = time.time()
    if usable(m, now) or m.kind not in _BY_NAME:  # valid; or kept by its own code (not minted here)
        return
    if not m.failure or now >= m.retry_at or _running(m) is not None:
        task = start(credential, generation)
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            raise UpstreamTimeout(f"credential {credential.label}: no token: the token endpoint did not answer within {wait:g}s") from None
        if usable(m, time.time()):
            return
    raise _ERRORS.get(m.failure, UpstreamServerError)(m.error or f"credential {credential.label}: no token could be minted")


def carry_over(old: Generation, new: Generation) -> None:
    """A reload: each credential of ``new`` whose key is unchanged starts with the usable value its
    predecessor holds (a new one is still minted at once: ``due_at``); a changed key starts empty."""
    held = {(c.provider, c.id, c.secret): c.minted for c in minting(old)}
    now = time.time()
    carried = False
    for credential in minting(new):
        before = held.get((credential.provider, credential.id, credential.secret))
        m = credential.minted
        # (m.value is set: minted at load, as the AWS chain's keys are: it keeps its own)
        if before is None or m is None or m.value is not None or before.kind != m.kind or not usable(before, now):
            continue
        m.value, m.expires, m.minted_at, m.fingerprint, m.secrets = (
            before.value,
            before.expires,
            before.minted_at,
            before.fingerprint,
            before.secrets,
        )
        carried = True
    if carried:
        new.rescrub()


def describe(m: Minted, now: float) -> dict[str, Any]:
    """What /admin/credentials shows of a minted value: never the value, its fingerprint."""
    until = datetime.datetime.fromtimestamp(m.expires, datetime.UTC).isoformat() if m.expires is not None else None
    if m.value is None:
        state = "failed" if m.failure else "not minted yet"
    elif not usable(m, now):
        state = "expired"
    else:
        state = "refresh failed" if m.failure else "valid"
    return {
        "kind": m.kind,
        "state": state,
        "fingerprint": m.fingerprint if m.value is not None else None,
        "valid_until": until,
        "minted": m.count,
        "refreshing": _running(m) is not None,
        "error": m.error,
    }


class Refresher:
    """The background task (one per worker) that mints for the current generation: at once for a
    new one (``wake``, called on every install), then ahead of every expiry."""

    def __init__(self, current: Callable[[], Generation]) -> None:
        self.current = current
        self._wake = asyncio.Event()

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            generation = self.current()
            now = time.time()
            next_at = now + IDLE_SECONDS
            jobs: set[asyncio.Task[None]] = set()
            for credential in minting(generation):
                m = credential.minted
                assert m is not None
                if m.kind not in _BY_NAME:  # kept by its own code
                    continue
                at = due_at(m)
                if at <= now:
                    start(credential, generation)
                running = _running(m)
                if running is not None:
                    jobs.add(running)
                else:
                    next_at = min(next_at, at)
            self._wake.clear()
            woken = asyncio.get_running_loop().create_task(self._wake.wait())
            try:  # until the next one is due, a minting ends (its next due time is then known), or a new generation
                await asyncio.wait({woken, *jobs}, timeout=max(next_at - time.time(), 0.0), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await woken
