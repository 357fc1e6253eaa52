"""How much new-request work one turn of the event loop may start: a burst of new requests must not
delay the frames of the streams already running.

asyncio (and uvloop) run every callback that is ready before they poll the sockets again. When N
requests arrive together, the first step of each (authentication, parsing, planning, building and
sending the upstream request: the heaviest part of a request, ~0.1-0.2 ms of CPU) is ready in the
same turn, and a frame that a running stream's upstream sent meanwhile waits behind all N of them:
256 requests at once hold every running stream's next frame for tens of milliseconds.

The same holds when many upstream replies arrive together (their requests were sent in one burst,
or a slow turn let them pile up): the rest of a request (reading the reply, pricing it, writing the
answer and the first frames, the log line) is another ~0.1-0.2 ms each. So there are two gates per
worker: ``Gateway.turns`` before a request's first step (server.proxy) and ``Upstream.replies``
once its upstream reply's headers are in.

``Turns.admit`` lets at most ``per_turn`` requests start in one turn; the others wait in arrival
order and start in the next turns, ``per_turn`` at a time, each turn polling the sockets (and so
relaying the running streams' frames) in between. When nothing waits, admitting is two comparisons
and an increment (no await, no allocation), and the turn's reset is one callback per loop turn in
which a request started.
"""

from __future__ import annotations

import asyncio
from collections import deque

PER_TURN = 8  # new requests started per loop turn (at ~0.15 ms each: ~1.2 ms before the loop polls again)


class Turns:
    """The admission of new requests to one event loop (one per worker: ``Gateway.turns``)."""

    __slots__ = ("armed", "loop", "per_turn", "started", "waiting")

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self.started = 0  # requests admitted since the last reset
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.armed = False  # a reset is scheduled for the next turn
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop that state belongs to

    def admit(self) -> asyncio.Future[None] | None:
        """None: start now. Else a future to await: it is resolved in a later turn, in arrival order.
        At most ``per_turn`` requests admitted now, plus ``per_turn`` released from the queue, run
        their first step in any one turn."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # first use, or another loop (a reset scheduled on a loop that ended never ran)
            self.loop, self.started, self.armed = loop, 0, False
            self.waiting.clear()
        if self.started < self.per_turn and not self.waiting:
            self.started += 1
            if not self.armed:
                self.armed = True
                loop.call_soon(self._turn)
            return None
        waiter = loop.create_future()
        self.waiting.append(waiter)
        if not self.armed:
            self.armed = True
            loop.call_soon(self._turn)
        return waiter

    def _turn(self) -> None:
        """Runs once in each loop turn after one in which requests were admitted or waited: a fresh
        allowance, spent first on the requests that waited (their tasks resume in the next turn)."""
        self.armed = False
        self.started = 0
        waiting = self.waiting
        while waiting and self.started < self.per_turn:
            waiter = waiting.popleft()
            if not waiter.done():  # a request cancelled while it waited is skipped
                waiter.set_result(None)
                self.started += 1
        if (waiting or self.started) and self.loop is not None:
            self.armed = True
            self.loop.call_soon(self._turn)
