"""The security checklist's items that read the state database (``doctor.security``): the master key
compared with the stored virtual keys by hash, and active virtual keys without a budget or an expiry.

A SQLite database is opened read-only and never created: ``mode=ro`` while a ``-wal`` file exists
(a gateway has it open), else ``immutable=1``, so doctor, run as another user (root), leaves no
``-wal``/``-shm`` file behind that the gateway could not write. PostgreSQL goes through the
gateway's own engine (``store.db.make_engine``). A database that cannot be read is one warning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.ext.asyncio import create_async_engine

from faregate.config.state import sqlite_path
from faregate.credentials.virtual import hash_key
from faregate.doctor.findings import Finding, Severity
from faregate.generation import Generation
from faregate.store import keys as keys_table
from faregate.store import teams as teams_table
from faregate.store.db import make_engine
from faregate.types import Secret

GROUP = "security"
SHOWN = 5  # keys named in one finding
PAGE = 500
T = TypeVar("T")


def findings(generation: Generation) -> list[Finding]:
    """master_key_is_virtual_key, virtual_key_no_budget, virtual_key_no_expiry (or virtual_keys_unchecked)."""
    return _run(_stored_keys(generation, generation.server.auth == "key"))


def _finding(code: str, severity: Severity, subject: str, message: str, fix: str = "") -> Finding:
    return Finding(GROUP, code, severity, subject, message, fix if severity != "ok" else "")


@dataclass
class _Stored:
    keys: list[dict[str, Any]]
    team_budgets: dict[str, float | None]
    teams_enabled: dict[str, bool]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from sync code, also when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _engine_url(database: str) -> str | None:
    """The read-only SQLite URL (see the module's docstring); None for any other database."""
    path = sqlite_path(database)
    if path is None:
        return None
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
    return f"sqlite+aiosqlite:///file:{quote(str(path))}?{mode}&uri=true"


async def _read(database: str) -> _Stored:
    url = _engine_url(database)
    engine = create_async_engine(url) if url is not None else make_engine(database)
    try:
        keys: list[dict[str, Any]] = []
        total = 1
        while len(keys) < total:
            rows, total = await keys_table.list_keys(engine, PAGE, len(keys))
            if not rows:
                break
            keys.extend(rows)
        teams: list[dict[str, Any]] = []
        team_total = 1
        while len(teams) < team_total:
            team_rows, team_total = await teams_table.list_teams(engine, PAGE, len(teams))
            if not team_rows:
                break
            teams.extend(team_rows)
        return _Stored(keys, {t["id"]: t.get("budget_usd") for t in teams}, {t["id"]: bool(t["enabled"]) for t in teams})
    finally:
        await engine.dispose()


def _why(exc: BaseException, database: str) -> str:
    """One line about a failure, without the database password."""
    first = (str(exc).splitlines() or [""])[0][:200]
    password = urlsplit(database).password if "://" in database else None
    for shown in {password, unquote(password)} if password else ():
        first = first.replace(shown, "***")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


async def _stored_keys(generation: Generation, keyed: bool) -> list[Finding]:
    database = generation.state.database
    path = sqlite_path(database)
    if path is not None and not path.exists():
        return [_finding("virtual_keys", "ok", "state.database", "no state database yet: no virtual keys to check")]
    try:
        stored = await _read(database)
    except Exception as exc:  # noqa: BLE001 - doctor reports it and goes on
        message = f"the state database cannot be read ({_why(exc, database)}): the master key and the virtual keys were not compared"
        fix = "run faregate db upgrade -c FILE, and check state.database and that this user may read it"
        return [_finding("virtual_keys_unchecked", "warning", "state.database", message, fix)]
    return [_master_is_virtual(generation.master_key, stored, keyed), *_unbounded(stored)]


def _master_is_virtual(master: Secret | None, stored: _Stored, keyed: bool) -> Finding:
    subject = "server.master_key"
    if master is None or not keyed:
        return _finding("master_key_is_virtual_key", "ok", subject, "no master key in use: nothing to compare")
    digest = hash_key(master.reveal())
    same = [row for row in stored.keys if digest in (row["key_hash"], row.get("previous_hash"))]
    if not same:
        return _finding("master_key_is_virtual_key", "ok", subject, f"the master key is none of the {len(stored.keys)} stored virtual keys")
    ids = ", ".join(_named(row) for row in same[:SHOWN])
    message = (
        f"the master key (sha256:{master.fingerprint}) is also the secret of virtual key {ids}: whoever holds that key "
        "is admin, and revoking the key does not take the master key's powers back"
    )
    fix = f"set a new master key, then rotate the virtual key: faregate keys rotate {same[0]['id']}"
    return _finding("master_key_is_virtual_key", "error", subject, message, fix)


def _unbounded(stored: _Stored) -> list[Finding]:
    now = time.time()
    active = [
        row
        for row in stored.keys
        if row["enabled"]
        and (row.get("expires_at") is None or row["expires_at"] > now)
        and (row.get("team_id") is None or stored.teams_enabled.get(row["team_id"], True))
    ]
    no_budget = [
        row
        for row in active
        if row.get("budget_usd") is None and (row.get("team_id") is None or stored.team_budgets.get(row["team_id"]) is None)
    ]
    no_expiry = [row for row in active if row.get("expires_at") is None]
    subject = "virtual keys"
    if not active:
        head = f"no active virtual key ({len(stored.keys)} stored)"
        return [
            _finding("virtual_key_no_budget", "ok", subject, f"{head}: none without a budget"),
            _finding("virtual_key_no_expiry", "ok", subject, f"{head}: none without an expiry"),
        ]
    out: list[Finding] = []
    items = (
        ("virtual_key_no_budget", no_budget, "a budget (its own or its team's)", "faregate keys update ID --budget N --period monthly"),
        ("virtual_key_no_expiry", no_expiry, "an expiry", "faregate keys update ID --expires-at YYYY-MM-DDT00:00:00Z"),
    )
    for code, rows, what, fix in items:
        if not rows:
            out.append(_finding(code, "ok", subject, f"each of the {len(active)} active virtual key(s) has {what}"))
            continue
        ids = ", ".join(_named(row) for row in rows[:SHOWN]) + (", ..." if len(rows) > SHOWN else "")
        out.append(_finding(code, "warning", subject, f"{len(rows)} of {len(active)} active virtual key(s) lack {what}: {ids}", fix))
    return out


def _named(row: dict[str, Any]) -> str:
    """A key as findings name it: its id and name (never its prefix, hash or secret)."""
    return f"{row['id']} ({str(row['name'])[:60]!r})"
