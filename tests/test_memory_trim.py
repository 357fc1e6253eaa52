"""The worker gives freed memory back once load falls (faregate.observability.memory; issue 13:
RSS 60 s after 1,500 connections of 150 KB prompts went from 3x idle to 1.27x idle)."""

from __future__ import annotations

import asyncio

import pytest

from faregate.observability import memory


def test_glibc_malloc_trim_is_found_and_runs() -> None:
    trim = memory.malloc_trim()
    assert trim is not None  # the CI image is glibc (Debian): the task would otherwise do nothing
    assert trim(0) in (0, 1)


def test_trims_once_when_the_requests_in_flight_fall_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "SAMPLE_SECONDS", 0.0)
    monkeypatch.setattr(memory, "MIN_GAP_SECONDS", 0.0)
    monkeypatch.setattr(memory, "IDLE_SECONDS", 1e9)  # never by the clock: only after load
    samples = iter([3, 5, 1, 0, 0, 0, 2, 0, 0])
    trims: list[int] = []
    seen: list[int] = []
    finished = asyncio.Event()

    def in_flight() -> int:
        value = next(samples, None)
        if value is None:
            finished.set()
            return 0
        seen.append(value)
        return value

    def trim(pad: int) -> int:
        trims.append(len(seen))  # how many samples had been taken when it trimmed
        return 1

    async def run() -> None:
        task = asyncio.ensure_future(memory.trim_when_idle(in_flight, trim))
        await finished.wait()
        task.cancel()

    asyncio.run(run())
    assert trims == [4, 8]  # at the first idle sample after each burst, and not again while idle
