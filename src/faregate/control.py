"""Reload coordination: file watch, SIGHUP, bus events, the worker registry and acknowledgements.

Every worker runs one Controller. It loads the config into a new generation when a watched file
changes, on SIGHUP, or when the bus says so; it beats into the registry (generation id and
credential fingerprints) every ``HEARTBEAT_SECONDS``; and it answers ``reload_all``: reload here,
tell every worker, and return only when every live worker of every instance reports the new
generation (or name the laggards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faregate.credentials.keyring import Keyring
from faregate.errors import ConfigError, Problem
from faregate.generation import Generation
from faregate.health import Health
from faregate.observability.metrics import process_exists
from faregate.store.base import (
    HEARTBEAT_EXPIRY,
    HEARTBEAT_SECONDS,
    BusError,
    CachesPurged,
    ControlBus,
    Event,
    ReloadRequested,
    TeamChanged,
    VirtualKeyChanged,
    WorkerInfo,
)
from faregate.upstream import Upstream

log = logging.getLogger("faregate.control")
WATCH_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.3
FENCE_SECONDS = 2.5  # a worker whose control loop has not run for this long (paused) catches up before serving
ACK_POLL_SECONDS = 0.05
Signature = tuple[tuple[str, int, int, int] | None, ...]


def file_signature(paths: tuple[Path, ...]) -> Signature:
    """What identifies each file's current content: resolved target, inode, mtime, size. Follows
    symlinks, so a Kubernetes secret volume swapping its `..data` link is a change; so is an
    editor's write-by-rename (new inode)."""
    out: list[tuple[str, int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@dataclass
class ReloadOutcome:
    ok: bool
    generation: str
    workers: list[tuple[WorkerInfo, bool]] = field(default_factory=list)  # (worker, on the new generation)
    laggards: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    bus: str = "ok"


class Controller:
    def __init__(self, keyring: Keyring, health: Health, upstream: Upstream, bus: ControlBus, instance: str) -> None:
        self.keyring = keyring
        self.health = health
        self.upstream = upstream
        self.bus = bus
        self.instance = instance
        self.pid = os.getpid()
        self.worker_id = f"{instance}/{self.pid}"
        self.started = time.time()
        self.bus_status = "starting"
        self.last_tick = time.monotonic()
        self.last_error = ""
        self.key_listeners: list[Callable[[VirtualKeyChanged | TeamChanged], None]] = []
        self._signature = file_signature(keyring.current.generation.watched_files)
        self._failed_signature: Signature | None = None

    # local reload ----------------------------------------------------------------------------------
    def reload_local(self, purge: bool = False) -> tuple[Generation, list[Problem]]:
        """Load the config file into a new generation and swap it in; ConfigError leaves the old one."""
        previous = self.keyring.current.generation.id
        try:
            snap, warnings = self.keyring.reload()
        except ConfigError as exc:
            self.last_error = "; ".join(str(p) for p in exc.problems if p.severity == "error")
            log.error(f"reload failed, generation {self.keyring.current.generation.id} keeps serving: {self.last_error}")
            raise
        self.last_error = ""
        self._signature = file_signature(snap.generation.watched_files)  # the new config may watch other key files
        self.upstream.retire()  # connections opened for the old generation go with it
        if purge:
            self.health.clear()
        change = "unchanged" if snap.generation.id == previous else f"replaces {previous}"
        log.info(f"generation {snap.generation.id} loaded ({change})")
        return snap.generation, warnings

    def _try_reload(self, purge: bool = False) -> None:
        with contextlib.suppress(ConfigError):
            self.reload_local(purge)

    # background loops ------------------------------------------------------------------------------
    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """The background loops the gateway runs for this worker."""
        return [self._heartbeat_loop(), self._receive_loop(), self._watch_loop()]

    def install_signal_handler(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._try_reload)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("SIGHUP reload is not available in this process")

    async def start(self) -> None:
        try:
            await self.bus.start()
            self.bus_status = "ok"
        except BusError as exc:
            self.bus_status = f"degraded: {exc}"
            log.warning(f"control bus unreachable at start, serving locally: {exc}")
        await self._beat()

    def info(self) -> WorkerInfo:
        gen = self.keyring.current.generation
        labels = tuple(c.label for p in gen.providers.values() for c in p.credentials)
        now = time.time()
        usage: dict[str, list[object]] = {}
        for pool in self.keyring.current.pools.values():
            for credential, state, reason, requests, last_used in pool.report(now):
                usage[credential.label] = [state, reason, requests, last_used]
        return WorkerInfo(
            id=self.worker_id,
            instance=self.instance,
            pid=self.pid,
            generation=gen.id,
            credentials=labels,
            started=self.started,
            heartbeat=time.time(),
            bus=self.bus_status,
            error=self.last_error,
            usage=usage,
        )

    async def _beat(self) -> None:
        try:
            await self.bus.register(self.info())
        except BusError as exc:
            self.bus_status = f"degraded: {exc}"

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self._beat()
            forget = getattr(self.bus, "forget_older_than", None)
            if forget is not None:
                with contextlib.suppress(BusError):
                    await forget(time.time() - 10 * HEARTBEAT_EXPIRY)

    async def _receive_loop(self) -> None:
        while True:
            await self.receive_once()

    async def receive_once(self) -> None:
        self.last_tick = time.monotonic()  # the loop ran: this worker is not paused (the bus may be down)
        try:
            delivery = await self.bus.receive()
        except BusError as exc:
            if not self.bus_status.startswith("degraded"):
                log.warning(f"control bus lost, serving the last generation: {exc}")
            self.bus_status = f"degraded: {exc}"
            return
        if self.bus_status != "ok":
            log.info("control bus reachable again; resynchronising")
            self.bus_status = "ok"
            delivery.resync = True
        if delivery.resync:
            self._try_reload()
            await self._beat()
        for event in delivery.events:
            await self._handle(event)

    async def _handle(self, event: Event) -> None:
        if isinstance(event, VirtualKeyChanged | TeamChanged):
            for listener in self.key_listeners:
                listener(event)
            return
        if event.origin == self.worker_id:
            return  # the requester has reloaded already
        self._try_reload(purge=isinstance(event, CachesPurged))
        await self._beat()  # acknowledge at once: the requester is waiting on the registry

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            await self.check_files()

    async def check_files(self) -> None:
        files = self.keyring.current.generation.watched_files
        signature = file_signature(files)
        if signature == self._signature or signature == self._failed_signature:
            return
        await asyncio.sleep(DEBOUNCE_SECONDS)  # let a writer finish; then read what is there
        signature = file_signature(files)
        try:
            self.reload_local()
            self._failed_signature = None
        except ConfigError:
            self._failed_signature = signature  # do not retry (and re-log) until the files change again
        await self._beat()

    def stale(self) -> bool:
        """True when the control loop has not run for a while: the process was paused or starved."""
        return time.monotonic() - self.last_tick > FENCE_SECONDS

    async def catch_up(self) -> None:
        """Before serving after a pause (SIGSTOP, a stalled loop): apply what the files and the bus say.
        With the bus down only the files are checked, so an outage costs requests nothing."""
        await self.check_files()
        if self.bus_status == "ok":
            await self.receive_once()
        self.last_tick = time.monotonic()

    # coordination ---------------------------------------------------------------------------------
    def is_live(self, worker: WorkerInfo, now: float) -> bool:
        """A fresh heartbeat; on this instance also a process that still exists, so a crashed sibling
        is not waited for until its heartbeat expires."""
        if now - worker.heartbeat > HEARTBEAT_EXPIRY:
            return False
        return worker.instance != self.instance or process_exists(worker.pid)

    async def live_workers(self) -> list[WorkerInfo]:
        now = time.time()
        return [w for w in await self.bus.workers() if self.is_live(w, now)]

    async def reload_all(self, timeout: float, purge: bool = False) -> ReloadOutcome:
        """Reload here (ConfigError if the config is invalid), tell every worker, wait for their acks."""
        generation, warnings = self.reload_local(purge)
        event: Event = CachesPurged(origin=self.worker_id) if purge else ReloadRequested(origin=self.worker_id)
        outcome = ReloadOutcome(ok=False, generation=generation.id, warnings=warnings, bus=self.bus_status)
        try:
            await self.bus.publish(event)
            await self._beat()
        except BusError as exc:
            outcome.bus = f"degraded: {exc}"
            outcome.laggards = [f"control bus unreachable ({exc}): only this worker ({self.worker_id}) reloaded"]
            return outcome
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = await self.live_workers()
            except BusError as exc:
                outcome.laggards = [f"control bus unreachable ({exc})"]
                return outcome
            outcome.workers = [(w, w.generation == generation.id) for w in live]
            behind = [w for w, done in outcome.workers if not done]
            if not behind:
                outcome.ok = True
                return outcome
            if time.monotonic() >= deadline:
                outcome.laggards = [f"{w.id} still on generation {w.generation}" + (f" ({w.error})" if w.error else "") for w in behind]
                return outcome
            await asyncio.sleep(ACK_POLL_SECONDS)
