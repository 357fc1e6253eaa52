"""Several instances sharing one Redis: the control bus keeps every worker on one generation.

- A key rotation followed by `POST /admin/reload` on one instance: once it answers, no request
  sent afterwards, to any worker of any instance, reaches the upstream with the old key; and
  `x-faregate-credential` always names the key the upstream really received.
- Redis going away: requests keep being served on the last generation, a changed key file is
  still picked up by every worker (file watch), /admin/workers and `faregate verify` say the bus
  is degraded; Redis coming back: every worker is listed again and `verify` passes.
- A reload asked of instance B waits for instance A's workers (and names one that cannot answer).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
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

from tests.fakes.openai_upstream import FakeOpenAI, Recorded
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli
from tests.support.redis import RedisServer

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
PROVIDER, CRED_ID, MODEL = "up", "main", "m"
OUTAGE_SECONDS = 4.5
FENCE_SECONDS = 2.5  # faregate.control.FENCE_SECONDS


# -- helpers -------------------------------------------------------------------------------------


def new_key() -> str:
    return "sk-rotate-" + secrets.token_hex(16)


def label(key: str | None) -> str:
    """What `x-faregate-credential` must say for a request the upstream received with `key`."""
    return f"{PROVIDER}/{CRED_ID}:{hashlib.sha256((key or '').encode()).hexdigest()[:8]}"


def write_key(directory: Path, key: str) -> None:
    """Rotate the key file atomically, as a secret manager would: write aside, then rename over."""
    staged = directory / "key.txt.new"
    staged.write_text(key + "\n")
    os.replace(staged, directory / "key.txt")


def redis_config(upstream: str, redis_url: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
state:
  redis: {redis_url}
providers:
  {PROVIDER}:
    type: openai
    base_url: {upstream}
    credentials: [{{id: {CRED_ID}, key_file: key.txt}}]
    timeout: 5
    connect_timeout: 2
models:
  {MODEL}:
    - {{provider: {PROVIDER}, model: gpt-4o-mini}}
routing:
  retries: 2
  cooldown: {{failures: 3, seconds: 30}}
"""


def instance_of(gw: GatewayProcess) -> str:
    """The instance name faregate gives itself: `<hostname>-<pid of faregate serve>`."""
    assert gw.proc is not None
    return f"{socket.gethostname()}-{gw.proc.pid}"


def admin(gw: GatewayProcess, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 15) -> httpx.Response:
    # a new connection each time, so successive calls can land on different workers
    return httpx.request(method, gw.url + path, headers=AUTH, json=body, timeout=timeout)


def live_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in body["workers"] if w["live"]]


