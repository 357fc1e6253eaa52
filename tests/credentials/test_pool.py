"""CredentialPool: which key the next request gets, and what takes a key out of rotation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from faregate.credentials.pool import CredentialPool
from faregate.generation import Credential
from faregate.types import Secret

STRATEGIES = ("round_robin", "weighted", "fill_first")


def cred(cid: str, *, weight: int = 1, retiring: bool = False) -> Credential:
    return Credential(provider="p", id=cid, secret=Secret(f"sk-test-{cid}"), weight=weight, retiring=retiring)


def pool(*creds: Credential, strategy: str = "round_robin", seed: int = 7) -> CredentialPool:
    return CredentialPool(creds, strategy, random.Random(seed))


def ids(p: CredentialPool, n: int, now: float = 0.0) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(n):
        chosen = p.choose(now)
        out.append(chosen.id if chosen is not None else None)
    return out


# --- strategies ---------------------------------------------------------------------------


def test_round_robin_cycles_in_order() -> None:
    assert ids(pool(cred("a"), cred("b"), cred("c")), 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_a_cooling_credential_until_its_cooldown_ends() -> None:
    a, b, c = cred("a"), cred("b"), cred("c")
    p = pool(a, b, c)
    p.cool(b, until=10.0, reason="429")
    assert set(ids(p, 6, now=5.0)) == {"a", "c"}
    assert set(ids(p, 6, now=10.0)) == {"a", "b", "c"}


def test_fill_first_uses_the_first_healthy_credential() -> None:
    a, b, c = cred("a"), cred("b"), cred("c")
    p = pool(a, b, c, strategy="fill_first")
    assert ids(p, 3) == ["a", "a", "a"]
    p.cool(a, until=10.0, reason="429")
    assert ids(p, 2, now=1.0) == ["b", "b"]
    p.reject(b, "401")
    assert ids(p, 2, now=1.0) == ["c", "c"]
    assert ids(p, 1, now=10.0) == ["a"]


def test_weighted_follows_the_weights() -> None:
    p = pool(cred("a", weight=3), cred("b", weight=1), cred("z", weight=0), strategy="weighted")
    counts = Counter(ids(p, 4000))
    assert counts["z"] == 0
    assert 2800 < counts["a"] < 3200
    assert 800 < counts["b"] < 1200


def test_weighted_with_all_zero_weights_uses_the_first() -> None:
    p = pool(cred("a", weight=0), cred("b", weight=0), strategy="weighted")
    assert ids(p, 3) == ["a", "a", "a"]


def test_weighted_skips_unhealthy_credentials() -> None:
    a, b = cred("a", weight=100), cred("b", weight=1)
    p = pool(a, b, strategy="weighted")
    p.reject(a, "401")
    assert ids(p, 20) == ["b"] * 20


# --- retiring credentials -----------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retiring_credential_takes_no_traffic_while_another_is_healthy(strategy: str) -> None:
    old, new = cred("old", retiring=True, weight=100), cred("new")
    p = pool(old, new, strategy=strategy)
    assert ids(p, 50) == ["new"] * 50


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retiring_credential_is_used_when_no_other_is_healthy(strategy: str) -> None:
    old, new1, new2 = cred("old", retiring=True), cred("new1"), cred("new2")
    p = pool(old, new1, new2, strategy=strategy)
    p.cool(new1, until=10.0, reason="429")
    p.reject(new2, "401")
    assert ids(p, 5, now=1.0) == ["old"] * 5
    assert ids(p, 5, now=10.0) == ["new1"] * 5  # cooldown over: back off the retiring key


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_several_retiring_credentials_share_the_load_as_a_last_resort(strategy: str) -> None:
    r1, r2, new = cred("r1", retiring=True), cred("r2", retiring=True), cred("new")
    p = pool(r1, r2, new, strategy=strategy)
    p.reject(new, "403")
    chosen = set(ids(p, 40))
    assert chosen <= {"r1", "r2"}
    assert chosen == ({"r1"} if strategy == "fill_first" else {"r1", "r2"})


def test_single_retiring_credential_is_used() -> None:
    assert ids(pool(cred("only", retiring=True)), 2) == ["only", "only"]


# --- reject / cool ------------------------------------------------------------------------


def test_rejected_credential_stays_out_for_the_life_of_the_pool() -> None:
    a, b = cred("a"), cred("b")
    p = pool(a, b)
    p.reject(a, "rejected with 401")
    assert set(ids(p, 4, now=1e9)) == {"b"}


def test_cool_keeps_the_later_deadline() -> None:
    a, b = cred("a"), cred("b")
    p = pool(a, b, strategy="fill_first")
    p.cool(a, until=20.0, reason="429")
    p.cool(a, until=5.0, reason="503")
    assert ids(p, 1, now=10.0) == ["b"]
    assert ids(p, 1, now=20.0) == ["a"]


def test_single_credential_cools_and_recovers() -> None:
    only = cred("only")
    p = pool(only)
    p.cool(only, until=10.0, reason="429")
    assert p.choose(9.9) is None
    assert p.choose(10.0) is only
    p.reject(only, "401")
    assert p.choose(1e9) is None


def test_nothing_usable_names_every_credential_and_its_reason() -> None:
    a, b = cred("a"), cred("b")
    p = pool(a, b)
    p.reject(a, "rejected with 401")
    p.cool(b, until=30.0, reason="429 insufficient_quota")
    assert p.choose(1.0) is None
    assert p.unusable_reason(1.0) == (
        f"no usable credential: {a.label} rejected with 401; {b.label} cooling down after 429 insufficient_quota"
    )
    assert "sk-test-" not in p.unusable_reason(1.0)


def test_empty_pool_has_nothing_to_choose() -> None:
    p = pool()
    assert p.choose(0.0) is None
    assert p.unusable_reason(0.0) == "no credentials configured"


def test_reject_and_cool_ignore_a_credential_of_another_pool() -> None:
    a = cred("a")
    p = pool(a, cred("b"), strategy="fill_first")
    stranger = cred("a")  # equal but not this pool's object
    p.reject(stranger, "401")
    p.cool(stranger, until=10.0, reason="429")
    assert p.choose(0.0) is a


def test_choose_records_use() -> None:
    a, b = cred("a"), cred("b")
    p = pool(a, b)
    ids(p, 3, now=4.0)
    assert [(s.requests, s.last_used) for s in p.states] == [(2, 4.0), (1, 4.0)]
