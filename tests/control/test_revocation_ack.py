"""A change that can reduce a virtual key's access answers only once every live worker of every
instance has dropped the key (as `/admin/reload` waits for every worker), or names the laggards.

Clients hammer the key from threads on every worker while the change is made. Each request
records whether it was *sent after the admin call returned* (read from a threading.Event set
right after the call returned, before the request starts: an ordering, not a timing). Every such
request must be refused, on every worker (workers are told apart by the access log's `worker`
for the request's `x-faregate-request-id`); at least ``PER_WORKER`` of them per worker.

- 1 instance x 2 workers on the default SQLite bus: revoke, disable, rotate without grace,
  delete, a budget set on a key, a team disabled.
- 2 instances x 2 workers on Redis + PostgreSQL: a change made on one instance, refused on both.
- The same with instance B cut off from Redis (a partition): once A no longer counts B's workers
  as live, A's change is confirmed by A's workers alone, and B's fenced workers, unable to hear
  of it, read the key from the database instead of their cache: refused there too.
- A paused worker (SIGSTOP): the answer is 503 `change_unconfirmed` naming it; once it is
  resumed, it refuses the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.redis import RedisServer

Start = Callable[..., GatewayProcess]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
PER_WORKER = 20
COVER_SECONDS = 90.0  # a generous bound on hammering until every worker has its post-answer samples


def config(state: str = "") -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}{state}
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  m:
    - {{provider: local, model: mock-small}}
prices:
  mock-small: {{input: 0.001, output: 0.001}}
"""


@dataclass(frozen=True)
class Shot:
    after: bool  # sent after the admin call had returned
    target: int
    status: int
    request_id: str | None


