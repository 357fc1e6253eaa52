"""Open-loop fixed-rate client, run as its own process: ``python -m bench.openloop ...``.

Request ``i`` is *scheduled* at ``t0 + i / rate`` and every latency is measured
from that scheduled time, not from when the request was actually written, so a
slow server (or a late client) cannot hide queueing delay (no coordinated
omission). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.httpcheck import count_stream
from bench.mock import STREAM_EVENTS

MAX_IN_FLIGHT = 2000
SPIN_S = 0.0015  # final stretch before a scheduled send is spun, not slept
MAX_SPINS = 1_000_000  # bound on yield-spins per send (each is a few microseconds)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of ``values``; None if empty."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds of a list of seconds."""
    out: dict[str, float | None] = {}
    for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)):
        v = percentile(values, q)
        out[name] = None if v is None else round(v * 1000, 3)
    return out


@dataclass
class Stats:
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    events_lost: int = 0
    streams_incomplete: int = 0
    in_flight: int = 0

    def error(self, reason: str) -> None:
        self.errors[reason[:120]] = self.errors.get(reason[:120], 0) + 1


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    stream: bool,
    sched: float,
    st: Stats,
    client: str = "openai",
) -> None:
    st.send_lag.append(time.perf_counter() - sched)
    first: float | None = None
    buf = bytearray()
    st.in_flight += 1
    try:
        async with session.post(url, data=body) as resp:
            async for chunk in resp.content.iter_any():
                if first is None:
                    first = time.perf_counter()
                buf += chunk
            end = time.perf_counter()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        st.error(f"{type(exc).__name__}: {exc}")
        return
    finally:
        st.in_flight -= 1
    if status != 200:
        st.error(f"status {status}")
        return
    if stream:
        content, done = count_stream(bytes(buf), client)
        if content != STREAM_EVENTS or not done:
            st.streams_incomplete += 1
            st.events_lost += max(0, STREAM_EVENTS - content)
    st.latency.append(end - sched)
    st.ttfb.append((first or end) - sched)


async def _schedule(
    session: aiohttp.ClientSession, url: str, body: bytes, stream: bool, rate: float, n: int, st: Stats, client: str
) -> None:
    """Start request ``i`` at ``t0 + i / rate`` whether or not earlier ones have finished."""
    async with asyncio.TaskGroup() as tg:
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            sched = t0 + i / rate
            # Coarse sleep (epoll wakes up to ~1 ms late), then yield-spin to the exact
            # time; sleep(0) still runs the loop, so in-flight replies are not held up.
            delay = sched - time.perf_counter()
            if delay > SPIN_S:
                await asyncio.sleep(delay - SPIN_S)
            for _ in range(MAX_SPINS):
                if time.perf_counter() >= sched:
                    break
                await asyncio.sleep(0)
            if st.in_flight >= MAX_IN_FLIGHT:
                st.error("client in-flight limit reached")
                continue
            tg.create_task(_one(session, url, body, stream, sched, st, client))


async def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    rate: float,
    duration: float,
    stream: bool,
    request_timeout: float,
    client: str = "openai",
) -> dict[str, object]:
    st = Stats()
    n = max(1, round(rate * duration))
    conn = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, ttl_dns_cache=None)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(connector=conn, headers=headers, timeout=client_timeout, auto_decompress=False) as session:
        # One untimed request opens the keep-alive connection before the clock starts.
        await _one(session, url, body, stream, time.perf_counter(), Stats(), client)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(duration + request_timeout + 10):
                await _schedule(session, url, body, stream, rate, n, st, client)
        except TimeoutError:
            st.error("open-loop phase overran its time bound")
        wall = time.perf_counter() - start
    return {
        "scheduled": n,
        "ok": len(st.latency),
        "failed": n - len(st.latency),
        "errors": st.errors,
        "rate": rate,
        "wall_s": round(wall, 3),
        "latency_ms": summary_ms(st.latency),
        "ttfb_ms": summary_ms(st.ttfb),
        "send_lag_ms": summary_ms(st.send_lag),
        "events_lost": st.events_lost,
        "streams_incomplete": st.streams_incomplete,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--headers", default="{}", help="JSON object of request headers")
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, required=True, help="seconds of schedule")
    p.add_argument("--stream", action="store_true", help="count SSE events per reply")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    p.add_argument("--client", choices=("openai", "anthropic", "responses"), default="openai", help="the stream format to count events in")
    a = p.parse_args(argv)
    headers = orjson.loads(a.headers)
    coro = run(
        a.url,
        a.body_file.read_bytes(),
        headers,
        a.rate,
        a.duration,
        a.stream,
        a.timeout,
        a.client,
    )
    result = asyncio.run(coro)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
