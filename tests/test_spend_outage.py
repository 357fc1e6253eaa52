"""PostgreSQL stops during traffic: cached virtual keys keep working, spend rows go to the local
outbox; PostgreSQL comes back: every request id the clients received is in the spend log exactly
once, and the fake upstream saw exactly as many requests as succeeded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
THREADS = 4
OUTAGE_SECONDS = 4.0  # well inside the key cache's 10 s TTL, counted from the first warm-up request
Start = Callable[..., GatewayProcess]


@dataclass
class Traffic:
    """What the clients saw: (time, status, request id) per request."""

    key: str
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[float, int, str]] = field(default_factory=list)

    def one(self, http: httpx.Client) -> None:
        r = http.post("/v1/chat/completions", headers={"authorization": f"Bearer {self.key}"}, json=BODY)
        with self.lock:
            self.seen.append((time.monotonic(), r.status_code, r.headers.get("x-faregate-request-id", "")))

    def loop(self) -> None:
        # no keep-alive: every request is a new connection, so both workers get traffic
        with httpx.Client(base_url=self.url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while not self.stop.is_set():
                self.one(http)
                time.sleep(0.005)


def workers_serving(gw: GatewayProcess, key_id: str) -> set[int]:
    pids = set()
    for line in gw.logs().splitlines():
        if '"faregate.access"' in line:
            entry = json.loads(line)
            if entry.get("key") == key_id:
                pids.add(entry["worker"])
    return pids


def spend_ids(pg: PostgresServer, database: str) -> list[str]:
    return pg.psql("SELECT request_id FROM spend_log", database=database).split()


def test_postgresql_outage_loses_no_spend_row(postgres: PostgresServer, gateways: Start, fake: FakeOpenAI, tmp_path: Path) -> None:
    database = postgres.new_database("spend")  # the session's server is shared: a database of our own
    config = f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
state:
  database: {postgres.url_of(database)}
providers:
  up:
    type: openai
    base_url: {fake.url}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 5
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
prices:
  gpt-4o-mini: {{input: 0.15, output: 0.6}}
"""
    gw = gateways(config, workers=2, env=UPSTREAM_ENV)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as admin:
        created = admin.post("/admin/keys", json={"name": "outage"}).json()  # no budget: no database per request
    traffic = Traffic(created["key"], gw.url)

    # warm up: both workers cache the key (from now on each entry lives 10 s)
    warmed = time.monotonic()
    with httpx.Client(base_url=gw.url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        while len(workers_serving(gw, created["id"])) < 2:
            assert time.monotonic() - warmed < 2.5, "the key did not reach both workers quickly enough for the cache TTL"
            for _ in range(6):
                traffic.one(http)
            time.sleep(0.25)  # access lines are flushed every 0.2 s

    threads = [threading.Thread(target=traffic.loop, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        postgres.stop()
        down = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        metrics = httpx.get(gw.url + "/metrics").text
    finally:
        postgres.start()
    up = time.monotonic()
    try:
        time.sleep(1.5)  # traffic goes on while the outboxes are replayed
    finally:
        traffic.stop.set()
        for t in threads:
            t.join(30)
    assert up - warmed < 9.5, "the outage outlived the key cache: the test would measure the cache, not the outbox"

    seen = list(traffic.seen)
    failed = [(round(at - down, 2), status) for at, status, _ in seen if status != 200]
    assert not failed, f"requests with a cached key failed (seconds after the stop, status): {failed[:20]}"
    during = [rid for at, _, rid in seen if down <= at <= up]
    assert len(during) > 50, f"only {len(during)} requests during the outage"
    assert 'faregate_spend_rows_total{sink="outbox"}' in metrics  # the outage really went through the outboxes
    sent = [rid for _, _, rid in seen]
    assert len(set(sent)) == len(sent)

    deadline = time.monotonic() + 30
    while len(ids := spend_ids(postgres, database)) < len(sent):
        assert time.monotonic() < deadline, f"{len(sent) - len(ids)} of {len(sent)} rows still missing after 30 s"
        time.sleep(0.25)
    counts = postgres.psql("SELECT count(*), count(DISTINCT request_id) FROM spend_log", database=database).split("|")
    lost, extra = set(sent) - set(ids), set(ids) - set(sent)
    assert not lost and not extra and len(ids) == len(sent) and [int(c) for c in counts] == [len(sent), len(sent)]
    assert fake.count() == len(sent)  # every success went upstream once; every row is one of them

    deadline = time.monotonic() + 10
    while True:  # both workers' snapshots: the outbox rows written, replayed, none left
        metrics = httpx.get(gw.url + "/metrics").text
        series = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("faregate_spend")
        }
        via_outbox = series.get('faregate_spend_rows_total{sink="outbox"}', 0.0)
        if series.get("faregate_spend_outbox_rows") == 0 and series.get('faregate_spend_rows_total{sink="replayed"}') == via_outbox:
            break
        assert time.monotonic() < deadline, series
        time.sleep(0.25)
    leftovers = [p for p in (tmp_path / ".faregate" / "outbox").glob("outbox-*.jsonl") if p.stat().st_size]
    assert leftovers == []
    print(
        f"MEASURED spend outage: {len(sent)} requests sent ({len(during)} during {up - down:.1f} s without PostgreSQL), "
        f"{len(ids)} rows written, {via_outbox:.0f} via the outbox, lost 0, duplicates 0"
    )
