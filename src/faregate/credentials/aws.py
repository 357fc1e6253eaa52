"""AWS keys for Bedrock: configured ones as one credential, or the AWS SDKs' own chain.

A bedrock credential configured with ``access_key_id``, ``secret_access_key`` and optionally
``session_token`` (references, as ``key``) is one ``Credential``: ``secret`` is the access key id,
``parts`` the secret key and the session token, so its fingerprint covers both keys and scrubbing
finds each of them.

A bedrock provider with no credentials uses botocore's credential chain (the environment's
``AWS_ACCESS_KEY_ID``..., the shared credentials and config files with ``AWS_PROFILE``, SSO and
assume-role profiles, container and instance metadata). Its keys are minted into the credential's
``Minted`` of the generation being loaded (``prepare``, at load: never on a request) and, when
they expire (a role's session keys), replaced before they do by ``refresh_forever``, a gateway
background task that runs botocore in a thread. Only their fingerprint is ever shown.

Why not ``credentials.minted`` (Vertex's tokens): its kinds mint one bearer token (a Secret) from
the credential's configured secret; chain keys are three parts (key id, secret key, session token)
found in the environment, not the config, and botocore's own credentials object refreshes them
when asked within its window. They share ``generation.Minted`` (/admin/credentials shows both with
``minted.describe``); ``minted.ready`` leaves this kind alone (its keys are minted at load).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from faregate.config.schema import CredentialConfig
from faregate.credentials.refs import RefError, resolve_env_ref
from faregate.errors import Problem
from faregate.generation import Credential, Generation, Minted
from faregate.providers.bedrock import AwsKeys
from faregate.types import Secret, fingerprint

log = logging.getLogger("faregate.credentials")
KIND = "aws_chain"
CHAIN_ID = "aws-chain"  # the id of the credential a bedrock provider without credentials gets
# botocore refreshes expiring keys it is asked for within 15 minutes of their expiry (its advisory
# window; 10 minutes is mandatory): asking 14 minutes before gets new keys, never on a request
REFRESH_BEFORE = 14 * 60.0
RETRY = 30.0  # seconds before asking again after a failed or ineffective refresh
IDLE = 300.0  # the longest the refresher sleeps between looks (a reload may bring a new chain credential)


def configured(
    provider: str, cid: str, cred: CredentialConfig, env: Mapping[str, str] | None, path: str, problems: list[Problem]
) -> Credential | None:
    """The credential of configured keys (see the module docstring); None, with the problem noted,
    when a reference does not resolve."""
    values: list[Secret] = []
    for name in ("access_key_id", "secret_access_key", "session_token"):
        ref = getattr(cred, name)
        if ref is None:
            continue
        try:
            values.append(resolve_env_ref(ref, env))
        except RefError as exc:
            problems.append(Problem(f"{path}.{name}", str(exc)))
    if len(values) != 2 + (cred.session_token is not None):
        return None
    return Credential(provider=provider, id=cid, secret=values[0], parts=tuple(values[1:]), weight=cred.weight, retiring=cred.retiring)


def chain(provider: str) -> Credential:
    """The credential of a bedrock provider without configured ones, its keys minted by ``prepare``."""
    return Credential(provider=provider, id=CHAIN_ID, secret=None, minted=Minted(KIND))


def _botocore_chain() -> Any:
    import botocore.session  # botocore (~5 MiB, 200 modules) only where a bedrock provider uses the chain

    return botocore.session.get_session().get_credentials()


def mint(minted: Minted, source: Callable[[], Any] = _botocore_chain) -> None:
    """Ask the chain for keys (blocking: files, and the metadata services over HTTP) and put them
    in ``minted``; on failure ``minted.error`` says why (and keys still valid are kept)."""
    import botocore.exceptions

    try:
        boto = source()
        if boto is None:
            raise LookupError("no AWS credentials found (environment, shared files, container or instance metadata)")
        frozen = boto.get_frozen_credentials()
    except (LookupError, botocore.exceptions.BotoCoreError, OSError) as exc:
        minted.error = str(exc) if isinstance(exc, LookupError) else f"{type(exc).__name__} while resolving AWS credentials"
        minted.retry_at = time.time() + RETRY
        return
    _store(minted, boto, AwsKeys(frozen.access_key, frozen.secret_key, frozen.token))


_SOURCES: dict[Minted, Any] = {}  # botocore's credentials object behind each Minted (it knows how to refresh itself)


def _store(minted: Minted, boto: Any, keys: AwsKeys) -> None:
    expiry = getattr(boto, "_expiry_time", None)  # RefreshableCredentials only (role sessions)
    minted.value = keys
    minted.expires = expiry.timestamp() if expiry is not None else None
    minted.fingerprint = fingerprint(f"{keys.access_key_id}\n{keys.secret_access_key}")
    minted.secrets = tuple(Secret(v) for v in (keys.access_key_id, keys.secret_access_key, keys.session_token) if v)
    minted.error, minted.failure = None, ""
    minted.minted_at = time.time()
    minted.count += 1
    _SOURCES[minted] = boto


def refresh(minted: Minted) -> None:
    """New keys from the botocore credentials that gave the current ones (a role session refreshes itself)."""
    boto = _SOURCES.get(minted)
    if boto is None:
        mint(minted)
        if minted.error is not None:
            log.warning(f"AWS credential chain: {minted.error}")
        return
    import botocore.exceptions

    try:
        frozen = boto.get_frozen_credentials()
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        minted.error = f"{type(exc).__name__} while refreshing AWS credentials"
        minted.retry_at = time.time() + RETRY
        log.warning(f"AWS credential chain: {minted.error}")
        return
    _store(minted, boto, AwsKeys(frozen.access_key, frozen.secret_key, frozen.token))


def _chained(generation: Generation) -> Iterator[tuple[str, Minted]]:
    for name, provider in generation.providers.items():
        for credential in provider.credentials:
            if credential.minted is not None and credential.minted.kind == KIND:
                yield name, credential.minted


def prepare(generation: Generation) -> list[Problem]:
    """Mint the chain keys of a generation being loaded; the problems found (warnings: the keys may
    appear later, the refresher asks again)."""
    problems = []
    for name, minted in _chained(generation):
        mint(minted)
        if minted.error is not None:
            problems.append(Problem(f"providers.{name}", f"AWS credential chain: {minted.error}", "warning"))
        generation.rescrub()  # its keys are scrubbed too
    return problems


def due(minted: Minted, now: float) -> float:
    """Seconds until ``minted`` should be refreshed (0: now)."""
    if minted.value is None:  # never minted: now, or RETRY after the last failure
        return max(0.0, minted.retry_at - now)
    if minted.expires is None:
        return IDLE
    return max(0.0, minted.expires - REFRESH_BEFORE - now)


async def refresh_forever(current: Callable[[], Generation]) -> None:
    """The gateway's background task: keeps the current generation's chain keys fresh, in a thread."""
    while True:
        wait = IDLE
        chained = [minted for _, minted in _chained(current())]
        for gone in set(_SOURCES) - set(chained):  # generations replaced by a reload
            del _SOURCES[gone]
        for minted in chained:
            left = due(minted, time.time())
            if left <= 0:
                before = minted.expires
                await asyncio.to_thread(refresh, minted)
                current().rescrub()  # the new keys are scrubbed too
                left = due(minted, time.time())
                if left <= 0 or minted.expires == before:
                    left = RETRY  # not refreshed yet (botocore keeps valid keys until its window): ask again soon
            wait = min(wait, left)
        await asyncio.sleep(max(1.0, wait))
