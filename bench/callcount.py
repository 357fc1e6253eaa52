"""Deterministic cost of the hot path: Python function calls per proxied request.

Runs the real gateway (uvicorn + uvloop + the faregate app) in a thread of this process between a
loopback upstream and a client that move in lockstep (``bench.lockstep``: every request and every
reply reaches the gateway in the same pieces on every run), and counts with ``sys.setprofile``
every Python-level call the server thread makes on behalf of the requests: in the tasks the
requests create and in the protocol callbacks that read their bytes. The gateway's background
loops (log and spend flushes, metrics, the control plane), which run by the clock, are counted
apart and not charged to requests. So the count depends neither on machine load nor on how the
kernel happens to split bytes, and CI can assert it stays under a ceiling
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

import uvicorn

from bench import lockstep_anthropic, lockstep_providers, lockstep_responses, lockstep_translated
from bench.lockstep import LockstepUpstream, OneWrite
from bench.lockstep import send as _send
from bench.lockstep import visible_events as _visible_events
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
    type: {type}
    responses: {responses}
    base_url: {upstream}
    {credentials}
models:
  m:
    - {{provider: up, model: {model}}}
"""
MODELS = {  # each kind's upstream model (priced)
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "responses": "gpt-4o-mini",
    "gemini": lockstep_providers.GEMINI_MODEL,
    "bedrock": lockstep_providers.BEDROCK_MODEL,
}
KEY = 'credentials: [{id: bench, key: "${BENCH_UPSTREAM_KEY}"}]'
CREDENTIALS = {  # a kind's credentials line when not KEY: Bedrock's are AWS keys (SigV4), and its region
    "bedrock": 'credentials: [{id: bench, access_key_id: "${BENCH_UPSTREAM_KEY}", secret_access_key: "${BENCH_UPSTREAM_KEY}"}]\n'
    "    region: us-east-1",
}
TYPES = {"responses": "openai"}  # provider type of a kind that is no type (an openai provider with responses: true)
MASTER_KEY = "sk-callcount-master"


@dataclass
class Count:
    requests: int
    calls: int
    by_package: dict[str, int]
    by_function: dict[str, int]
    events: int = 0  # SSE events the client received per stream (0: not a stream)
    background: int = 0  # calls of the gateway's clock-driven loops meanwhile (not charged to requests)

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


# Protocol callbacks: where the event loop hands a connection's bytes to Python, outside any task.
PROTOCOL_CALLBACKS = frozenset(
    {
        "data_received",
        "eof_received",
        "connection_made",
        "connection_lost",
        "pause_writing",
        "resume_writing",
        "get_buffer",
        "buffer_updated",
    }
)


