"""Shared by the store tests: an empty database of each kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty state database: a SQLite file, then a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.url_of(pg.new_database("migration"))
