"""Deterministic cost of the hot path: Python function calls per proxied request.

Runs the real gateway (uvicorn + uvloop + the faregate app) in a thread of this process against a
loopback upstream, sends requests with a real HTTP client from the main thread, and counts with
``sys.setprofile`` every Python-level call made in the server thread while they are served. Unlike
time, the count does not drift with machine load, so CI can assert it stays under a ceiling
(tests/test_hot_path_budget.py). ``python -m bench.callcount`` prints the breakdown by package.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import uvicorn

from bench.procs import free_port
from faregate.spendlog import FLUSH_SECONDS

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
  log_requests: {log}
state:
  database: sqlite:///{state}/state.db
providers:
  up:
    type: openai
    base_url: {upstream}
    credentials: [{{id: bench, key: "${{BENCH_UPSTREAM_KEY}}"}}]
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
"""
MASTER_KEY = "sk-callcount-master"


@dataclass
class Count:
    requests: int
    calls: int
    by_package: dict[str, int]
    by_function: dict[str, int]

    @property
    def per_request(self) -> float:
        return self.calls / self.requests


def _package(filename: str) -> str:
    parts = Path(filename).parts
    for marker in ("site-packages", "src"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0] if rest else filename
    return "stdlib" if "python3" in filename else Path(filename).name


class _Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.by_file: collections.Counter[str] = collections.Counter()
        self.by_function: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1
            code = frame.f_code
            self.by_file[code.co_filename] += 1
            self.by_function[f"{_package(code.co_filename)}:{Path(code.co_filename).stem}.{code.co_qualname}"] += 1


@contextmanager
def served(upstream: str, *, log: bool = False) -> Iterator[tuple[str, asyncio.AbstractEventLoop, threading.Thread]]:
    """The faregate app under uvicorn in a background thread; yields its base URL and loop.
    The gateway's environment (master key, upstream key) is set for the duration and restored."""
    env = os.environ  # noqa: TID251 - the harness provides the gateway's environment
    saved = {name: env.get(name) for name in ("FAREGATE_MASTER_KEY", "BENCH_UPSTREAM_KEY")}
    env["FAREGATE_MASTER_KEY"], env["BENCH_UPSTREAM_KEY"] = MASTER_KEY, "sk-callcount-upstream"
    try:
        with _serving(upstream, log) as served_at:
            yield served_at
    finally:
        for name, value in saved.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value


@contextmanager
def _serving(upstream: str, log: bool) -> Iterator[tuple[str, asyncio.AbstractEventLoop, threading.Thread]]:
    from faregate.gateway import Gateway
    from faregate.observability import logging as logs
    from faregate.server.app import build_app

    if log:  # as `faregate serve` runs: JSON lines at info level
        logs.setup("info")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faregate.yaml"
        path.write_text(CONFIG.format(upstream=upstream, log=str(log).lower(), state=tmp))
        asyncio.run(_migrate(f"sqlite:///{tmp}/state.db"))  # as `faregate serve` does: the spend log has its table
        port = free_port()
        gateway = Gateway(path)
        gateway.access_log = logs.AccessLog(open(os.devnull, "wb"))  # noqa: SIM115 - lines are produced, not kept
        config = uvicorn.Config(
            build_app(gateway),
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
        )
        server = uvicorn.Server(config)
        holder: dict[str, asyncio.AbstractEventLoop] = {}

        def run() -> None:
            import uvloop

            loop = uvloop.new_event_loop()
            holder["loop"] = loop
            loop.run_until_complete(server.serve())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}", holder["loop"], thread
        finally:
            server.should_exit = True
            thread.join(10)


async def _migrate(database: str) -> None:
    from faregate.store.db import make_engine, upgrade

    engine = make_engine(database)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def count_calls(upstream: str, requests: int = 200, *, stream: bool = False, log: bool = False) -> Count:
    body = {"model": "m", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with served(upstream, log=log) as (url, loop, _), httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for _ in range(20):  # warm up: connections open, caches filled, lazy imports done
            assert http.post("/v1/chat/completions", json=body).status_code == 200
        time.sleep(2 * FLUSH_SECONDS)  # ...and the spend log's first batch written (its INSERT compiled once)
        counter = _Counter()
        installed = threading.Event()

        def install(profiler: Any) -> None:
            sys.setprofile(profiler)
            installed.set()

        loop.call_soon_threadsafe(install, counter)
        installed.wait(5)
        for _ in range(requests):
            r = http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
        installed.clear()
        loop.call_soon_threadsafe(install, None)
        installed.wait(5)
    by_package: collections.Counter[str] = collections.Counter()
    for filename, n in counter.by_file.items():
        by_package[_package(filename)] += n
    return Count(requests=requests, calls=counter.calls, by_package=dict(by_package), by_function=dict(counter.by_function))


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fakes.openai_upstream import FakeOpenAI

    with FakeOpenAI() as fake:
        for stream in (False, True):
            result = count_calls(fake.url, stream=stream, log=True)
            kind = "stream" if stream else "plain"
            print(f"{kind}: {result.per_request:.0f} Python calls per request ({result.calls} over {result.requests})")
            for pkg, n in sorted(result.by_package.items(), key=lambda kv: -kv[1]):
                print(f"  {pkg:<24} {n / result.requests:8.1f}")
            if "--functions" in sys.argv:
                for fn, n in sorted(result.by_function.items(), key=lambda kv: -kv[1])[:40]:
                    print(f"    {n / result.requests:6.1f}  {fn}")


if __name__ == "__main__":
    main()
