"""Where state lives: relative paths in ``state:`` are relative to the config file's folder
(as ``key_file`` is), never to the working directory, so ``serve`` started from anywhere opens
the same database, outbox and control bus.
"""

from __future__ import annotations

import os
from pathlib import Path

from faregate.config.load import read_yaml, validate
from faregate.config.schema import StateConfig

SQLITE = "sqlite:///"


def sqlite_path(database: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` database (None for other databases and in-memory SQLite)."""
    if not database.startswith(SQLITE):
        return None
    path = database.removeprefix(SQLITE).partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def state_dir(state: StateConfig, base_dir: Path) -> Path:
    """The folder of a SQLite database; with any other database, ``.faregate/`` beside the config."""
    file = sqlite_path(state.database)
    if file is not None:
        return (file if file.is_absolute() else base_dir / file).parent
    return base_dir / ".faregate"


def resolve_state(state: StateConfig, base_dir: Path) -> StateConfig:
    """``state`` with a relative SQLite path and ``outbox_dir`` made absolute against ``base_dir``
    (the config file's folder), and ``outbox_dir`` filled in with its default (``outbox/`` in the state folder)."""
    base_dir = Path(base_dir).absolute()
    database = state.database
    file = sqlite_path(database)
    if file is not None and not file.is_absolute():
        _, sep, query = database.removeprefix(SQLITE).partition("?")
        database = SQLITE + _under(base_dir, file) + sep + query
    resolved = state.model_copy(update={"database": database})
    default = state_dir(resolved, base_dir) / "outbox"
    outbox_dir = _under(base_dir, Path(state.outbox_dir)) if state.outbox_dir else str(default)
    return resolved.model_copy(update={"outbox_dir": outbox_dir})


def _under(base_dir: Path, path: Path) -> str:
    return os.path.normpath(path if path.is_absolute() else base_dir / path)


def load_state(path: Path) -> StateConfig:
    """Only the ``state`` section of a config file, validated (ConfigError naming the path) and
    resolved: for commands that need the database but no provider secret (``faregate db upgrade``).
    ``state.redis`` is returned as written (a reference is not expanded)."""
    data = read_yaml(path)
    config = validate({"state": data["state"]} if "state" in data else {})
    return resolve_state(config.state, Path(path).absolute().parent)
