"""Rate limits, on both backends: in process, and through a real Redis (two clients = two instances).

- a concurrent burst admits exactly the limit, also split across two instances sharing one Redis;
- all-or-nothing: a request refused by one scope records nothing against the others;
- tpm charges the estimate and corrects it at release; a request larger than tpm can never fit;
- parallel slots are freed by release, or by the lease expiring when nobody releases;
- retry_after, x-ratelimit-* headers, the sliding window;
- Redis stopped: admissions still answer (per process) and say `degraded`; Redis back: shared again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from faregate.errors import RateLimitExceeded
from faregate.ratelimit import Limit, Limiter, LocalLimiter, Refused, Ticket, Window, format_reset, headers
from faregate.ratelimit.redis_limiter import PREFIX, RECHECK_SECONDS, RedisLimiter
from tests.support.procs import free_port
from tests.support.redis import RedisServer

Factory = Callable[..., Limiter]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> Factory:
    """Makes a limiter of the backend under test (call it inside the event loop)."""
    if request.param == "local":
        return LocalLimiter
    url = request.getfixturevalue("redis_server").url
    # a loaded machine can keep Redis from answering within the production timeout (0.5 s), and then the
    # limiter rightly falls back to counting per process: these tests are about the count, not the outage
    return lambda **kwargs: RedisLimiter(url, **{"timeout": 10.0, **kwargs})


def scope(kind: str) -> str:
    """A scope no other test uses (the Redis is shared by the module)."""
    return f"{kind}:{uuid.uuid4().hex[:10]}"


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(test())  # type: ignore[arg-type]


async def attempt(limiter: Limiter, limits: list[Limit], tokens: int = 0) -> Ticket | Refused:
    try:
        return await limiter.acquire(limits, tokens)
    except Refused as refused:
        return refused


def admitted(results: list[Ticket | Refused]) -> list[Ticket]:
    return [r for r in results if isinstance(r, Ticket)]


# -- bursts ---------------------------------------------------------------------------------------


def test_a_concurrent_burst_admits_exactly_the_limit(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            limits = [Limit(scope("key"), rpm=25)]
            results = await asyncio.gather(*(attempt(limiter, limits) for _ in range(75)))
            print(f"MEASURED burst {type(limiter).__name__}: 75 concurrent acquires, rpm 25 -> {len(admitted(results))} admitted")
            assert len(admitted(results)) == 25
            refusals = [r for r in results if isinstance(r, Refused)]
            assert {(r.kind, r.limit) for r in refusals} == {("rpm", 25)}
        finally:
            await limiter.close()

    run(go)


def test_two_instances_sharing_one_redis_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    """Two limiters, each with its own client and event loop in its own thread, burst at once."""
    rpm, parallel = Limit(scope("team"), rpm=30), Limit(scope("deployment"), parallel=5)
    start = threading.Barrier(2)
    counts: dict[str, list[int]] = {}

    async def instance(name: str) -> None:
        limiter = RedisLimiter(redis_server.url, timeout=10.0)  # the count under load, not the outage fallback
        try:
            warmup = [Limit(scope("warmup"), rpm=1000)]
            await asyncio.gather(*(limiter.acquire(warmup, 0) for _ in range(45)))  # open the connections before the burst
            start.wait(5)
            burst = await asyncio.gather(*(attempt(limiter, [rpm]) for _ in range(45)))
            start.wait(5)
            held = await asyncio.gather(*(attempt(limiter, [parallel]) for _ in range(6)))
            counts[name] = [len(admitted(burst)), len(admitted(held))]
            assert not limiter.degraded
        finally:
            await limiter.close()

    threads = [threading.Thread(target=asyncio.run, args=(instance(name),)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    (a_rpm, a_par), (b_rpm, b_par) = counts["a"], counts["b"]
    print(f"MEASURED burst 2 RedisLimiters (2 threads, 2 loops): 2 x 45 concurrent acquires, rpm 30 -> {a_rpm} + {b_rpm} admitted")
    print(f"MEASURED burst 2 RedisLimiters (2 threads, 2 loops): 2 x 6 concurrent acquires, parallel 5 -> {a_par} + {b_par} admitted")
    assert (a_rpm + b_rpm, a_par + b_par) == (30, 5)


def test_waiting_retry_after_is_enough(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend(window=2.0)
        try:
            for limits, tokens in (([Limit(scope("key"), rpm=2)], 0), ([Limit(scope("key"), tpm=100)], 60)):
                await limiter.acquire(limits, tokens)
                await asyncio.sleep(0.3)
                await limiter.acquire(limits, tokens // 2)
                refused = await attempt(limiter, limits, tokens)
                assert isinstance(refused, Refused) and refused.retry_after is not None
                await asyncio.sleep(refused.retry_after - 0.1)
                assert isinstance(await attempt(limiter, limits, tokens), Refused)  # not yet
                await asyncio.sleep(0.15)
                await limiter.acquire(limits, tokens)  # now
        finally:
            await limiter.close()

    run(go)


# -- all-or-nothing, tokens, parallel -------------------------------------------------------------


def test_a_refusal_records_nothing_against_the_other_scopes(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            key = scope("key")
            team = Limit(scope("team"), rpm=2)
            own = Limit(key, rpm=10, tpm=1000, parallel=5)
            for _ in range(2):
                await limiter.acquire([own, team], 100)
            refused = await attempt(limiter, [own, team], 100)
            assert isinstance(refused, Refused) and refused.scope == team.scope and refused.kind == "rpm"
            # the key scope saw two requests, two hundred tokens and two leases: not three
            ticket = await limiter.acquire([own], 100)
            assert (ticket.window.remaining_requests, ticket.window.remaining_tokens) == (10 - 3, 1000 - 300)
            await limiter.acquire([Limit(key, parallel=4)], 0)  # leases held: 3 before this one
            assert isinstance(await attempt(limiter, [Limit(key, parallel=4)]), Refused)
        finally:
            await limiter.close()

    run(go)


def test_tokens_are_charged_at_admission_and_corrected_at_release(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            limits = [Limit(scope("key"), tpm=1000)]
            first = await limiter.acquire(limits, 600)
            assert first.window.remaining_tokens == 400
            refused = await attempt(limiter, limits, 600)
            assert isinstance(refused, Refused) and refused.kind == "tpm" and "600" in refused.message
            assert refused.retry_after is not None and 59 < refused.retry_after <= 61  # when the 600 leave the window
            await limiter.release(first, 100)  # it really used 100
            second = await limiter.acquire(limits, 600)
            assert second.window.remaining_tokens == 1000 - 100 - 600
            await limiter.release(second, None)  # keep the estimate
            assert (await limiter.acquire(limits, 0)).window.remaining_tokens == 300
        finally:
            await limiter.close()

    run(go)


def test_a_request_larger_than_tpm_can_never_be_admitted(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            refused = await attempt(limiter, [Limit(scope("deployment"), tpm=100)], 101)
            assert isinstance(refused, Refused) and isinstance(refused, RateLimitExceeded)
            assert refused.kind == "tpm" and refused.retry_after is None and refused.status == 429
            assert "101 tokens exceed the limit of 100" in refused.message and "never" in refused.message
            assert b"retry-after" not in dict(refused.headers())
        finally:
            await limiter.close()

    run(go)


def test_parallel_slots_are_freed_by_release_or_by_the_lease_expiring(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend(lease=1.0)
        try:
            limits = [Limit(scope("key"), parallel=3)]
            held = [await limiter.acquire(limits, 0) for _ in range(3)]
            refused = await attempt(limiter, limits)
            assert isinstance(refused, Refused) and refused.kind == "parallel" and refused.retry_after == 1.0
            await limiter.release(held[0], None)
            await limiter.acquire(limits, 0)  # the released slot
            assert isinstance(await attempt(limiter, limits), Refused)
            await asyncio.sleep(1.1)  # nobody releases the others: their leases expire
            for _ in range(3):
                await limiter.acquire(limits, 0)
        finally:
            await limiter.close()

    run(go)


# -- retry_after, window, headers -----------------------------------------------------------------


def test_retry_after_and_the_window_of_an_rpm_refusal(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            limits = [Limit(scope("key"), rpm=3)]
            remaining = []
            for _ in range(3):
                remaining.append((await limiter.acquire(limits, 0)).window.remaining_requests)
                await asyncio.sleep(0.25)
            assert remaining == [2, 1, 0]
            refused = await attempt(limiter, limits)
            assert isinstance(refused, Refused) and refused.retry_after is not None
            assert abs(refused.retry_after - (60 - 0.75)) < 1.0  # the first of the three leaves the window
            assert refused.window.remaining_requests == 0 and refused.window.limit_requests == 3
            sent = dict(refused.headers())
            assert sent[b"x-ratelimit-remaining-requests"] == b"0" and sent[b"retry-after"] == b"60"
            assert sent[b"x-ratelimit-reset-requests"].startswith(b"59.")
        finally:
            await limiter.close()

    run(go)


def test_headers_name_the_tightest_limits_and_only_those_that_apply(backend: Factory) -> None:
    async def go() -> None:
        limiter = backend()
        try:
            key, team = Limit(scope("key"), rpm=100, tpm=50_000), Limit(scope("team"), rpm=5, parallel=2)
            ticket = await limiter.acquire([key, team], 1000)
            assert (ticket.window.limit_requests, ticket.window.remaining_requests) == (5, 4)  # the team's
            assert (ticket.window.limit_tokens, ticket.window.remaining_tokens) == (50_000, 49_000)
            assert [name for name, _ in headers(ticket.window)] == [
                b"x-ratelimit-limit-requests",
                b"x-ratelimit-remaining-requests",
                b"x-ratelimit-reset-requests",
                b"x-ratelimit-limit-tokens",
                b"x-ratelimit-remaining-tokens",
                b"x-ratelimit-reset-tokens",
            ]
            only_rpm = await limiter.acquire([Limit(scope("key"), rpm=7)], 10)
            assert [n for n, _ in headers(only_rpm.window)] == [
                b"x-ratelimit-limit-requests",
                b"x-ratelimit-remaining-requests",
                b"x-ratelimit-reset-requests",
            ]
            assert headers((await limiter.acquire([Limit(scope("key"), parallel=3)], 10)).window) == []
        finally:
            await limiter.close()

    run(go)


def test_format_reset_writes_durations_as_openai_does() -> None:
    assert [format_reset(s) for s in (1, 360, 0.02, 90, 8.64, 0, 0.0004, 3725.5)] == [
        "1s",
        "6m0s",
        "20ms",
        "1m30s",
        "8.64s",
        "0s",
        "1ms",
        "1h2m5.5s",
    ]
    assert headers(Window()) == []


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="rpm must be"):
        Limit("key:k", rpm=-1)
    with pytest.raises(ValueError, match="once"):
        LocalLimiter().admit([Limit("key:k", rpm=1), Limit("key:k", tpm=5)], 1)


# -- the sliding window ---------------------------------------------------------------------------


def test_a_sustained_rate_under_the_limit_is_never_refused_and_the_window_frees_up(backend: Factory) -> None:
    async def go() -> None:
        window, limit = 2.0, 20
        limiter = backend(window=window)
        try:
            limits = [Limit(scope("key"), rpm=limit)]
            pace, start = window / (limit * 0.9), time.monotonic()
            sent = 0
            while (due := start + sent * pace) < start + 2 * window:  # 0.9 x the limit over two windows
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await limiter.acquire(limits, 0)  # raises if refused
                sent += 1
            while not isinstance(await attempt(limiter, limits), Refused):
                pass  # fill the window
            await asyncio.sleep(window + 0.05)
            results = [await attempt(limiter, limits) for _ in range(limit + 1)]
            assert len(admitted(results)) == limit and isinstance(results[-1], Refused)
            print(f"MEASURED sliding window {type(limiter).__name__}: {sent} at 0.9 x rpm over 2 windows, 0 refused")
        finally:
            await limiter.close()

    run(go)


# -- Redis -----------------------------------------------------------------------------------------


def test_no_limits_cost_no_redis_call() -> None:
    async def go() -> None:
        limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        try:
            ticket = await limiter.acquire([Limit("key:k"), Limit("team:t")], 100)
            assert ticket.limits == () and ticket.window == Window()
            await limiter.release(ticket, 50)
            assert not limiter.degraded
        finally:
            await limiter.close()

    run(go)


def test_a_redis_that_hangs_costs_one_request_the_timeout_and_the_others_nothing() -> None:
    async def go(port: int) -> None:
        limiter = RedisLimiter(f"redis://:hunter2@127.0.0.1:{port}/0", timeout=0.3)
        try:
            limits = [Limit(scope("key"), rpm=100)]
            started = time.monotonic()
            first = await limiter.acquire(limits, 0)
            waited = time.monotonic() - started
            started = time.monotonic()
            rest = await asyncio.gather(*(limiter.acquire(limits, 0) for _ in range(50)))
            others = time.monotonic() - started
            print(f"MEASURED redis hangs: first acquire {waited * 1000:.0f} ms (timeout 300 ms), then 50 in {others * 1000:.1f} ms")
            assert first.local and all(t.local for t in rest) and limiter.degraded
            assert waited < 0.9 and others < 0.2
        finally:
            await limiter.close()

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        run(lambda: go(silent.getsockname()[1]))


def test_redis_keys_expire_once_nothing_in_them_counts(redis_server: RedisServer) -> None:
    async def go() -> str:
        limiter = RedisLimiter(redis_server.url, window=1.0, lease=1.0)
        try:
            name = scope("key")
            await limiter.acquire([Limit(name, rpm=5, tpm=100, parallel=2)], 10)
            return name
        finally:
            await limiter.close()

    name = run(go)
    client = redis_client.Redis.from_url(redis_server.url)
    try:
        keys = [f"{PREFIX}{kind}:{name}" for kind in ("requests", "tokens", "leases")]
        assert all(0 < client.pttl(k) <= 3000 for k in keys), [client.pttl(k) for k in keys]
        time.sleep(3.1)
        assert client.exists(*keys) == 0
    finally:
        client.close()


def test_redis_down_falls_back_per_process_and_comes_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def go(server: RedisServer) -> None:
        limiter = RedisLimiter(server.url)
        try:
            limits = [Limit(scope("key"), rpm=3, parallel=10)]
            shared = await limiter.acquire(limits, 0)
            assert not shared.local and not limiter.degraded
            server.stop()
            started = time.monotonic()
            fallback = [await attempt(limiter, limits) for _ in range(4)]  # the fallback holds the limits too
            took = time.monotonic() - started
            assert limiter.degraded and all(t.local for t in admitted(fallback)) and len(admitted(fallback)) == 3
            print(f"MEASURED redis down: 4 acquires answered by the fallback in {took * 1000:.1f} ms")
            await limiter.release(shared, None)  # Redis is gone: dropped, never raised
            for ticket in admitted(fallback):
                await limiter.release(ticket, None)
            server.start()
            started = time.monotonic()
            while time.monotonic() - started < RECHECK_SECONDS + 3:
                ticket = await limiter.acquire([Limit(scope("key"), rpm=3)], 0)
                if not ticket.local:
                    break
                await asyncio.sleep(0.1)
            print(f"MEASURED redis back: shared again {time.monotonic() - started:.1f} s after it restarted")
            assert not ticket.local and not limiter.degraded
        finally:
            await limiter.close()

    caplog.set_level(logging.WARNING, logger="faregate.ratelimit")
    with RedisServer(tmp_path) as server:
        run(lambda: go(server))
    lost = [r.getMessage() for r in caplog.records if "per process" in r.getMessage()]
    assert len(lost) == 1, lost  # at most one warning per 30 s
    assert all("127.0.0.1" not in r.getMessage() and "redis://" not in r.getMessage() for r in caplog.records)
