"""The control bus and worker registry protocol, and the typed events that travel on it.

A bus carries events to every worker of every instance; the registry holds one row per live
worker (what generation it serves, which credential fingerprints, when it last beat, and up to
which event it has applied the bus: its ``Mark``). Two implementations: ``sqlite_bus`` (one host,
no Redis) and ``redis_bus`` (many instances).

The bus numbers its events in the order every worker receives them, so "this worker has applied
event n" means it has applied every event up to n: a key change waits for every live worker's
mark to cover the change's own (as a reload waits for every worker's generation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

import orjson

HEARTBEAT_SECONDS = 1.0
HEARTBEAT_EXPIRY = 3.5  # a worker silent for longer is not live: reload does not wait for it


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str  # `<instance>/<pid>`
    instance: str
    pid: int
    generation: str
    credentials: tuple[str, ...]  # `<provider>/<id>:<fingerprint>` of every credential it holds
    started: float
    heartbeat: float
    bus: str = "ok"  # "ok", or why the worker cannot reach the bus
    error: str = ""  # why its last reload failed (the generation above is still the one it serves)
    usage: dict[str, list[object]] = field(default_factory=dict)  # credential label -> [state, reason, requests, last used]
    bus_epoch: str = ""  # the bus position up to which this worker has applied every event (see Mark)
    bus_seq: int = 0
    # deployment label -> [state, reason, until, successes, errors, last error, its time, recent latencies in ms,
    # closest names]: what this worker saw of each deployment (health.Report), only those not pristine
    deployments: dict[str, list[object]] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @staticmethod
    def decode(raw: bytes | str) -> WorkerInfo:
        data = orjson.loads(raw)
        data["credentials"] = tuple(data["credentials"])
        known = {f for f in WorkerInfo.__dataclass_fields__}
        return WorkerInfo(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Mark:
    """A position on the bus: event number ``seq`` of the numbering ``epoch`` (a Redis that lost its
    memory starts a new numbering; positions of different epochs are not comparable)."""

    epoch: str
    seq: int

    def covers(self, other: Mark) -> bool:
        return self.epoch == other.epoch and self.seq >= other.seq


@dataclass(frozen=True, slots=True)
class ReloadRequested:
    """Every worker: load the config file again now."""

    origin: str
    kind: Literal["reload"] = "reload"


@dataclass(frozen=True, slots=True)
class CachesPurged:
    """Every worker: load the config again and drop every per-worker cache (cooldowns, key pools)."""

    origin: str
    kind: Literal["purge"] = "purge"


@dataclass(frozen=True, slots=True)
class VirtualKeyChanged:
    """A virtual key was revoked, rotated, updated or deleted: drop it from every key cache."""

    key_hash: str
    action: Literal["revoked", "rotated", "updated", "deleted"]
    origin: str = ""
    kind: Literal["virtual_key"] = "virtual_key"


@dataclass(frozen=True, slots=True)
class TeamChanged:
    """A team's budget, limits or enabled flag changed, or it was deleted: drop its keys from every key cache."""

    team_id: str
    action: Literal["updated", "deleted"]
    origin: str = ""
    kind: Literal["team"] = "team"


@dataclass(frozen=True, slots=True)
class DeploymentProbed:
    """A probe of a deployment settled whether its upstream model exists: every worker marks it
    configured (``found``: it takes traffic again) or misconfigured (why, and the closest names)."""

    label: str
    found: bool
    reason: str = ""
    closest: tuple[str, ...] = ()
    origin: str = ""
    kind: Literal["probe"] = "probe"

    def __post_init__(self) -> None:
        object.__setattr__(self, "closest", tuple(self.closest))  # a list, as JSON carries it


Event = ReloadRequested | CachesPurged | VirtualKeyChanged | TeamChanged | DeploymentProbed
_KINDS: dict[str, type[Event]] = {
    "reload": ReloadRequested,
    "purge": CachesPurged,
    "virtual_key": VirtualKeyChanged,
    "team": TeamChanged,
    "probe": DeploymentProbed,
}


def encode_event(event: Event) -> bytes:
    return orjson.dumps(asdict(event))


def decode_event(raw: bytes | str) -> Event | None:
    """None for anything that is not a known event (a newer version's event, garbage)."""
    try:
        data = orjson.loads(raw)
        return _KINDS[data["kind"]](**data)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


class BusError(Exception):
    """The bus or registry cannot be reached; the message says why (never a secret)."""


@dataclass
class Delivery:
    events: list[Event] = field(default_factory=list)
    resync: bool = False  # the bus was unreachable and is back: events may have been missed
    mark: Mark | None = None  # the position of the last event in ``events`` (None: no numbered event)


class ControlBus(Protocol):
    async def start(self) -> None: ...
    async def publish(self, event: Event) -> Mark: ...
    async def receive(self) -> Delivery: ...
    async def head(self) -> Mark: ...  # the position of the last event published so far
    async def register(self, info: WorkerInfo) -> None: ...
    async def unregister(self, worker_id: str) -> None: ...
    async def workers(self) -> list[WorkerInfo]: ...
    async def claim(self, key: str, ttl: float) -> bool: ...  # True for the first caller in ttl seconds, across every worker
    async def close(self) -> None: ...
