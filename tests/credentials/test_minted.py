"""credentials.minted in-process: real google-auth against the fake token endpoint (real HTTP on
loopback), real generations built by the keyring. Schedules are checked as numbers (no clock waits);
"never waits while a token is valid" with a minting held at the endpoint, so it cannot have ended."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faregate.credentials import minted
from faregate.credentials.keyring import Keyring, build
from faregate.errors import CredentialRejected
from faregate.generation import Credential, Generation, Minted
from faregate.types import Secret
from tests.fakes.vertex_upstream import FakeVertex

CONFIG = """
server: {{auth: none}}
providers:
  vx: {{type: vertex, base_url: {url}, project: fake-project, location: us-east5, credentials: [{{id: sa, key_file: {key}}}]}}
models:
  gemini: [{{provider: vx, model: gemini-2.5-flash}}]
"""


@pytest.fixture
def fake() -> Iterator[FakeVertex]:
    with FakeVertex() as upstream:
        yield upstream


def generation(fake: FakeVertex, tmp_path: Path, trusted: bool = True) -> Generation:
    key = tmp_path / "sa.json"
    if not key.exists():
        fake.key_file(key, trusted=trusted)
    path = tmp_path / "faregate.yaml"
    path.write_text(CONFIG.format(url=fake.url, key=key))
    return build(path)[0]


def only(gen: Generation) -> Credential:
    (credential,) = gen.providers["vx"].credentials
    assert credential.minted is not None
    return credential


def test_the_schedule_replaces_a_token_before_it_expires_and_stops_sending_it_before_then() -> None:
    hour = Minted(kind="google_service_account", value=Secret("t"), minted_at=1000.0, expires=4600.0, count=1)
    assert minted.refresh_at(hour) == 4300.0  # REFRESH_MARGIN before expiry
    assert minted.usable(hour, 4569.0) and not minted.usable(hour, 4570.0)  # USABLE_MARGIN
    short = Minted(kind="google_service_account", value=Secret("t"), minted_at=1000.0, expires=1004.0, count=1)
    assert minted.refresh_at(short) == 1002.0  # at most half its lifetime: never due at once, never in a loop
    assert minted.usable(short, 1002.9) and not minted.usable(short, 1003.0)
    assert minted.refresh_at(short) < 1003.0  # replaced while still usable
    fresh = Minted(kind="google_service_account")
    assert minted.due_at(fresh) == 0.0 and not minted.usable(fresh, 0.0)


def test_a_token_is_minted_once_for_requests_that_arrive_together(fake: FakeVertex, tmp_path: Path) -> None:
    gen = generation(fake, tmp_path)
    credential = only(gen)

    async def main() -> None:
        await asyncio.gather(*(minted.ready(credential, gen, 30) for _ in range(5)))

    asyncio.run(main())
    assert fake.token_requests == 1 and len(fake.grants) == 1
    assert isinstance(credential.minted.value, Secret) and credential.minted.value.reveal() == fake.grants[0].token
    assert credential.minted.fingerprint == credential.minted.value.fingerprint
    assert gen.scrub(f"echo {fake.grants[0].token}") == f"echo [redacted:{credential.minted.fingerprint}]"


def test_a_valid_token_is_used_at_once_while_its_refresh_hangs(fake: FakeVertex, tmp_path: Path) -> None:
    gen = generation(fake, tmp_path)
    credential = only(gen)
    m = credential.minted
    assert m is not None

    async def main() -> None:
        await minted.ready(credential, gen, 30)
        first = m.value
        m.minted_at, m.expires = time.time() - 3500, time.time() + 100  # due for refresh, usable for 100 s more
        fake.hold = threading.Event()
        refresh = minted.start(credential, gen)
        await asyncio.to_thread(fake.wait_for, lambda f: f.token_requests == 2)  # the refresh is at the endpoint, held
        await minted.ready(credential, gen, 30)  # returns without waiting for it
        assert not refresh.done() and m.value is first
        fake.hold.set()
        await refresh
        assert m.value is not first and m.count == 2

    asyncio.run(main())


def test_a_refused_key_fails_fast_until_its_retry_time(fake: FakeVertex, tmp_path: Path) -> None:
    gen = generation(fake, tmp_path, trusted=False)
    credential = only(gen)

    async def main() -> None:
        with pytest.raises(CredentialRejected) as caught:
            await minted.ready(credential, gen, 30)
        assert credential.label in caught.value.reason and "invalid_grant" in caught.value.reason
        with pytest.raises(CredentialRejected):  # within REFUSED_RETRY_SECONDS: no new attempt
            await minted.ready(credential, gen, 30)

    asyncio.run(main())
    assert fake.token_requests == 1
    shown = minted.describe(credential.minted, time.time())
    assert shown["state"] == "failed" and shown["fingerprint"] is None and credential.label in shown["error"]


def test_a_reload_carries_the_token_of_an_unchanged_key_only(fake: FakeVertex, tmp_path: Path) -> None:
    gen = generation(fake, tmp_path)
    keyring = Keyring(gen)
    asyncio.run(minted.ready(only(gen), gen, 30))
    token = only(gen).minted.value
    same = keyring.install(generation(fake, tmp_path)).generation
    assert only(same).minted.value is token and only(same).minted.count == 0  # carried, and due for a new one at once
    assert minted.due_at(only(same).minted) == 0.0
    assert isinstance(token, Secret) and same.scrub(token.reveal()).startswith("[redacted:")
    fake.key_file(tmp_path / "sa.json")  # a new key in the same file
    changed = keyring.install(generation(fake, tmp_path)).generation
    assert only(changed).minted.value is None  # a new key never sends the old key's token