class _Counter:
    """Counts calls made for requests: in tasks other than the background loops that existed when
    it was installed (and the tasks those start), and in protocol callbacks. The rest (background
    loops, timer callbacks of their sleeps) is counted in ``background`` only."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.background_tasks: set[asyncio.Task[Any]] = set()
        self.base: FrameType | None = None  # the frame that runs the event loop: callbacks start just above it
        self.calls = 0
        self.background = 0
        self.by_file: collections.Counter[str] = collections.Counter()
        self.by_function: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        """In the loop's thread, from a callback of the loop."""
        self.base = sys._getframe(2)  # install <- the loop's callback <- the loop's runner
        self.background_tasks = set(asyncio.all_tasks(self.loop))
        self.loop.set_task_factory(self._task)
        sys.setprofile(self)

    def uninstall(self) -> None:
        sys.setprofile(None)
        self.loop.set_task_factory(None)

    def _task(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if asyncio.current_task(loop) in self.background_tasks:  # started by a background loop: background too
            self.background_tasks.add(task)
        return task

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code is _TASK_FACTORY or (frame.f_back is not None and frame.f_back.f_code is _TASK_FACTORY):
            return  # the counter's own task factory
        task = asyncio.current_task(self.loop)
        if task is None:
            root = frame
            while root.f_back is not None and root.f_back is not self.base:
                root = root.f_back
            if root.f_code.co_name not in PROTOCOL_CALLBACKS:
                self.background += 1
                return
        elif task in self.background_tasks:
            self.background += 1
            return
        self.calls += 1
        code = frame.f_code
        self.by_file[code.co_filename] += 1
        self.by_function[f"{_package(code.co_filename)}:{Path(code.co_filename).stem}.{code.co_qualname}"] += 1


_TASK_FACTORY = _Counter._task.__code__


@contextmanager
def served(upstream: str, *, log: bool = False, kind: str = "openai") -> Iterator[tuple[str, asyncio.AbstractEventLoop, threading.Thread]]:
    """The faregate app under uvicorn in a background thread; yields its base URL and loop.
    The gateway's environment (master key, upstream key) is set for the duration and restored."""
    env = os.environ  # noqa: TID251 - the harness provides the gateway's environment
    saved = {name: env.get(name) for name in ("FAREGATE_MASTER_KEY", "BENCH_UPSTREAM_KEY")}
    env["FAREGATE_MASTER_KEY"], env["BENCH_UPSTREAM_KEY"] = MASTER_KEY, "sk-callcount-upstream"
    try:
        with _serving(upstream, log, kind) as served_at:
            yield served_at
    finally:
        for name, value in saved.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value


@contextmanager
def _serving(upstream: str, log: bool, kind: str = "openai") -> Iterator[tuple[str, asyncio.AbstractEventLoop, threading.Thread]]:
    from faregate.gateway import Gateway
    from faregate.observability import logging as logs
    from faregate.server.app import build_app

    if log:  # as `faregate serve` runs: JSON lines at info level
        logs.setup("info")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faregate.yaml"
        settings = {"type": TYPES.get(kind, kind), "responses": str(kind == "responses").lower(), "model": MODELS[kind]}
        settings["credentials"] = CREDENTIALS.get(kind, KEY)
        path.write_text(CONFIG.format(upstream=upstream, log=str(log).lower(), state=tmp, **settings))
        asyncio.run(_migrate(f"sqlite:///{tmp}/state.db"))  # as `faregate serve` does: the spend log has its table
        port = free_port()
        gateway = Gateway(path)
        gateway.access_log = logs.AccessLog(open(os.devnull, "wb"))  # noqa: SIM115 - lines are produced, not kept
        config = uvicorn.Config(
            build_app(gateway),
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="faregate.server.protocol:GuardedProtocol",  # as `faregate serve` runs: httptools with connection limits
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


def count_calls(
    requests: int = 200, *, stream: bool = False, log: bool = False, chunks: int = 5, kind: str = "openai", client: str | None = None
) -> Count:
    """Calls per request through the lockstep upstream; a stream has ``chunks`` content events.
    ``kind``: the upstream, ``openai``, ``anthropic``, ``responses``, ``gemini`` or ``bedrock`` (these two only
    translated: bench.lockstep_providers); ``client``: the client's format, the same
    by default (a diagonal: /v1/chat/completions to an OpenAI upstream, /v1/messages to an
    Anthropic one, bench.lockstep_anthropic, or /v1/responses to an openai provider with
    ``responses: true``, bench.lockstep_responses), else the translated direction (bench.lockstep_translated)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    grouped = lockstep_translated.upstream_for(kind, client) if client is not None and client != kind else None
    upstream: LockstepUpstream
    send: Any
    if grouped is not None:
        upstream, send = grouped, lockstep_translated.send
    elif kind == "openai":
        upstream, send = LockstepUpstream(), _send
    elif kind == "responses":  # the Responses diagonal: /v1/responses to an openai provider with responses: true
        upstream, send = lockstep_responses.ResponsesLockstepUpstream(), lockstep_responses.send
    else:
        upstream, send = lockstep_anthropic.AnthropicLockstepUpstream(), lockstep_anthropic.send
    counted = {"openai": _visible_events, "responses": lockstep_responses.visible_events}
    visible_events = counted.get(kind, lockstep_anthropic.visible_events)
    upstream.chunks = chunks
    try:
        with served(upstream.url, log=log, kind=kind) as (url, loop, _):
            host, _, port = url.removeprefix("http://").partition(":")
            conn = OneWrite(host, int(port), timeout=30)
            for _ in range(20):  # warm up: connections open, caches filled, lazy imports done
                assert send(conn, upstream, body, headers) == 200
            time.sleep(2 * FLUSH_SECONDS)  # ...and the spend log's first batch written (its INSERT compiled once)
            counter = _Counter(loop)
            installed = threading.Event()

            def switch(on: bool) -> None:
                counter.install() if on else counter.uninstall()
                installed.set()

            loop.call_soon_threadsafe(switch, True)
            installed.wait(5)
            for _ in range(requests):
                assert send(conn, upstream, body, headers) == 200
            installed.clear()
            loop.call_soon_threadsafe(switch, False)
            installed.wait(5)
            conn.close()
    finally:
        upstream.close()
    by_package: collections.Counter[str] = collections.Counter()
    for filename, n in counter.by_file.items():
        by_package[_package(filename)] += n
    return Count(
        requests=requests,
        calls=counter.calls,
        by_package=dict(by_package),
        by_function=dict(counter.by_function),
        events=(sum(grouped.expect) if grouped is not None else visible_events(body, chunks)) if stream else 0,
        background=counter.background,
    )


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # --anthropic: the Anthropic diagonal; --to-anthropic / --to-openai: an OpenAI (Anthropic) client
    # translated to an Anthropic (OpenAI) upstream
    # --responses: the Responses diagonal (an openai provider with responses: true)
    diagonal = "anthropic" if "--anthropic" in sys.argv or "--to-anthropic" in sys.argv else "openai"
    diagonal = "responses" if "--responses" in sys.argv else diagonal
    client = {"--to-anthropic": "openai", "--to-openai": "anthropic", "--responses-to-chat": "responses"}  # the last: an OpenAI upstream
    chosen = next((client[a] for a in sys.argv if a in client), None)
    for stream in (False, True):
        result = count_calls(stream=stream, log=True, kind=diagonal, client=chosen)
        kind = "stream" if stream else "plain"
        print(
            f"{kind}: {result.per_request:.0f} Python calls per request ({result.calls} over {result.requests}; background {result.background})"
        )
        if stream:
            longer = count_calls(stream=True, log=True, chunks=15, kind=diagonal, client=chosen)
            per_event = (longer.calls - result.calls) / result.requests / (longer.events - result.events)
            print(f"  {per_event:.1f} per SSE event ({result.events} and {longer.events} events per stream)")
        for pkg, n in sorted(result.by_package.items(), key=lambda kv: -kv[1]):
            print(f"  {pkg:<24} {n / result.requests:8.1f}")
        if "--functions" in sys.argv:
            for fn, n in sorted(result.by_function.items(), key=lambda kv: -kv[1])[:40]:
                print(f"    {n / result.requests:6.1f}  {fn}")


if __name__ == "__main__":
    main()
