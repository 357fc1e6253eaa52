"""Checks that tests.support.postgres starts a real PostgreSQL, and that it keeps its data across a restart."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tests.support.postgres import NOT_FOUND, PostgresServer, find_binaries


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_finds_server_binaries() -> None:
    found = find_binaries()
    assert (found.bindir / "initdb").exists()
    assert (found.bindir / "postgres").exists()
    assert found.version >= (10,)


def test_missing_binaries_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.support.postgres.Path.glob", lambda self, pattern: iter(()))
    monkeypatch.setattr("tests.support.postgres.shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="make test"):
        find_binaries()
    assert "apt-get install postgresql" in NOT_FOUND


def test_query_stop_restart_keeps_data() -> None:
    with PostgresServer() as pg:
        assert pg.url == f"postgresql://faregate@127.0.0.1:{pg.port}/faregate"
        assert port_open(pg.port)
        assert pg.psql("SELECT 1").strip() == "1"
        assert pg.psql("SELECT current_database(), current_user").strip() == "faregate|faregate"
        pg.psql("CREATE TABLE spend (key text PRIMARY KEY, cents bigint NOT NULL)")
        pg.psql("INSERT INTO spend VALUES ('sk-a', 1234)")
        assert pg.psql("SELECT key, cents FROM spend").strip() == "sk-a|1234"
        if os.geteuid() == 0:
            assert pg.user != "root"
            assert Path(pg.data_dir).stat().st_uid == pg.account.pw_uid  # type: ignore[union-attr]

        pg.stop()
        assert not pg.running
        assert not port_open(pg.port)
        with pytest.raises(RuntimeError):
            pg.psql("SELECT 1", timeout=10)

        pg.start()
        assert port_open(pg.port)
        assert pg.psql("SELECT key, cents FROM spend").strip() == "sk-a|1234"
        base = pg.base
        assert stat.S_ISDIR(base.stat().st_mode)
    assert not base.exists()
    assert not port_open(pg.port)


def test_stop_is_idempotent_and_start_twice_is_a_no_op() -> None:
    with PostgresServer() as pg:
        proc = pg.proc
        pg.start()
        assert pg.proc is proc
        pg.stop()
        pg.stop()
        assert not port_open(pg.port)
