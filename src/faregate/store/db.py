"""Database engines (SQLite via aiosqlite by default, PostgreSQL via asyncpg) and migrations.

Migrations are alembic scripts in ``faregate/store/migrations``, applied at ``serve`` start and
by ``faregate db upgrade``. All SQL elsewhere goes through SQLAlchemy Core with bound parameters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def async_url(database: str) -> str:
    """`sqlite:///path` -> aiosqlite, `postgresql://` -> asyncpg; anything else is refused."""
    if database.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database.removeprefix("sqlite:///")
    for scheme in ("postgresql://", "postgres://"):
        if database.startswith(scheme):
            return "postgresql+asyncpg://" + database.removeprefix(scheme)
    raise ValueError("state.database must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB")


def private_file(path: Path) -> None:
    """Create a state file (and its folder) readable by its owner only, whatever the umask, before
    SQLite opens it: it holds key hashes, budgets and the spend log (SQLite gives its -wal and -shm
    files the database's mode). An existing file keeps its mode: ``faregate doctor`` reports it."""
    if path.name in ("", ":memory:") or path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_engine(database: str) -> AsyncEngine:
    url = async_url(database)
    if url.startswith("sqlite"):
        private_file(Path(url.removeprefix("sqlite+aiosqlite:///")))
        engine = create_async_engine(url, connect_args={"timeout": 5})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True, connect_args={"timeout": 5})


_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*(?:"([^"]*)"|None)', re.MULTILINE)


def heads() -> frozenset[str]:
    """The migrations' head revisions, read from the scripts' ``revision`` / ``down_revision``
    lines (tests/store/test_migration_heads.py checks them against alembic's own reading)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(script.read_text()):
            if value:
                (revisions if name == "revision" else parents).add(value)
    return frozenset(revisions - parents)


def applied(connection: Connection) -> frozenset[str]:
    """The revisions the database is at (alembic's ``alembic_version`` table; none: never migrated)."""
    if not inspect(connection).has_table("alembic_version"):
        return frozenset()
    return frozenset(row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version")))


def _upgrade(connection: Connection) -> None:
    if applied(connection) == heads():  # up to date: alembic (~11 MiB, 100 modules) is never imported into the worker
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every migration not applied yet (idempotent; safe for several workers at once on
    PostgreSQL, which serialises DDL; on SQLite the busy timeout makes concurrent starts wait)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