def wait_for_workers(gws: list[GatewayProcess], count: int, generation: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """Poll /admin/workers on every instance until each lists `count` live workers, all on one
    generation (`generation` if given), with the bus ok everywhere. Returns the last answer."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while True:
        done = 0
        for gw in gws:
            try:
                r = admin(gw, "GET", "/admin/workers", timeout=5)
            except httpx.HTTPError as exc:
                last = {"error": repr(exc)}
                continue
            last = r.json()
            rows = live_rows(last)
            gens = {w["generation"] for w in rows}
            if (
                r.status_code == 200
                and last["bus"] == "ok"
                and len(rows) == count
                and len(gens) == 1
                and (generation is None or gens == {generation})
                and all(w["bus"] == "ok" for w in rows)
            ):
                done += 1
        if done == len(gws):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not {count} live workers on one generation with the bus ok within {timeout}s; last answer: {last}")
        time.sleep(0.1)


def by_user(fake: FakeOpenAI) -> dict[str, list[Recorded]]:
    out: dict[str, list[Recorded]] = {}
    for rec in fake.requests:
        if isinstance(rec.json, dict) and isinstance(rec.json.get("user"), str):
            out.setdefault(rec.json["user"], []).append(rec)
    return out


def access_workers(gws: list[GatewayProcess]) -> dict[str, int]:
    """request id -> pid of the worker that served it, from the access log lines."""
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


def _ms(latencies: list[float]) -> str:
    return f"{statistics.median(latencies) * 1000:.1f}/{max(latencies) * 1000:.1f} ms" if latencies else "n/a"


def verify(gw: GatewayProcess) -> tuple[int, str]:
    done = run_cli("verify", "-c", str(gw.config_path), "--url", gw.url, env={"FAREGATE_MASTER_KEY": MASTER_KEY}, timeout=30)
    return done.returncode, done.stdout + done.stderr


@dataclass(frozen=True)
class Sent:
    """One request as the client saw it."""

    user: str
    target: int  # index of the instance it was sent to
    sent: float  # wall clock just before the request left the client
    elapsed: float
    status: int
    credential: str | None = None
    generation: str | None = None
    request_id: str | None = None
    error: str | None = None


def send_one(client: httpx.Client, url: str, user: str, target: int = 0) -> Sent:
    """One chat request carrying a unique `user`; never raises (a transport error is status 0)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "user": user}
    sent = time.time()
    try:
        r = client.post(url + "/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return Sent(user, target, sent, time.time() - sent, 0, error=repr(exc))
    return Sent(
        user,
        target,
        sent,
        time.time() - sent,
        r.status_code,
        r.headers.get("x-faregate-credential"),
        r.headers.get("x-faregate-generation"),
        r.headers.get("x-faregate-request-id"),
        None if r.status_code == 200 else r.text[:300],
    )


class Load:
    """`threads` client threads sending chat requests round-robin over `urls`, until stopped. Each
    request carries a unique `user` so the fake's records can be matched to the client's. Clients
    are replaced every `reconnect_every` requests so connections spread over every worker."""

    def __init__(self, urls: list[str], threads: int = 8, reconnect_every: int = 8, max_per_thread: int = 20_000) -> None:
        self.urls = urls
        self.threads = threads
        self.reconnect_every = reconnect_every
        self.max_per_thread = max_per_thread
        self._stop = threading.Event()
        self._results: list[list[Sent]] = [[] for _ in range(threads)]
        self._workers = [threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> list[Sent]:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        return sorted((s for per in self._results for s in per), key=lambda s: s.sent)

    def count_since(self, t: float) -> int:
        return sum(1 for per in self._results for s in list(per) if s.sent > t)

    def _run(self, tid: int) -> None:
        out = self._results[tid]
        clients: list[httpx.Client] = []
        try:
            for n in range(self.max_per_thread):
                if self._stop.is_set():
                    return
                if n % self.reconnect_every == 0:
                    for c in clients:
                        c.close()
                    clients = [httpx.Client(headers=AUTH, timeout=15) for _ in self.urls]
                target = (tid + n) % len(self.urls)
                out.append(send_one(clients[target], self.urls[target], f"load-{tid}-{n}", target))
        finally:
            for c in clients:
                c.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


def start_pair(
    fake: FakeOpenAI, redis_server: RedisServer, gateways: Callable[..., GatewayProcess], tmp_path: Path, key: str
) -> tuple[GatewayProcess, GatewayProcess, dict[str, Any]]:
    """Two instances x two workers, one config text, one directory (so one key file), one Redis."""
    write_key(tmp_path, key)
    text = redis_config(fake.url, redis_server.url)
    a = gateways(text, workers=2)
    b = gateways(text, workers=2)
    body = wait_for_workers([a, b], 4)
    instances = {w["instance"] for w in body["workers"]}
    assert instances == {instance_of(a), instance_of(b)}, body
    assert all(w["credentials"] == [label(key)] for w in body["workers"]), body
    return a, b, body


# -- a. rotation + reload under load ---------------------------------------------------------------


def test_reload_after_rotation_reaches_every_worker_of_every_instance(
    fake: FakeOpenAI, redis_server: RedisServer, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    old_key, new_key_ = new_key(), new_key()
    a, b, before = start_pair(fake, redis_server, gateways, tmp_path, old_key)
    old_generation = before["generation"]
    pids = {w["pid"] for w in before["workers"]}

    with Load([a.url, b.url], threads=8) as load:
        time.sleep(2.5)
        t_rotate = time.time()
        write_key(tmp_path, new_key_)
        r = admin(a, "POST", "/admin/reload", {"timeout": 10})
        t_ack = time.time()
        time.sleep(2.0)
        deadline = time.monotonic() + 3.0  # on a busy machine, a little longer for enough requests after the ack
        while load.count_since(t_ack) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = load.stop()

    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack["ok"] is True, ack
    assert ack["generation"] != old_generation, ack
    assert len(ack["workers"]) == 4, ack
    assert {w["pid"] for w in ack["workers"]} == pids, ack
    assert all(w["on_new_generation"] and w["generation"] == ack["generation"] for w in ack["workers"]), ack
    assert {w["instance"] for w in ack["workers"]} == {instance_of(a), instance_of(b)}, ack

    seen = by_user(fake)
    time.sleep(0.5)  # the access log is flushed every 0.2 s
    served_by = access_workers([a, b])
    before_ack = [s for s in sent if s.sent <= t_ack]
    after_ack = [s for s in sent if s.sent > t_ack]
    window = [s for s in sent if t_rotate <= s.sent <= t_ack]
    summary = (
        f"{len(sent)} requests: {len(before_ack)} sent before the ack, {len(after_ack)} after; "
        f"{len(window)} in the {t_ack - t_rotate:.3f}s between rotation and ack "
        f"({sum(s.credential == label(old_key) for s in window)} old key, {sum(s.credential == label(new_key_) for s in window)} new)"
    )

    failed = [s for s in sent if s.status != 200]
    assert not failed, f"{len(failed)} failed requests; {summary}; first: {failed[:3]}"
    assert len(before_ack) >= 50 and len(after_ack) >= 50, summary
    assert sum(s.credential == label(old_key) for s in before_ack) >= 50, summary

    # every response's credential header names the key the upstream received for it
    unmatched = [s for s in sent if s.user not in seen]
    assert not unmatched, f"{len(unmatched)} answered requests never reached the fake; {summary}; first: {unmatched[:3]}"
    lying = [(s, [rec.api_key for rec in seen[s.user]]) for s in sent if s.credential != label(seen[s.user][-1].api_key)]
    assert not lying, f"{len(lying)}/{len(sent)} x-faregate-credential headers name another key than the upstream saw; first: {lying[:3]}"
    summary += f"; {sum(len(seen[s.user]) for s in sent)} upstream attempts"

    # nothing sent after the ack used the old key, on any worker of either instance
    stale = [s for s in after_ack if any(rec.api_key == old_key for rec in seen[s.user])]
    assert not stale, f"{len(stale)} stale requests after the ack; {summary}; first: {stale[:3]}"
    assert all(s.credential == label(new_key_) and s.generation == ack["generation"] for s in after_ack), summary
    after_pids = {served_by.get(s.request_id or "") for s in after_ack}
    assert after_pids == pids, f"requests after the ack were served by workers {after_pids}, expected all of {pids}; {summary}"
    print(f"\n[rotation under load] {summary}; ack took {t_ack - t_rotate:.3f}s; 0 stale")


# -- b. Redis goes away and comes back ----------------------------------------------------------


def test_redis_outage_degrades_to_local_watch_and_recovers(
    fake: FakeOpenAI, redis_server: RedisServer, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    old_key, new_key_ = new_key(), new_key()
    a, b, before = start_pair(fake, redis_server, gateways, tmp_path, old_key)
    old_generation = before["generation"]
    worker_ids = {w["id"] for w in before["workers"]}

    redis_server.stop()
    t_stop = time.monotonic()

    # requests keep being served on the last generation, for longer than the workers' fence (FENCE_SECONDS)
    outage: list[tuple[float, Sent]] = []
    with httpx.Client(headers=AUTH, timeout=15) as http:
        for n in range(400):
            since = time.monotonic() - t_stop
            if since > OUTAGE_SECONDS:
                break
            outage.append((since, send_one(http, (a, b)[n % 2].url, f"outage-{n}", n % 2)))
            time.sleep(0.02)
    early = sorted(s.elapsed for since, s in outage if since < FENCE_SECONDS)
    late = sorted(s.elapsed for since, s in outage if since >= FENCE_SECONDS + 0.5)
    outage_summary = (
        f"{len(outage)} requests in the {OUTAGE_SECONDS:g} s after Redis stopped: latency median/max "
        f"{_ms(early)} in the first {FENCE_SECONDS:g} s ({len(early)} requests), {_ms(late)} after {FENCE_SECONDS + 0.5:g} s ({len(late)} requests)"
    )
    failed = [s for _, s in outage if s.status != 200]
    assert not failed, f"{outage_summary}; {len(failed)} failures: {failed[:3]}"
    assert all(s.credential == label(old_key) and s.generation == old_generation for _, s in outage), outage_summary
    # the fence (catch up before serving after 2.5 s without a control-loop tick) is for paused workers: a dead bus
    # must not make every request wait on a reconnect attempt (it once added 200 ms to each, for the whole outage)
    assert late and statistics.median(late) < 0.1, outage_summary

    # every worker notices and says so
    deadline = time.monotonic() + 10
    degraded: dict[str, str] = {}
    while set(degraded) != {instance_of(a), instance_of(b)}:
        assert time.monotonic() < deadline, f"not every instance reported a degraded bus: {degraded}"
        for gw in (a, b):
            body = admin(gw, "GET", "/admin/workers", timeout=5).json()
            if body["bus"].startswith("degraded"):
                degraded[instance_of(gw)] = body["bus"]
        time.sleep(0.1)

    # a changed key file still reaches every worker, through each worker's own file watch
    write_key(tmp_path, new_key_)
    t_rotate = time.monotonic()
    picked_up: dict[str, float] = {}
    deadline = t_rotate + 8
    polls = 0
    while set(picked_up) != worker_ids:
        assert time.monotonic() < deadline, f"workers still on the old key 8 s after the rotation: {worker_ids - set(picked_up)}"
        for gw in (a, b):
            body = admin(gw, "GET", "/admin/workers", timeout=5).json()
            polls += 1
            assert body["bus"].startswith("degraded"), body
            own = [w for w in body["workers"] if w["id"] == body["this_worker"]]
            if own and own[0]["credentials"] == [label(new_key_)] and body["this_worker"] not in picked_up:
                picked_up[body["this_worker"]] = time.monotonic() - t_rotate
        time.sleep(0.02)
    with httpx.Client(headers=AUTH, timeout=15) as http:
        fresh = [send_one(http, (a, b)[n % 2].url, f"rotated-{n}", n % 2) for n in range(20)]
    assert all(s.status == 200 and s.credential == label(new_key_) for s in fresh), fresh
    new_generation = fresh[0].generation
    assert new_generation != old_generation

    rc, out = verify(a)
    assert rc == 1, out
    assert "degraded" in out, out
    assert " match " in out and " MISMATCH " not in out, out  # the workers do match: only the bus makes verify fail

    # Redis comes back (empty) on the same port: every worker re-registers, the bus is ok again
    redis_server.start()
    t_back = time.monotonic()
    after = wait_for_workers([a, b], 4, generation=new_generation, timeout=5)
    recovered = time.monotonic() - t_back
    assert {w["id"] for w in after["workers"]} == worker_ids, after
    assert all(w["credentials"] == [label(new_key_)] for w in after["workers"]), after
    for gw in (a, b):
        rc, out = verify(gw)
        assert rc == 0, out
    print(
        f"\n[redis outage] {outage_summary}; degraded bus reported by both instances; "
        f"file-watch pickup per worker (s, as observed by polling): {sorted(round(v, 3) for v in picked_up.values())} "
        f"over {polls} polls; all 4 workers listed with bus ok {recovered:.3f}s after Redis restarted"
    )


# -- c. a reload on B waits for A's workers ------------------------------------------------------


def test_reload_on_one_instance_waits_for_the_other_instances_workers(
    fake: FakeOpenAI, redis_server: RedisServer, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    key1, key2, key3 = new_key(), new_key(), new_key()
    a, b, before = start_pair(fake, redis_server, gateways, tmp_path, key1)
    a_workers = {w["id"] for w in before["workers"] if w["instance"] == instance_of(a)}
    assert len(a_workers) == 2, before

    write_key(tmp_path, key2)
    t0 = time.monotonic()
    r = admin(b, "POST", "/admin/reload", {"timeout": 10})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack["ok"] is True and not ack["laggards"], ack
    rows = {w["id"]: w for w in ack["workers"]}
    assert len(rows) == 4, ack
    for wid in a_workers:
        assert rows[wid]["on_new_generation"] is True and rows[wid]["live"] is True and rows[wid]["generation"] == ack["generation"], ack
        assert rows[wid]["credentials"] == [label(key2)], ack
    # A serves the new key at once, on fresh connections (so on both of its workers)
    for n in range(20):
        with httpx.Client(headers=AUTH, timeout=15) as http:
            got = send_one(http, a.url, f"c-after-{n}")
        assert got.status == 200, got
        assert got.credential == label(key2) and got.generation == ack["generation"], got
    seen = by_user(fake)
    assert all(seen[f"c-after-{n}"][-1].api_key == key2 for n in range(20))

    # the wait is real: with one of A's workers paused (alive, not answering), B's reload reports it
    paused = next(iter(sorted(a_workers)))
    paused_pid = rows[paused]["pid"]
    os.kill(paused_pid, signal.SIGSTOP)
    try:
        write_key(tmp_path, key3)
        t0 = time.monotonic()
        r = admin(b, "POST", "/admin/reload", {"timeout": 1})
        waited = time.monotonic() - t0
    finally:
        os.kill(paused_pid, signal.SIGCONT)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["ok"] is False and body["error"]["code"] == "reload_incomplete", body
    assert len(body["laggards"]) == 1 and body["laggards"][0].startswith(paused), body
    assert waited >= 1.0, waited
    lag = {w["id"]: w["on_new_generation"] for w in body["workers"]}
    assert lag[paused] is False and sum(lag.values()) == 3, body
    # resumed, it catches up and a new reload on B is acknowledged by all four
    r = admin(b, "POST", "/admin/reload", {"timeout": 10})
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["ok"] is True and len(final["workers"]) == 4, final
    assert all(w["on_new_generation"] and w["credentials"] == [label(key3)] for w in final["workers"]), final
    print(
        f"\n[reload on B] acknowledged by A's workers after {took:.3f}s; with one of A's workers paused, 503 naming it after {waited:.3f}s"
    )
