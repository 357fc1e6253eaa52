"""The key store on SQLite and on a real PostgreSQL: migrations, lookups by current and previous
hash, updates, paging. And a gateway whose state lives in PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from faregate.credentials.virtual import hash_key
from faregate.store import keys as db
from faregate.store.db import make_engine, upgrade
from tests.support.postgres import PostgresServer
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli


def _row(secret: str, **extra: object) -> dict[str, object]:
    now = time.time()
    row: dict[str, object] = {"id": "key_" + uuid.uuid4().hex[:12], "key_hash": hash_key(secret), "prefix": secret[:10], "name": "t"}
    row.update(models=[], metadata={}, enabled=True, created_at=now, updated_at=now)
    row.update(extra)
    return row


async def _exercise(database: str) -> None:
    engine = make_engine(database)
    try:
        await upgrade(engine)
        await upgrade(engine)  # idempotent
        a, b = f"sk-fg-a-{uuid.uuid4().hex}", f"sk-fg-b-{uuid.uuid4().hex}"
        row = _row(a, models=["gpt-*"], metadata={"k": "v"})
        await db.insert_key(engine, row)
        with pytest.raises(db.Conflict):
            await db.insert_key(engine, _row(a))  # the same secret twice
        found = await db.by_hash(engine, hash_key(a), time.time())
        assert found is not None and found["models"] == ["gpt-*"] and found["metadata"] == {"k": "v"}
        assert await db.by_hash(engine, hash_key(b), time.time()) is None
        # rotation with grace: the previous hash is found until its grace ends
        await db.update_key(
            engine, str(row["id"]), {"key_hash": hash_key(b), "previous_hash": hash_key(a), "previous_valid_until": time.time() + 60}
        )
        assert (await db.by_hash(engine, hash_key(a), time.time()))["id"] == row["id"]  # type: ignore[index]
        assert await db.by_hash(engine, hash_key(a), time.time() + 120) is None
        # a hostile string is data, never SQL
        assert await db.get_key(engine, "x' OR '1'='1") is None
        rows, total = await db.list_keys(engine, 10, 0)
        assert total >= 1 and any(r["id"] == row["id"] for r in rows)
        assert (await db.delete_key(engine, str(row["id"]))) is not None
        assert await db.get_key(engine, str(row["id"])) is None
    finally:
        await engine.dispose()


def test_key_store_on_sqlite(tmp_path: Path) -> None:
    asyncio.run(_exercise(f"sqlite:///{tmp_path}/state.db"))


def test_key_store_on_postgresql(postgres: PostgresServer) -> None:
    asyncio.run(_exercise(postgres.url))


def test_gateway_with_postgresql_state(postgres: PostgresServer, gateways: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    config = f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
state:
  database: {postgres.url}
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  m:
    - {{provider: local, model: mock-small}}
"""
    path = tmp_path / "pg.yaml"
    path.write_text(config)
    upgraded = run_cli("db", "upgrade", "-c", str(path), env={"FAREGATE_MASTER_KEY": MASTER_KEY})
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout and "faregate@" not in upgraded.stdout.split(":")[0]
    gw = gateways(config, workers=2)
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=20) as http:
        secret = http.post("/admin/keys", json={"name": "pg"}).json()["key"]
        ok = httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert ok.status_code == 200
    assert postgres.psql("SELECT count(*) FROM virtual_keys WHERE name = 'pg'").split() == ["1"]
    assert secret not in postgres.psql("SELECT key_hash || prefix FROM virtual_keys")


def test_database_outage_answers_503_never_401(gateways: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    """PostgreSQL down: a cached key keeps working, an uncached one gets 503 (a dependency failed,
    the key may be fine), and everything recovers when the database is back."""
    with PostgresServer() as pg:
        config = f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
state:
  database: {pg.url}
providers:
  local: {{type: mock, chunk_delay: 0}}
models:
  m:
    - {{provider: local, model: mock-small}}
"""
        gw = gateways(config)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=gw.url, timeout=20) as http:
            admin = {"authorization": f"Bearer {MASTER_KEY}"}
            cached = http.post("/admin/keys", headers=admin, json={"name": "cached"}).json()["key"]
            uncached = http.post("/admin/keys", headers=admin, json={"name": "uncached"}).json()["key"]
            assert http.post("/v1/chat/completions", headers={"authorization": f"Bearer {cached}"}, json=body).status_code == 200
            pg.stop()
            try:
                assert http.post("/v1/chat/completions", headers={"authorization": f"Bearer {cached}"}, json=body).status_code == 200
                down = http.post("/v1/chat/completions", headers={"authorization": f"Bearer {uncached}"}, json=body)
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "key_store_unavailable"
                assert http.post("/v1/chat/completions", headers=admin, json=body).status_code == 200  # the master key needs no database
            finally:
                pg.start()
            deadline = time.monotonic() + 15
            while http.post("/v1/chat/completions", headers={"authorization": f"Bearer {uncached}"}, json=body).status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                time.sleep(0.2)
