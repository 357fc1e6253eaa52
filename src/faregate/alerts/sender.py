"""Delivery: a bounded queue drained by one background task, so nothing on a request waits on a webhook.

Per alert and webhook: subscribed? -> claimed through the control bus (one delivery per
``min_interval`` across every worker and instance) -> within the webhook's rate (``RATE_PER_MINUTE``)
-> POSTed, retried ``ATTEMPTS`` times with backoff on a network error, a 429 or a 5xx. Outcomes
are counted in ``faregate_alerts_total{event,result}``; log lines name the webhook by its
fingerprint, never its URL (a Slack webhook URL is a secret).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from faregate.alerts.message import Alert, render
from faregate.generation import AlertTarget, Generation
from faregate.observability.metrics import Metrics
from faregate.store.base import BusError, ControlBus

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("faregate.alerts")
QUEUE_LIMIT = 1000  # alerts waiting; more are dropped (and counted): an alert storm never grows memory
RATE_PER_MINUTE = 20  # per webhook and worker, after deduplication
ATTEMPTS = 4
BACKOFF = (1.0, 2.0, 4.0)  # seconds before the 2nd, 3rd and 4th attempts (a Retry-After up to MAX_RETRY_AFTER wins)
MAX_RETRY_AFTER = 30.0
CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 5.0
METRIC = "faregate_alerts_total"


class Notifier:
    def __init__(self, current: Callable[[], Generation], bus: ControlBus, metrics: Metrics, instance: str) -> None:
        self.current = current
        self.bus = bus
        self.metrics = metrics
        self.instance = instance
        self.queue: collections.deque[Alert] = collections.deque()
        self._ready = asyncio.Event()
        self._sent: dict[str, collections.deque[float]] = {}  # webhook fingerprint -> send times in the last minute
        self._http: urllib3.PoolManager | None = None  # made at the first alert: urllib3 is not imported before

    def notify(self, alert: Alert) -> None:
        """Queue an alert for every webhook subscribed to its event (no-op when none is)."""
        if not any(alert.event in target.events for target in self.current().alerts):
            return
        if len(self.queue) >= QUEUE_LIMIT:
            self._count(alert.event, "dropped")
            return
        self.queue.append(alert)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.queue:
                alert = self.queue.popleft()
                generation = self.current()
                for target in generation.alerts:
                    if alert.event in target.events:
                        await self._deliver(alert, target, generation)

    async def _deliver(self, alert: Alert, target: AlertTarget, generation: Generation) -> None:
        name = target.url.fingerprint
        try:
            ttl = target.min_interval if alert.ttl is None else alert.ttl
            fresh = await self.bus.claim(f"alert:{name}:{alert.dedupe_key}", ttl) if ttl > 0 else True
        except BusError:
            fresh = True  # the bus is down: better a duplicate than a silent outage
        if not fresh:
            self._count(alert.event, "deduplicated")
            return
        now = time.monotonic()
        recent = self._sent.setdefault(name, collections.deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= RATE_PER_MINUTE:
            self._count(alert.event, "rate_limited")
            log.warning(f"alert {alert.event} not sent to webhook {name}: over {RATE_PER_MINUTE} alerts a minute")
            return
        recent.append(now)
        body = render(alert, target.format, self.instance, generation.scrub)
        for attempt in range(ATTEMPTS):
            status, retry_after = await self._post(target, body)
            if status is not None and status < 300:
                self._count(alert.event, "sent")
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt == ATTEMPTS - 1:
                break
            await asyncio.sleep(min(retry_after, MAX_RETRY_AFTER) if retry_after is not None else BACKOFF[attempt])
        self._count(alert.event, "failed")
        log.warning(f"alert {alert.event} could not be delivered to webhook {name} (last status: {status or 'no answer'})")

    async def _post(self, target: AlertTarget, body: bytes) -> tuple[int | None, float | None]:
        """The webhook's status and Retry-After; (None, None) when it could not be reached."""

        import urllib3

        if self._http is None:
            timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
            self._http = urllib3.PoolManager(num_pools=4, maxsize=2, retries=False, timeout=timeout)
        http = self._http

        def send() -> tuple[int | None, float | None]:
            try:
                reply = http.request("POST", target.url.reveal(), body=body, headers={"content-type": "application/json"}, redirect=False)
            except urllib3.exceptions.HTTPError:
                return None, None
            after = reply.headers.get("retry-after")
            return reply.status, float(after) if after is not None and after.isdigit() else None

        return await asyncio.to_thread(send)

    def _count(self, event: str, result: str) -> None:
        self.metrics.inc(METRIC, (event, result))

    def close(self) -> None:
        if self._http is not None:
            self._http.clear()
