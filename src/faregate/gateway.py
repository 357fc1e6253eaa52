"""Composition root: one Gateway per worker process.

Holds the keyring (and through it the current generation: one attribute), deployment health,
the one upstream client, metrics, and the one set of background tasks. Everything else receives
what it needs from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate.alerts.sender import Notifier
from faregate.alerts.watch import Sources, Watcher
from faregate.cache.stores import make_store
from faregate.config.state import state_dir
from faregate.control import Controller
from faregate.credentials import aws
from faregate.credentials.keyring import Keyring, Snapshot, build
from faregate.credentials.minted import Refresher
from faregate.credentials.virtual import VirtualKeys
from faregate.generation import Generation
from faregate.health import Health
from faregate.observability import logging as logs
from faregate.observability import memory, tracing
from faregate.observability.metrics import Labels, Metrics, read_snapshots, render, write_snapshot
from faregate.pipeline import Exchange, Pipeline
from faregate.ratelimit import Limiter, LocalLimiter
from faregate.spendlog import SpendLog, outbox_directory
from faregate.store.base import BusError, ControlBus, TeamChanged, VirtualKeyChanged
from faregate.store.db import make_engine
from faregate.store.sqlite_bus import SqliteBus
from faregate.turns import Turns
from faregate.upstream import Upstream

log = logging.getLogger("faregate.gateway")
METRICS_FLUSH_SECONDS = 1.0
UNKNOWN_MODEL = "(unknown)"  # the metrics label of every requested model that is not a configured public model


def make_bus(generation: Generation) -> ControlBus:
    """Redis when ``state.redis`` is set (many instances); else a SQLite file beside the database (one host)."""
    state = generation.state
    if state.redis:
        from faregate.store.redis_bus import RedisBus  # redis only where state.redis is set

        return RedisBus(state.redis)
    return SqliteBus(state_dir(state, generation.source.parent) / "control.db")


def make_limiter(generation: Generation) -> Limiter:
    """Rate limits exact across workers and instances with Redis; per worker process without it."""
    redis = generation.state.redis
    if not redis:
        return LocalLimiter()
    from faregate.ratelimit.redis_limiter import RedisLimiter

    return RedisLimiter(redis)


class Gateway:
    def __init__(self, config_path: Path, metrics_dir: Path | None = None, instance: str | None = None) -> None:
        generation, warnings = build(config_path)
        for problem in warnings:
            log.warning(str(problem))
        self.keyring = Keyring(generation)
        self.tokens = Refresher(lambda: self.keyring.current.generation)  # minted credentials (vertex): refreshed off the hot path
        self.keyring.listeners.append(self.tokens.wake)
        self.health = Health()
        self.upstream = Upstream()
        self.limiter = make_limiter(generation)
        self.pipeline = Pipeline(self.health, self.upstream, current=lambda: self.keyring.current, limiter=self.limiter)
        self.cache = make_store(generation.state.redis)  # the response cache: Redis, else this worker's bounded store
        self.engine: AsyncEngine | None = None
        self.keys: VirtualKeys | None = None
        self.control = Controller(
            self.keyring, self.health, self.upstream, make_bus(generation), instance or f"{socket.gethostname()}-{os.getpid()}"
        )
        self.control.purge_listeners.append(self.cache.clear_local)  # POST /cache/purge, announced by another worker
        self.metrics = Metrics()
        self.metrics_dir = metrics_dir
        self.access_log = logs.AccessLog()
        self.spend = SpendLog(outbox_directory(generation.state), self.metrics)
        self.notifier = Notifier(lambda: self.keyring.current.generation, self.control.bus, self.metrics, self.control.worker_id)
        sources = Sources(
            lambda: self.keyring.current, self.health, lambda: self.control.last_error, lambda: self.spend.outbox_rows, lambda: self.engine
        )
        self.alerts = Watcher(sources, self.notifier)  # alerts: looked for on a timer, sent off the hot path
        self.turns = Turns()  # how many new requests one loop turn may start (faregate.turns)
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = time.time()
        self.pid = os.getpid()
        self._misconfigured_shown = False  # the last metrics snapshot showed a misconfigured deployment
        self.tracer: tracing.Tracer | None = None  # observability.otlp (None: off, and no hook runs)

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.upstream.start()
        self._tracing(self.keyring.current)  # opentelemetry is imported only when observability.otlp is set
        self.keyring.listeners.append(self._tracing)
        self.engine = make_engine(self.keyring.current.generation.state.database)
        self.keys = VirtualKeys(self.engine)
        self.control.key_listeners.append(self._key_changed)
        await self.control.start()
        for task in self.control.tasks():
            self.spawn(task)
        self.control.install_signal_handler()
        self.spawn(self._flush_logs())
        self.spawn(self.tokens.run())
        self.spawn(aws.refresh_forever(lambda: self.keyring.current.generation))  # Bedrock's chain keys, before they expire
        self.spawn(self.spend.run(self.engine))
        self.spawn(self.notifier.run())
        self.spawn(self.alerts.run())
        self.spawn(memory.trim_when_idle(lambda: self.metrics.in_flight))  # freed memory back to the system once load falls
        if self.metrics_dir is not None:
            self.spawn(self._flush_metrics())
        # What start-up built (modules, the generation, pools, pydantic's schema) lives as long as the
        # worker: collected once now, then frozen out of every later collection, which otherwise walks
        # all ~130k of them in one loop turn (a full collection: ~105 ms of CPU; frozen: ~0.01 ms).
        gc.collect()
        gc.freeze()

    def _key_changed(self, event: VirtualKeyChanged | TeamChanged | None) -> None:
        if self.keys is None:
            return
        if event is None:  # the controller cannot vouch for the cache (missed or in-flight changes): drop it all
            self.keys.clear()
        elif isinstance(event, TeamChanged):
            self.keys.invalidate_team(event.team_id)
        else:
            self.keys.invalidate(event.key_hash)

    async def stop(self) -> None:
        await self.spend.close()  # the last spend rows: database, else the outbox (before the engine goes)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(BusError):
            await self.control.bus.unregister(self.control.worker_id)
        await self.control.bus.close()
        await self.upstream.close()
        self.notifier.close()
        await self.limiter.close()
        await self.cache.close()
        if self.engine is not None:
            await self.engine.dispose()
        self.access_log.close()  # the last lines, written by the log's own thread
        if self.tracer is not None:  # the last spans exported (bounded: tracing.CLOSE_SECONDS)
            await asyncio.to_thread(self.tracer.close)

    def _tracing(self, snap: Snapshot) -> None:
        """A (re)load: requests that start from now on are traced as its observability.otlp says."""
        self.tracer = tracing.swap(self.tracer, snap.generation.otlp)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """The one place background work starts; tasks are kept and cancelled at stop."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # per request ---------------------------------------------------------------------------------
    def finish(self, ex: Exchange, now: float) -> None:
        """Record a finished request: metrics and the one log line."""
        if ex.trace is not None:
            ex.trace.finish(ex)
        elapsed = now - ex.started
        model = ex.model or "-"
        if ex.model and (ex.generation is None or ex.model not in ex.generation.models):
            model = UNKNOWN_MODEL  # a name the client chose: one label for all of them, or metrics grow without bound
        dep, fmt = ex.deployment, ex.format
        deployment, ptype = (dep.label, dep.provider.type) if dep else ("-", "-")
        m = self.metrics
        m.dirty = True
        counters, histograms = m.counters, m.histograms
        series = counters["faregate_requests_total"]
        key = (model, deployment, str(ex.status), fmt, ptype)
        series[key] = series.get(key, 0.0) + 1
        labels = (model, fmt, ptype)
        m.observe(histograms["faregate_request_duration_seconds"], labels, elapsed)
        if ex.ttfb is not None:
            m.observe(histograms["faregate_time_to_first_token_seconds"], labels, ex.ttfb)
        usage = ex.usage
        if usage is not None:
            tokens = counters["faregate_tokens_total"]
            prompt, completion = (model, "prompt", fmt, ptype), (model, "completion", fmt, ptype)
            tokens[prompt] = tokens.get(prompt, 0.0) + usage.prompt_tokens
            tokens[completion] = tokens.get(completion, 0.0) + usage.completion_tokens
            parts = (
                ("cache_read", usage.cached_tokens),
                ("cache_write_5m", usage.cache_write_5m),
                ("cache_write_1h", usage.cache_write_1h),
                ("reasoning", usage.reasoning_tokens),
            )
            for kind, count in parts:  # parts of prompt/completion, priced at their own rates: only when reported
                if count:
                    part = (model, kind, fmt, ptype)
                    tokens[part] = tokens.get(part, 0.0) + count
        if ex.cost:
            m.inc("faregate_cost_usd_total", labels, ex.cost)
        elif ex.cost is None and 200 <= ex.status < 300:  # answered, cost unknown: counted, never a silent $0
            m.inc("faregate_unpriced_requests_total", labels)
        for label, kind in ex.failures:
            m.inc("faregate_upstream_errors_total", (label, kind))
        if ex.cache is not None:  # the model's response cache is on
            m.inc("faregate_cache_total", (model, ex.cache))
            if ex.saved_cost:
                m.inc("faregate_cache_saved_usd_total", (model,), ex.saved_cost)
        self.spend.record(spend_row(ex, elapsed))
        if self.keyring.current.generation.server.log_requests:
            self.access_log.record(
                {
                    "request_id": ex.request_id,
                    "worker": self.pid,
                    "key": ex.key_id,
                    "endpoint": ex.endpoint,
                    "format": fmt,
                    "model": ex.model or None,
                    "stream": ex.stream,
                    "deployment": dep.label if dep else None,
                    "provider_type": dep.provider.type if dep else None,
                    "translated": translated(ex),
                    "dropped": ",".join(ex.dropped) if ex.dropped else None,
                    "credential": ex.credential.label if ex.credential else None,
                    "generation": ex.generation.id if ex.generation else None,
                    "fallback_from": ex.fallback_from,
                    "upstream_request_id": ex.upstream_request_id,
                    "status": ex.status,
                    "error": ex.error_code,
                    "attempts": ex.attempts,
                    "latency_ms": round(elapsed * 1000, 2),
                    "ttfb_ms": round(ex.ttfb * 1000, 2) if ex.ttfb is not None else None,
                    "prompt_tokens": usage.prompt_tokens if usage else None,
                    "completion_tokens": usage.completion_tokens if usage else None,
                    "cost_usd": ex.cost,
                    "cache": ex.cache,
                    "saved_usd": ex.saved_cost,
                }
            )

    def usage_anomaly(self, ex: Exchange) -> None:
        """An upstream reported usage that cannot be true (negative, not a whole number, beyond
        ``MAX_TOKENS``): say so, count it, and treat the usage as unknown, so the request is charged
        its whole reservation (``limits.settle``) and its cost is recorded as unknown, never negative."""
        assert ex.usage is not None
        deployment = ex.deployment.label if ex.deployment else "-"
        log.warning(
            f"upstream {deployment} reported invalid usage ({ex.usage.anomaly}); treated as unknown: "
            f"a budgeted key is charged its whole reservation (request {ex.request_id})"
        )
        self.metrics.inc("faregate_usage_anomalies_total", (deployment,))
        ex.usage = None
        ex.cost = None

    # metrics -------------------------------------------------------------------------------------
    def _gauges(self) -> dict[str, dict[Labels, float]]:
        now = time.time()
        cooling: dict[Labels, float] = {(label,): 1.0 for label, _, _ in self.health.cooling(now)}  # never a misconfigured one
        misconfigured: dict[Labels, float] = {(label,): 1.0 for label in self.health.misconfigured_labels()}
        return {
            "faregate_deployment_cooldown": cooling,
            "faregate_deployment_misconfigured": misconfigured,
            "faregate_requests_in_flight": {(): float(self.metrics.in_flight)},
            "faregate_spend_outbox_rows": {(): float(self.spend.outbox_rows)},
        }

    def render_metrics(self) -> bytes:
        own = self.metrics.snapshot(self._gauges())
        if self.metrics_dir is None:
            return render([(True, own)])
        write_snapshot(self.metrics_dir, own)
        return render(read_snapshots(self.metrics_dir))

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(logs.FLUSH_SECONDS)
            self.access_log.flush()

    async def _flush_metrics(self) -> None:
        assert self.metrics_dir is not None
        while True:
            await asyncio.sleep(METRICS_FLUSH_SECONDS)
            misconfigured = bool(self.health.misconfigured_labels())
            if self.metrics.dirty or self.health.cooling(time.time()) or misconfigured or self._misconfigured_shown:
                self.metrics.dirty, self._misconfigured_shown = False, misconfigured  # one more write once none is left
                try:
                    write_snapshot(self.metrics_dir, self.metrics.snapshot(self._gauges()))
                except OSError as exc:
                    log.warning(f"cannot write metrics snapshot: {exc}")


