"""A loopback webhook receiver (Slack's incoming webhooks answer 200 "ok"): records every POST;
queued status codes make it fail first (a webhook that is down, then back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import ScriptedServer


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class FakeWebhook(ScriptedServer[Posted, int]):
    NAME = "fake webhook"

    def posts(self, event: str | None = None) -> list[Posted]:
        """Delivered alerts (answered 2xx), of one event (either form: JSON's "event", Slack's first block)."""
        return [p for p in self.requests if p.headers.get("x-answered") == "200" and (event is None or event_of(p) == event)]

    def wait_for_post(self, event: str, timeout: float = 60.0) -> Posted:
        """The first delivered alert of ``event``, waiting for it (AssertionError after ``timeout``)."""
        with self._arrived:
            self._arrived.wait_for(lambda: any(p.headers["x-answered"] == "200" and event_of(p) == event for p in self._requests), timeout)
        found = self.posts(event)
        assert found, f"no {event} alert within {timeout}s; got: {[event_of(p) for p in self.requests]}"
        return found[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status = self._take_status()
        rec = Posted(request.path, {**{k.lower(): v for k, v in request.headers.items()}, "x-answered": str(status)}, body)
        self._record(rec)
        return web.Response(status=status, text="ok" if status == 200 else "unavailable")

    def _take_status(self) -> int:
        with self._lock:
            return self._queue.popleft() if self._queue else 200

    def _record(self, rec: Posted) -> None:
        with self._arrived:
            self._requests.append(rec)
            self._arrived.notify_all()


def event_of(post: Posted) -> str | None:
    data = post.json
    if "event" in data:
        return str(data["event"])
    text = data["blocks"][0]["text"]["text"]  # Slack form: "*event* (severity): summary"
    return str(text.split("*")[1])
