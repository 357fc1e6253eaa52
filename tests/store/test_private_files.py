"""State files faregate creates are readable by their owner only, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from faregate.store.db import make_engine, upgrade
from faregate.store.sqlite_bus import SqliteBus


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_database_and_bus_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:

        async def run() -> None:
            engine = make_engine(f"sqlite:///{state / 'state.db'}")
            try:
                await upgrade(engine)
            finally:
                await engine.dispose()
            bus = SqliteBus(state / "control.db")
            try:
                await bus.head()
            finally:
                await bus.close()

        asyncio.run(run())
    finally:
        os.umask(old)
    assert _mode(state) == 0o700
    files = sorted(p.name for p in state.iterdir())
    assert "state.db" in files and "control.db" in files, files
    for name in files:  # the databases and any -wal / -shm SQLite made beside them
        assert _mode(state / name) & 0o077 == 0, f"{name}: mode {_mode(state / name):o}"


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)  # the operator's choice (or an older faregate's): doctor reports it, serve does not change it

    async def run() -> None:
        engine = make_engine(f"sqlite:///{db}")
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    assert _mode(db) == 0o644