def translated(ex: Exchange) -> bool:
    """Whether the answer went through the neutral model (off the diagonal), as the pipeline noted
    for the attempt that answered: a provider speaking the client's format itself (an openai
    provider with ``responses: true``) is a diagonal; the mock answers a format it does not speak
    (Responses) translated."""
    return ex.translated and ex.deployment is not None


def spend_row(ex: Exchange, elapsed: float) -> dict[str, Any]:
    """The spend log row of one proxied request, whoever made it: a virtual key, the master key
    (key_id None) or a caller refused before auth succeeded (key_id None, status 401): one row per
    request id. Cost: the priced cost when answered (None if unpriced or the usage is unknown, never
    a silent 0); 0 when nothing was answered, as budgets settle it. No I/O, no clock reads but one."""
    usage, dep = ex.usage, ex.deployment
    answered = 200 <= ex.status < 300 or ex.ttfb is not None
    return {
        "request_id": ex.request_id,
        "ts": time.time(),
        "key_id": ex.key_id,
        "team_id": ex.team_id,
        "user_id": ex.user_id,
        "endpoint": ex.endpoint,
        "format": ex.format,
        "model": ex.model or None,
        "deployment": dep.label if dep else None,
        "provider": dep.provider.name if dep else None,
        "upstream_model": dep.model if dep else None,
        "credential": ex.credential.label if ex.credential else None,
        "stream": ex.stream,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "cache_write_5m_tokens": usage.cache_write_5m if usage else None,
        "cache_write_1h_tokens": usage.cache_write_1h if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
        "cost_usd": ex.cost if answered else 0.0,
        "latency_ms": elapsed * 1000,
        "ttfb_ms": ex.ttfb * 1000 if ex.ttfb is not None else None,
        "status": ex.status,
        "error_code": ex.error_code,
        "fallback_from": ex.fallback_from,
        "attempts": ex.attempts,
        "generation": ex.generation.id if ex.generation else None,
        "failures": "; ".join([f"{label}: {kind}" for label, kind in ex.failures]) if ex.failures else None,
        "upstream_request_id": ex.upstream_request_id,
        "cache": ex.cache,
        "saved_usd": ex.saved_cost,
    }
