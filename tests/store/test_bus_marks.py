"""Both control buses number their events: what a publisher is told is what every receiver sees,
in order, and the head; a Redis that lost its memory starts a new epoch, so no mark a worker
holds from before can be taken as covering a change made after (a key change would otherwise be
"acknowledged" by workers that never saw it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from faregate.store.base import BusError, Mark, VirtualKeyChanged
from faregate.store.redis_bus import RedisBus
from faregate.store.sqlite_bus import SqliteBus
from tests.support.redis import RedisServer


def changed(n: int) -> VirtualKeyChanged:
    return VirtualKeyChanged(key_hash=f"{n:064x}", action="revoked", origin="test")


async def _receive_until(bus: SqliteBus | RedisBus, count: int) -> tuple[list[VirtualKeyChanged], list[Mark]]:
    events: list[VirtualKeyChanged] = []
    marks: list[Mark] = []
    for _ in range(200):
        delivery = await bus.receive()
        events += [e for e in delivery.events if isinstance(e, VirtualKeyChanged)]
        if delivery.mark is not None:
            marks.append(delivery.mark)
        if len(events) >= count:
            break
    return events, marks


async def again(call: Callable[[], Awaitable[Mark]]) -> Mark:
    """A pooled connection that died with the old Redis fails its next call once: retry a few times."""
    for _ in range(3):
        try:
            return await call()
        except BusError:
            continue
    return await call()


def test_sqlite_marks(tmp_path: Path) -> None:
    async def run() -> None:
        a, b = SqliteBus(tmp_path / "control.db"), SqliteBus(tmp_path / "control.db")
        try:
            await a.start()
            await b.start()
            start = await a.head()
            published = [await (a, b)[n % 2].publish(changed(n)) for n in range(6)]  # two publishers, one numbering
            assert [m.seq for m in published] == list(range(start.seq + 1, start.seq + 7))
            assert await a.head() == await b.head() == published[-1]
            events, marks = await _receive_until(b, 6)
            assert [e.key_hash for e in events] == [changed(n).key_hash for n in range(6)]  # in publishing order
            assert marks[-1] == published[-1] and all(m.covers(published[0]) for m in marks)
            # events older than the keep window are deleted; the numbering goes on from the last one given out
            await a._run("DELETE FROM control_events")
            assert await b.head() == published[-1]
            assert (await a.publish(changed(7))).seq == published[-1].seq + 1
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_redis_marks_and_a_new_epoch_after_redis_lost_its_memory(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:

        async def run() -> None:
            a, b = RedisBus(server.url), RedisBus(server.url)
            try:
                await a.start()
                await b.start()
                assert await a.head() == Mark("", 0)  # nothing published yet
                published = [await (a, b)[n % 2].publish(changed(n)) for n in range(6)]
                epoch = published[0].epoch
                assert epoch and [m.seq for m in published] == [1, 2, 3, 4, 5, 6] and {m.epoch for m in published} == {epoch}
                assert await b.head() == published[-1]
                events, marks = await _receive_until(b, 6)
                assert [e.key_hash for e in events] == [changed(n).key_hash for n in range(6)]
                assert marks[-1] == published[-1]

                server.stop()
                server.start()  # same port, empty: the counter is gone
                for _ in range(100):  # the subscriber notices the loss and resubscribes
                    try:
                        if (await b.receive()).resync:
                            break
                    except BusError:  # while Redis is away
                        await asyncio.sleep(0.05)
                after = await again(lambda: a.publish(changed(8)))
                assert after.epoch != epoch and after.seq == 1
                assert not published[-1].covers(after)  # a mark from before the loss covers nothing after it
                assert await again(b.head) == after
                events, marks = await _receive_until(b, 1)
                assert [e.key_hash for e in events] == [changed(8).key_hash] and marks[-1] == after
            finally:
                await a.close()
                await b.close()

        asyncio.run(run())
