"""A realistic state database for the dashboard bench: teams, keys and a million spend rows.

The rows are generated in Python with a seeded RNG (the same data on SQLite and PostgreSQL) and
written with each driver's fastest bulk path: ``executemany`` on sqlite3, ``COPY`` through asyncpg.
The schema comes from faregate's own migrations (``faregate.store.db.upgrade``), so the bench
measures the indexes faregate ships.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from faregate.store.db import make_engine, upgrade
from faregate.store.schema import spend_log, teams, virtual_keys

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku", "gemini-flash", "o3-mini", "embed-small", "llama-70b")
DEPLOYMENTS = {m: (f"openai/{m}", f"azure/{m}", f"backup/{m}") for m in MODELS}
STATUSES = (200,) * 95 + (429, 429, 500, 502, 400)
ERRORS = {429: "rate_limited", 500: "upstream_error", 502: "upstream_unavailable", 400: "invalid_request"}
DAYS = 30
END = float(int(time.time()))  # the rows span the DAYS up to now, so "the last day" and "the last 30 days" are full


@dataclass(frozen=True)
class Sizes:
    rows: int = 1_000_000
    keys: int = 5_000
    teams: int = 200


def team_rows(sizes: Sizes) -> list[dict[str, Any]]:
    return [
        {
            "id": f"team_{i:06d}",
            "name": f"team {i}",
            "metadata": {},
            "created_at": END - DAYS * 86_400 + i,
            "updated_at": END,
            "enabled": True,
            "budget_usd": 100.0 if i % 3 else None,
            "budget_period": "monthly",
            "spent_usd": 0.0,
            "reserved_usd": 0.0,
            "period_start": None,
            "rpm": None,
            "tpm": None,
            "max_parallel": None,
        }
        for i in range(sizes.teams)
    ]


def key_rows(sizes: Sizes) -> list[dict[str, Any]]:
    out = []
    for i in range(sizes.keys):
        digest = hashlib.sha256(f"bench-key-{i}".encode()).hexdigest()
        out.append(
            {
                "id": f"key_{i:016x}",
                "key_hash": digest,
                "prefix": f"sk-fg-{digest[:4]}…{digest[-4:]}",
                "name": f"service {i % 977} key {i}",
                "user_id": None,
                "team_id": f"team_{i % sizes.teams:06d}" if i % 10 else None,
                "models": [],
                "expires_at": None,
                "metadata": {},
                "enabled": i % 50 != 0,
                "previous_hash": None,
                "previous_valid_until": None,
                "created_at": END - DAYS * 86_400 + i * 10.0,
                "updated_at": END,
                "revoked_at": None,
                "budget_usd": None,
                "budget_period": "total",
                "spent_usd": 0.0,
                "reserved_usd": 0.0,
                "period_start": None,
                "rpm": None,
                "tpm": None,
                "max_parallel": None,
            }
        )
    return out


COLUMNS = tuple(c.name for c in spend_log.columns)


def spend_rows(sizes: Sizes, seed: int = 14) -> Iterator[tuple[Any, ...]]:
    """Tuples in ``COLUMNS`` order, oldest first, one every DAYS*86400/rows seconds (with jitter)."""
    rng = random.Random(seed)
    step = DAYS * 86_400 / sizes.rows
    start = END - DAYS * 86_400
    for i in range(sizes.rows):
        ts = start + i * step + rng.random() * step
        key = rng.randrange(sizes.keys)
        team = f"team_{key % sizes.teams:06d}" if key % 10 else None
        model = MODELS[min(int(rng.expovariate(0.6)), len(MODELS) - 1)]
        status = rng.choice(STATUSES)
        deployment = DEPLOYMENTS[model][0 if rng.random() < 0.8 else 1]
        prompt, completion = rng.randrange(10, 4000), rng.randrange(1, 800)
        ok = status == 200
        values = {
            "request_id": f"req_{i:012x}{rng.getrandbits(32):08x}",
            "ts": ts,
            "day": time.strftime("%Y-%m-%d", time.gmtime(ts)),
            "key_id": f"key_{key:016x}",
            "team_id": team,
            "user_id": None,
            "endpoint": "chat",
            "format": "openai_chat",
            "model": model,
            "deployment": deployment,
            "provider": deployment.split("/")[0],
            "upstream_model": model,
            "credential": f"{deployment.split('/')[0]}/main:sk-…{key % 97:04d}",
            "stream": rng.random() < 0.4,
            "prompt_tokens": prompt if ok else None,
            "completion_tokens": completion if ok else None,
            "cached_tokens": 0 if ok else None,
            "cache_write_5m_tokens": None,
            "cache_write_1h_tokens": None,
            "reasoning_tokens": None,
            "cost_usd": (prompt * 2.5e-6 + completion * 1e-5) if ok else 0.0,
            "latency_ms": rng.uniform(50, 3000),
            "ttfb_ms": rng.uniform(20, 500) if ok else None,
            "status": status,
            "error_code": ERRORS.get(status),
            "fallback_from": None,
            "attempts": 1 if ok else 2,
        }
        optional = {"generation": "0123456789ab", "failures": None if ok else f"{deployment}: UpstreamError", "upstream_request_id": None,
                    "cache": None, "saved_usd": None}  # fmt: skip
        values.update({k: v for k, v in optional.items() if k in COLUMNS})
        yield tuple(values[c] for c in COLUMNS)


async def _migrate(database: str) -> None:
    engine = make_engine(database)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def fill_sqlite(path: str, sizes: Sizes) -> None:
    """A fresh migrated SQLite file at ``path`` with the bench's rows (a few seconds per 100k rows)."""
    asyncio.run(_migrate(f"sqlite:///{path}"))
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for table, rows in ((teams, team_rows(sizes)), (virtual_keys, key_rows(sizes))):
                names = [c.name for c in table.columns]
                sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608
                con.executemany(sql, [tuple(_sqlite_value(r[n]) for n in names) for r in rows])
            sql = f"INSERT INTO spend_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
            con.executemany(sql, spend_rows(sizes))
        con.execute("ANALYZE")
    finally:
        con.close()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    return value


async def fill_postgres(url: str, sizes: Sizes) -> None:
    """A migrated PostgreSQL database at ``url`` (postgresql://…) with the bench's rows, by COPY."""
    import asyncpg

    await _migrate(url)
    conn = await asyncpg.connect(url)
    try:
        import json

        for table, rows in ((teams, team_rows(sizes)), (virtual_keys, key_rows(sizes))):
            names = [c.name for c in table.columns]
            records = [tuple(json.dumps(r[n]) if isinstance(r[n], dict | list) else r[n] for n in names) for r in rows]
            await conn.copy_records_to_table(table.name, records=records, columns=names)
        batch: list[tuple[Any, ...]] = []
        for record in spend_rows(sizes):
            batch.append(record)
            if len(batch) >= 50_000:
                await conn.copy_records_to_table("spend_log", records=batch, columns=list(COLUMNS))
                batch = []
        if batch:
            await conn.copy_records_to_table("spend_log", records=batch, columns=list(COLUMNS))
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
