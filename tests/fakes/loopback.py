"""The part every fake upstream shares: an aiohttp app on 127.0.0.1 and a free port, served from its
own thread and event loop, so a test (or a gateway process) talks to it over real HTTP.

A fake subclasses ``LoopbackServer``, names itself (``NAME``) and answers every request in
``_handle``; ``start``/``stop`` (or ``with``) run it. ``ScriptedServer`` adds what tests drive a fake
with: the requests it recorded, and the behaviours it answers with (queued, or a rule per model)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from types import TracebackType
from typing import Generic, Self, TypeVar

from aiohttp import web


class LoopbackServer:
    NAME = "fake upstream"  # in thread names and start-up errors
    MAX_BODY = 64 * 1024 * 1024  # aiohttp's client_max_size: the fakes take what the gateway sends

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError  # each fake answers in its provider's wire format

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        name = f"{self.NAME.replace(' ', '-')}-{self.port}"
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name=name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure or not ready.is_set():
            self.stop()
            raise RuntimeError(f"{self.NAME} failed to start: {failure!r}")
        return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        assert self._loop is not None and self._sock is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            app = web.Application(client_max_size=self.MAX_BODY)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is not None and thread is not None and thread.is_alive():
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        if loop is not None and not loop.is_running() and not loop.is_closed():
            loop.close()  # it never ran (start failed)
        if self._sock is not None:
            self._sock.close()
        self._loop = self._thread = self._runner = self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


R = TypeVar("R")  # what the fake records of a request
B = TypeVar("B")  # how it is told to answer one


class ScriptedServer(LoopbackServer, Generic[R, B]):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified on every recorded request
        self._requests: list[R] = []
        self._queue: deque[B] = deque()
        self._rules: dict[str, B] = {}

    @property
    def requests(self) -> list[R]:
        with self._lock:
            return list(self._requests)

    def set_rule(self, model: str, behaviour: B) -> None:
        """Answer every request for ``model`` (when the queue is empty) with ``behaviour``."""
        with self._lock:
            self._rules[model] = behaviour

    def enqueue(self, *behaviours: B) -> None:
        """Answer the next requests, whatever their model or route, with these, in order, once each."""
        with self._lock:
            self._queue.extend(behaviours)

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Until ``n`` requests have been recorded in all (False if ``timeout`` seconds pass first)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._requests) >= n, timeout)

    def _forget(self) -> None:
        """Drop the recorded requests, the queue and the rules (each fake's ``clear`` resets the rest)."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._rules.clear()

    def _take(self, rec: R, model: str | None) -> B | None:
        """Record ``rec`` and pick its answer: the next queued behaviour, else the rule for ``model``,
        else None (the fake's own default)."""
        with self._lock:
            self._requests.append(rec)
            self._arrived.notify_all()
            return self._queue.popleft() if self._queue else self._rules.get(model or "")
