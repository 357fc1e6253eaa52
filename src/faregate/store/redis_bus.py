"""Control bus and worker registry in Redis: every worker of every instance sharing one Redis.

Events go over pub/sub, numbered by one script that counts and publishes in one step (so the
numbers arrive in order); the counter and a random epoch live in one hash, so a Redis that lost
its memory starts a new epoch rather than reusing numbers a worker has seen already. Each
worker's registry entry is a key that expires unless its heartbeat renews it, so a dead worker
disappears by itself. Pub/sub delivers nothing that happened while a subscriber was
disconnected, so after a reconnect the delivery says ``resync``: the worker then reloads its
config from the file and drops its key cache, whatever it may have missed.
"""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from faregate.store.base import HEARTBEAT_EXPIRY, BusError, Delivery, Event, Mark, WorkerInfo, decode_event, encode_event

CHANNEL = "faregate:control"
SEQUENCE = "faregate:control:sequence"  # hash: epoch, seq
# KEYS[1] = SEQUENCE; ARGV = channel, event, a new epoch in case there is none. Message: "<epoch> <seq> <event>".
PUBLISH = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. seq .. ' ' .. ARGV[2])
return {epoch, seq}
"""
WORKER_PREFIX = "faregate:worker:"
CLAIM_PREFIX = "faregate:claim:"
POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 1.0


class RedisBus:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: aioredis.Redis | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._lost = False

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        return self._client

    async def start(self) -> None:
        try:
            await self._subscribe()
        except (RedisError, OSError) as exc:
            self._lost = True
            raise BusError(_describe(exc)) from exc

    async def _subscribe(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(CHANNEL)

    async def publish(self, event: Event) -> Mark:
        try:
            epoch, seq = await self._redis().eval(PUBLISH, 1, SEQUENCE, CHANNEL, encode_event(event), secrets.token_hex(8))
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc
        return Mark(_text(epoch), int(seq))

    async def head(self) -> Mark:
        try:
            epoch, seq = await self._redis().hmget(SEQUENCE, ["epoch", "seq"])
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc
        return Mark(_text(epoch) if epoch is not None else "", int(seq or 0))

    async def receive(self) -> Delivery:
        try:
            if self._lost or self._pubsub is None:
                await self._subscribe()
                resync, self._lost = self._lost, False
                return Delivery(resync=resync)
            delivery = Delivery()
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
            while message is not None:
                mark, event = _unwrap(message["data"])
                if event is not None:
                    delivery.events.append(event)
                delivery.mark = mark or delivery.mark
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            return delivery
        except (RedisError, OSError) as exc:
            self._lost = True
            await asyncio.sleep(POLL_SECONDS)
            raise BusError(_describe(exc)) from exc

    async def register(self, info: WorkerInfo) -> None:
        try:
            await self._redis().set(WORKER_PREFIX + info.id, info.encode(), px=int(HEARTBEAT_EXPIRY * 1000))
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc

    async def unregister(self, worker_id: str) -> None:
        try:
            await self._redis().delete(WORKER_PREFIX + worker_id)
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc

    async def workers(self) -> list[WorkerInfo]:
        try:
            client = self._redis()
            keys = [key async for key in client.scan_iter(match=WORKER_PREFIX + "*", count=500)]
            values = await client.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc
        return sorted((WorkerInfo.decode(v) for v in values if v is not None), key=lambda w: w.id)

    async def claim(self, key: str, ttl: float) -> bool:
        try:
            return bool(await self._redis().set(CLAIM_PREFIX + key, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except (RedisError, OSError) as exc:
            raise BusError(_describe(exc)) from exc

    async def forget_older_than(self, cutoff: float) -> None:
        return None  # entries expire by themselves

    async def close(self) -> None:
        try:
            if self._pubsub is not None:
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            if self._client is not None:
                await self._client.aclose()
        except (RedisError, OSError):
            pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _unwrap(data: bytes | str) -> tuple[Mark | None, Event | None]:
    """A published message: "<epoch> <seq> <event>" (a message without the numbering has no mark)."""
    raw = data.encode() if isinstance(data, str) else data
    epoch, _, rest = raw.partition(b" ")
    seq, _, body = rest.partition(b" ")
    if not seq.isdigit():
        return None, decode_event(raw)
    return Mark(epoch.decode(errors="replace"), int(seq)), decode_event(body)


def _describe(exc: BaseException) -> str:
    return f"redis unreachable ({exc.__class__.__name__})"
