"""Migrations in tests: stop a database at one revision (to prove the next keeps its rows)."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection

from faregate.store.db import MIGRATIONS


def to_revision(revision: str) -> Callable[[Connection], None]:
    """For ``connection.run_sync``: apply the migrations up to ``revision`` only."""

    def upgrade(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade
