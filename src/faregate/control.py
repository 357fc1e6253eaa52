"""Reload coordination: file watch, SIGHUP, bus events, the worker registry and acknowledgements.

Every worker runs one Controller. It loads the config into a new generation when a watched file
changes, on SIGHUP, or when the bus says so; it beats into the registry (generation id and
credential fingerprints) every ``HEARTBEAT_SECONDS``; and it answers ``reload_all``: reload here,
tell every worker, and return only when every live worker of every instance reports the new
generation (or name the laggards).

Key and team changes are acknowledged the same way (``announce``): the bus numbers its events, each
worker beats the number up to which it has applied them (its Mark) right after dropping the keys
from its cache, and the admin call waits until every live worker's mark covers the change's.
A worker that others may have stopped waiting for (paused, starved, its heartbeat not registered
for ``FENCE_SECONDS``) is fenced: before it serves, it catches up, and if it cannot reach the bus
it drops its key cache, so every key is read from the database.
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

from faregate.config.schema import connection_limits
from faregate.credentials.keyring import Keyring
from faregate.credentials.virtual import CACHE_TTL
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
    DeploymentProbed,
    Event,
    Mark,
    ReloadRequested,
    TeamChanged,
    VirtualKeyChanged,
    WorkerInfo,
)
from faregate.upstream import Upstream

log = logging.getLogger("faregate.control")
WATCH_SECONDS = 0.5
DEBOUNCE_SECONDS = 0.3
# a worker whose control loop or heartbeat has not run for this long (paused) catches up before serving; shorter than
# HEARTBEAT_EXPIRY, so it is fenced before the others stop waiting for it
FENCE_SECONDS = 2.5
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


@dataclass
class Confirmation:
    """How far a key or team change has reached: every live worker has applied it (ok), or not."""

    ok: bool = False
    workers: list[tuple[WorkerInfo, bool]] = field(default_factory=list)  # (worker, has applied the change)
    laggards: list[str] = field(default_factory=list)
    bus: str = "ok"


KeyListener = Callable[[VirtualKeyChanged | TeamChanged | None], None]  # None: drop every cached key


def apply_probe(health: Health, event: DeploymentProbed) -> None:
    """A probe's verdict on a deployment's upstream model, on this worker (the prober's and every other)."""
    if event.found:
        health.configured(event.label)
    else:
        health.misconfigure(event.label, event.reason, event.closest)


def seen_deployments(health: Health, generation: Generation, now: float) -> dict[str, list[object]]:
    """What the heartbeat carries of each deployment (``WorkerInfo.deployments``): only those this
    worker has seen answer or fail, or holds in a state other than healthy, so it stays small."""
    rows: dict[str, list[object]] = {}
    for route in generation.models.values():
        for dep in route.deployments:
            if dep.label in rows:
                continue
            r = health.report(dep.label, now)
            if r.state == "healthy" and not r.successes and not r.errors:
                continue
            latencies = [round(x * 1000, 1) for x in r.latencies]
            rows[dep.label] = [r.state, r.reason, r.until, r.successes, r.errors, r.last_error, r.last_error_at, latencies, list(r.closest)]
    return rows


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
        self.key_listeners: list[KeyListener] = []
        self.purge_listeners: list[Callable[[], None]] = []  # called on a purge (POST /cache/purge): per-worker caches
        self.applied = Mark("", 0)  # every bus event up to here is applied (and key events are in the key cache)
        self.beat_at = time.monotonic()  # when the last heartbeat that reached the registry was taken
        self._suspect = False  # others may have stopped waiting for this worker: check the bus head before trusting the cache
        self._receiving = asyncio.Lock()  # one delivery handled at a time, so the mark only moves past applied events
        self._catching_up = asyncio.Lock()  # requests arriving together after a pause wait for one catch-up
        self._signature = file_signature(keyring.current.generation.watched_files)
        self._failed_signature: Signature | None = None
        self._cors_at_start = keyring.current.generation.server.cors is not None  # the app is wrapped for CORS at start only
        self._limits_at_start = connection_limits(keyring.current.generation.server)  # the server's protocol took them at start

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
        self.health.forget_misconfigured()  # misnamed deployments get their chance again: the config may have fixed them
        if purge:
            self.health.clear()
            for listener in self.purge_listeners:  # the response cache this worker holds
                listener()
        change = "unchanged" if snap.generation.id == previous else f"replaces {previous}"
        log.info(f"generation {snap.generation.id} loaded ({change})")
        if snap.generation.server.cors is not None and not self._cors_at_start:
            message = "CORS was off when faregate started and is set up only at start: restart to turn it on"
            late = Problem("server.cors", message, "warning")
            log.warning(str(late))
            warnings = [*warnings, late]
        new_limits = connection_limits(snap.generation.server)
        if changed := [f"server.{name}" for name, value in self._limits_at_start.items() if new_limits[name] != value]:
            message = f"{', '.join(changed)}: connection limits are applied when faregate starts; restart to apply the new values"
            late = Problem(changed[0], message, "warning")
            log.warning(str(late))
            warnings = [*warnings, late]
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
            self.applied = await self.bus.head()  # nothing is cached yet: every earlier change is in what the database says
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
            bus_epoch=self.applied.epoch,
            bus_seq=self.applied.seq,
            deployments=seen_deployments(self.health, gen, now),
        )

    async def _beat(self) -> None:
        at = time.monotonic()
        try:
            await self.bus.register(self.info())
        except BusError as exc:
            self.bus_status = f"degraded: {exc}"
            return
        if at - self.beat_at > FENCE_SECONDS:
            self._suspect = True  # our heartbeat was missing long enough for changes to stop waiting for us
        self.beat_at = at

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

    async def receive_once(self, verify: bool = False) -> None:
        """Take one delivery from the bus and apply it; then beat at once if anything changed (the
        requester of a reload or key change is waiting on the registry)."""
        async with self._receiving:
            now = time.monotonic()
            if now - self.last_tick > FENCE_SECONDS:
                self._suspect = True  # after a pause, events may be in flight: check the head before trusting the cache
            verify = verify or self._suspect
            self.last_tick = now  # the loop ran: this worker is not paused (the bus may be down)
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
            for event in delivery.events:
                self._handle(event)
            mark = delivery.mark
            if mark is not None and mark.epoch == self.applied.epoch:
                self.applied = max(self.applied, mark, key=lambda m: m.seq)
            elif mark is not None:
                verify = True  # a new numbering (the bus lost its memory): start from its head
            if verify or delivery.resync:
                await self._verify(reset=delivery.resync)
            if delivery.events or delivery.resync or verify:
                await self._beat()

    def _handle(self, event: Event) -> None:
        if isinstance(event, VirtualKeyChanged | TeamChanged):
            for listener in self.key_listeners:
                listener(event)
            return
        if isinstance(event, DeploymentProbed):
            if event.origin != self.worker_id:
                apply_probe(self.health, event)
            return
        if event.origin == self.worker_id:
            return  # the requester has reloaded already
        self._try_reload(purge=isinstance(event, CachesPurged))

    def _drop_keys(self) -> None:
        for listener in self.key_listeners:
            listener(None)

    async def _verify(self, reset: bool) -> None:
        """Make sure no key change is missed: when the bus's head is past what this worker applied
        (events still in flight after a pause, or lost while the bus was away), drop every cached key
        and stand at the head; every change up to it was stored before it was published."""
        try:
            head = await self.bus.head()
        except BusError as exc:
            self.bus_status = f"degraded: {exc}"
            self._drop_keys()
            return
        if reset or not self.applied.covers(head):
            self._drop_keys()
            self.applied = head
        self._suspect = False

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
        """True when the control loop or the heartbeat has not run for a while (the process was
        paused or starved, or the registry is unreachable), or the bus head is not checked since:
        other workers may have stopped waiting for this one, so its key cache cannot be trusted."""
        now = time.monotonic()
        return self._suspect or now - self.last_tick > FENCE_SECONDS or now - self.beat_at > FENCE_SECONDS

    async def catch_up(self) -> None:
        """Before serving after a pause (SIGSTOP, a stalled loop): apply what the files and the bus say.
        With the bus down only the files are checked (no reconnect attempt per request) and the key
        cache is dropped: keys are then read from the database, the authority, until the bus is back."""
        async with self._catching_up:
            if not self.stale():
                return  # another request caught up meanwhile
            await self.check_files()
            if self.bus_status == "ok":
                await self.receive_once(verify=True)
                if self.bus_status == "ok" and time.monotonic() - self.beat_at > FENCE_SECONDS:
                    await self._beat()
            if self.stale():
                self._drop_keys()
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

    async def announce(self, events: list[Event], timeout: float) -> Confirmation:
        """Publish key or team changes (already stored, and applied to this worker's cache) and wait
        until every live worker of every instance has applied them, or name the laggards."""
        outcome = Confirmation(bus=self.bus_status)
        try:
            marks = [await self.bus.publish(event) for event in events]
        except BusError as exc:
            outcome.bus = f"degraded: {exc}"
            outcome.laggards = [
                f"control bus unreachable ({exc}): only this worker ({self.worker_id}) has applied the change; "
                f"the others within {CACHE_TTL:g} s, as their cached entries expire"
            ]
            return outcome
        if not marks:
            outcome.ok = True
            return outcome
        mark = marks[-1]  # the bus delivers in order: a worker that applied the last has applied them all
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = await self.live_workers()
            except BusError as exc:
                outcome.laggards = [f"control bus unreachable ({exc})"]
                return outcome
            outcome.workers = [(w, Mark(w.bus_epoch, w.bus_seq).covers(mark)) for w in live]
            behind = [w for w, done in outcome.workers if not done]
            if not behind:
                outcome.ok = True
                return outcome
            if time.monotonic() >= deadline:
                outcome.laggards = [f"{w.id} has applied the control bus up to event {w.bus_seq}, not yet {mark.seq}" for w in behind]
                return outcome
            await asyncio.sleep(ACK_POLL_SECONDS)

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