class Hammer:
    """Threads sending chat requests with one secret round-robin over `urls`, on new connections
    every few requests (so every worker gets some), until stopped."""

    def __init__(self, urls: list[str], secret: str, threads: int = 6, reconnect_every: int = 3) -> None:
        self.urls, self.secret, self.reconnect_every = urls, secret, reconnect_every
        self.answered = threading.Event()  # set right after the admin call returned
        self._stop = threading.Event()
        self._shots: list[list[Shot]] = [[] for _ in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> list[Shot]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.shots()

    def shots(self) -> list[Shot]:
        return [s for per in self._shots for s in list(per)]

    def count(self, after: bool) -> int:
        return sum(1 for s in self.shots() if s.after == after)

    def _run(self, tid: int) -> None:
        headers = {"authorization": f"Bearer {self.secret}"}
        client: httpx.Client | None = None
        n = 0
        try:
            while not self._stop.is_set():
                if n % self.reconnect_every == 0:
                    if client is not None:
                        client.close()
                    client = httpx.Client(timeout=30)
                target = (tid + n) % len(self.urls)
                n += 1
                after = self.answered.is_set()  # read before the request leaves: it happens after the answer
                try:
                    r = client.post(self.urls[target] + "/v1/chat/completions", headers=headers, json=BODY)  # type: ignore[union-attr]
                except httpx.HTTPError:
                    self._shots[tid].append(Shot(after, target, 0, None))
                    continue
                self._shots[tid].append(Shot(after, target, r.status_code, r.headers.get("x-faregate-request-id")))
        finally:
            if client is not None:
                client.close()


def served_by(gws: list[GatewayProcess]) -> dict[str, int]:
    """request id -> pid of the worker that answered it, from the access log lines."""
    out: dict[str, int] = {}
    for gw in gws:
        for line in gw.logs().splitlines():
            if '"faregate.access"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            out[entry["request_id"]] = entry["worker"]
    return out


def logged(gws: list[GatewayProcess], shots: list[Shot]) -> dict[str, int]:
    """served_by, once every answered request is in the access logs (flushed every 0.2 s)."""
    deadline = time.monotonic() + 15
    while True:
        workers = served_by(gws)
        if all(s.request_id in workers for s in shots if s.request_id):
            return workers
        assert time.monotonic() < deadline, "request ids missing from the access logs"
        time.sleep(0.1)


def admin(gw: GatewayProcess, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, gw.url + path, headers=AUTH, json=body, timeout=60)


def live_pids(gws: list[GatewayProcess]) -> set[int]:
    return {w["pid"] for w in admin(gws[0], "GET", "/admin/workers").json()["workers"] if w["live"]}


@dataclass
class Outcome:
    name: str
    answer: httpx.Response
    ack_seconds: float
    before: int
    after: int
    violations: list[tuple[Shot, int | None]]
    per_worker: dict[int, int]


def change_under_load(
    gws: list[GatewayProcess], secret: str, change: Callable[[], httpx.Response], refused: int, name: str, pids: set[int]
) -> Outcome:
    """Hammer `secret` on every instance, make the change, keep hammering until every worker
    answered PER_WORKER requests sent after the change's answer; every one of those must be `refused`."""
    urls = [gw.url for gw in gws]
    with Hammer(urls, secret) as hammer:
        deadline = time.monotonic() + COVER_SECONDS
        while hammer.count(after=False) < 40:  # every worker has the key cached (the warm-up)
            assert time.monotonic() < deadline, f"{name}: no load before the change"
            time.sleep(0.05)
        t0 = time.monotonic()
        answer = change()
        ack = time.monotonic() - t0
        hammer.answered.set()
        while True:
            time.sleep(0.3)
            shots = hammer.shots()
            workers = served_by(gws)
            per_worker = {pid: 0 for pid in pids}
            for s in shots:
                if s.after and s.request_id in workers:
                    per_worker[workers[s.request_id]] = per_worker.get(workers[s.request_id], 0) + 1
            if all(n >= PER_WORKER for n in per_worker.values()):
                break
            assert time.monotonic() < deadline, f"{name}: not {PER_WORKER} requests per worker after the answer: {per_worker}"
        shots = hammer.stop()
    workers = logged(gws, shots)
    before = [s for s in shots if not s.after]
    after = [s for s in shots if s.after]
    violations = [(s, workers.get(s.request_id or "")) for s in after if s.status != refused]
    bad_before = [s for s in before if s.status not in (200, refused)]
    assert not bad_before, f"{name}: unexpected answers before the change returned: {bad_before[:5]}"
    return Outcome(name, answer, ack, len(before), len(after), violations, per_worker)


def report(outcomes: list[Outcome]) -> None:
    acks = sorted(o.ack_seconds * 1000 for o in outcomes)
    for o in outcomes:
        print(
            f"\n[{o.name}] answered {o.answer.status_code} after {o.ack_seconds * 1000:.0f} ms; {o.before} requests before, "
            f"{o.after} after the answer (per worker {o.per_worker}); {len(o.violations)} served after the answer"
        )
    print(f"\n[ack latency] n={len(acks)} median {statistics.median(acks):.0f} ms, max {max(acks):.0f} ms: {[round(a) for a in acks]}")


def new_key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    r = admin(gw, "POST", "/admin/keys", {"name": "hammered", **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def check(outcomes: list[Outcome]) -> None:
    report(outcomes)
    for o in outcomes:
        assert o.answer.status_code == 200, f"{o.name}: {o.answer.text}"
        assert o.answer.json()["confirmed"] is True and o.answer.json()["laggards"] == [], o.answer.text
    bad = {o.name: o.violations[:5] for o in outcomes if o.violations}
    assert not bad, f"requests sent after the answer and not refused: {bad}"


# -- 1 instance x 2 workers, SQLite bus --------------------------------------------------------------


def test_every_access_reducing_change_is_acknowledged_by_both_workers(gateways: Start) -> None:
    gw = gateways(config(), workers=2)
    pids = live_pids([gw])
    assert len(pids) == 2
    outcomes = []

    key = new_key(gw)
    outcomes.append(change_under_load([gw], key["key"], lambda: admin(gw, "POST", f"/admin/keys/{key['id']}/revoke"), 401, "revoke", pids))
    key = new_key(gw)
    disable = lambda: admin(gw, "PATCH", f"/admin/keys/{key['id']}", {"enabled": False})  # noqa: E731
    outcomes.append(change_under_load([gw], key["key"], disable, 401, "disable", pids))
    key = new_key(gw)
    outcomes.append(change_under_load([gw], key["key"], lambda: admin(gw, "POST", f"/admin/keys/{key['id']}/rotate"), 401, "rotate", pids))
    key = new_key(gw)
    outcomes.append(change_under_load([gw], key["key"], lambda: admin(gw, "DELETE", f"/admin/keys/{key['id']}"), 401, "delete", pids))
    key = new_key(gw)
    budget = lambda: admin(gw, "PATCH", f"/admin/keys/{key['id']}", {"budget_usd": 0})  # noqa: E731
    outcomes.append(change_under_load([gw], key["key"], budget, 429, "budget set to 0", pids))
    team = admin(gw, "POST", "/admin/teams", {"name": "hammered-team"}).json()
    key = new_key(gw, team_id=team["id"])
    team_off = lambda: admin(gw, "PATCH", f"/admin/teams/{team['id']}", {"enabled": False})  # noqa: E731
    outcomes.append(change_under_load([gw], key["key"], team_off, 401, "team disabled", pids))
    check(outcomes)


# -- 2 instances x 2 workers, Redis bus, PostgreSQL state --------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


def test_a_change_on_one_instance_is_acknowledged_by_every_worker_of_both(
    postgres: PostgresServer, redis_server: RedisServer, gateways: Start
) -> None:
    state = f"\nstate:\n  database: {postgres.url_of(postgres.new_database('revocation_ack'))}\n  redis: {redis_server.url}"
    a, b = gateways(config(state), workers=2), gateways(config(state), workers=2)
    deadline = time.monotonic() + 20
    while len(pids := live_pids([a, b])) < 4:
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)
    outcomes = []
    for n in range(3):
        key = new_key(a)
        revoke = lambda gw=(a, b)[n % 2], key_id=key["id"]: admin(gw, "POST", f"/admin/keys/{key_id}/revoke")  # noqa: E731
        outcomes.append(change_under_load([a, b], key["key"], revoke, 401, f"revoke #{n + 1} on {'AB'[n % 2]}", pids))
    key = new_key(b)
    disable = lambda: admin(b, "PATCH", f"/admin/keys/{key['id']}", {"enabled": False})  # noqa: E731
    outcomes.append(change_under_load([a, b], key["key"], disable, 401, "disable on B", pids))
    team = admin(a, "POST", "/admin/teams", {"name": "hammered-team"}).json()
    key = new_key(a, team_id=team["id"])
    team_off = lambda: admin(a, "PATCH", f"/admin/teams/{team['id']}", {"enabled": False})  # noqa: E731
    outcomes.append(change_under_load([a, b], key["key"], team_off, 401, "team disabled on A", pids))
    check(outcomes)


class Cuttable:
    """A TCP forwarder on loopback to `target_port` that can be cut (a partition): every connection
    through it is closed and new ones are refused."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    continue
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            self.listener.close()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_a_change_confirmed_while_an_instance_is_cut_off_from_redis_is_refused_there_too(
    postgres: PostgresServer, redis_server: RedisServer, gateways: Start
) -> None:
    forwarder = Cuttable(redis_server.port)
    database = postgres.url_of(postgres.new_database("partition_ack"))
    a = gateways(config(f"\nstate:\n  database: {database}\n  redis: {redis_server.url}"), workers=2)
    b = gateways(config(f"\nstate:\n  database: {database}\n  redis: redis://127.0.0.1:{forwarder.port}/0"), workers=2)
    deadline = time.monotonic() + 20
    while len(pids := live_pids([a, b])) < 4:
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)
    body = admin(b, "GET", "/admin/workers").json()
    b_instance = next(w["instance"] for w in body["workers"] if w["id"] == body["this_worker"])
    b_pids = {w["pid"] for w in body["workers"] if w["live"] and w["instance"] == b_instance}
    assert len(b_pids) == 2 and b_pids < pids, body
    key = new_key(a)
    deadline = time.monotonic() + 30
    with Hammer([b.url], key["key"]) as hammer:  # both of B's workers cache the key as valid
        while not b_pids <= {served_by([b]).get(s.request_id or "") for s in hammer.shots() if s.status == 200}:
            assert time.monotonic() < deadline, "the key was not used on both of B's workers"
            time.sleep(0.2)
    forwarder.cut()
    deadline = time.monotonic() + 30
    while live_pids([a]) & b_pids:  # A stops counting B's workers once their heartbeats expire
        assert time.monotonic() < deadline, "B's workers are still live for A after the cut"
        time.sleep(0.1)
    outcome = change_under_load(
        [a, b], key["key"], lambda: admin(a, "POST", f"/admin/keys/{key['id']}/revoke"), 401, "revoke, B cut off", pids
    )
    report([outcome])
    assert outcome.answer.status_code == 200 and outcome.answer.json()["confirmed"] is True, outcome.answer.text
    assert not outcome.violations, f"requests sent after the answer and not refused: {outcome.violations[:5]}"


# -- a paused worker ---------------------------------------------------------------------------------


def test_a_paused_worker_is_named_and_refuses_the_key_once_resumed(gateways: Start) -> None:
    gw = gateways(config(), workers=2)
    rows = [w for w in admin(gw, "GET", "/admin/workers").json()["workers"] if w["live"]]
    assert len(rows) == 2
    key = new_key(gw)
    secret = key["key"]
    deadline = time.monotonic() + 30
    with Hammer([gw.url], secret) as hammer:  # both workers have the key cached as valid
        while len({served_by([gw]).get(s.request_id or "") for s in hammer.shots() if s.status == 200} - {None}) < 2:
            assert time.monotonic() < deadline, "the key was not used on both workers"
            time.sleep(0.1)
    paused = rows[0]
    os.kill(paused["pid"], signal.SIGSTOP)
    try:
        r = admin(gw, "POST", f"/admin/keys/{key['id']}/revoke?timeout=1")  # a paused process accepts nothing: the other answers
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"]["code"] == "change_unconfirmed" and body["confirmed"] is False, body
        assert body["enabled"] is False and body["revoked_at"] is not None, body  # the change itself is stored
        assert [lag for lag in body["laggards"] if lag.startswith(paused["id"])], body  # (the other may lag too, on a loaded machine)
        assert paused["id"] in body["error"]["message"], body
        # it stays paused until its heartbeat has expired: the others no longer wait for it
        deadline = time.monotonic() + 30
        while any(w["id"] == paused["id"] and w["live"] for w in admin(gw, "GET", "/admin/workers").json()["workers"]):
            assert time.monotonic() < deadline, "the paused worker is still listed as live"
            time.sleep(0.1)
        again = admin(gw, "POST", f"/admin/keys/{key['id']}/revoke?timeout=10")
        assert again.status_code == 200 and again.json()["confirmed"] is True, again.text
    finally:
        os.kill(paused["pid"], signal.SIGCONT)
    # resumed: every request it answers is refused, from the very first one
    with Hammer([gw.url], secret) as hammer:
        hammer.answered.set()
        deadline = time.monotonic() + COVER_SECONDS
        while sum(1 for s in hammer.shots() if served_by([gw]).get(s.request_id or "") == paused["pid"]) < PER_WORKER:
            assert time.monotonic() < deadline, "the resumed worker answered too few requests"
            time.sleep(0.3)
        shots = hammer.stop()
    workers = logged([gw], shots)
    on_paused = [s for s in shots if workers.get(s.request_id or "") == paused["pid"]]
    assert on_paused and all(s.status == 401 for s in on_paused), [s for s in on_paused if s.status != 401][:5]
    assert all(s.status == 401 for s in shots), [s for s in shots if s.status != 401][:5]
