"""Idle memory: a worker imports only what its config uses (issue 13: idle RSS).

botocore (~5 MiB with its event-stream parser), google-auth (~11 MiB with cryptography), alembic
(~11 MiB with mako), redis (~8 MiB) and SQLAlchemy's PostgreSQL dialect (~2 MiB) were imported by every
worker at start; they now load only where a config uses them: a bedrock provider's credential chain
or stream, a vertex provider's minted token, a database that is not yet at the migrations' head,
``state.redis`` (redis pulls in opentelemetry's SDK when it is installed), PostgreSQL; urllib3 (the first alert
sent), jinja2 (the first dashboard page) and opentelemetry (``observability.otlp``) the same way. Checked in a
fresh interpreter that does what a ``faregate serve`` worker does at start with a config of one
openai provider: run the migrations (already applied) and build the Gateway.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from faregate.store import db

LAZY = ("botocore", "google.auth", "alembic", "sqlalchemy.dialects.postgresql", "redis", "urllib3", "jinja2", "opentelemetry")

CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
state:
  database: sqlite:///{state}/state.db
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{id: main, key: "${UP_KEY}"}]
models:
  m:
    - {provider: up, model: gpt-4o-mini}
"""

WORKER = """
import asyncio, sys
from pathlib import Path
from faregate.store.db import make_engine, upgrade
from faregate.gateway import Gateway
import faregate.server.app, faregate.cli

async def migrate(url):
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()

asyncio.run(migrate(sys.argv[2]))
if sys.argv[3] == "check":
    Gateway(Path(sys.argv[1]))
    print(" ".join(m for m in {lazy!r} if m in sys.modules))
"""


def run(config: Path, database: str, mode: str) -> str:
    env = {"FAREGATE_MASTER_KEY": "sk-idle-master", "UP_KEY": "sk-idle-upstream", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER.format(lazy=LAZY), str(config), database, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_worker_of_an_openai_config_imports_no_provider_sdk_nor_alembic(tmp_path: Path) -> None:
    config = tmp_path / "faregate.yaml"
    config.write_text(CONFIG.replace("{state}", str(tmp_path)))
    database = f"sqlite:///{tmp_path}/state.db"
    run(config, database, "migrate")  # as `faregate serve` on a new database: alembic runs once
    assert run(config, database, "check") == ""  # at head: nothing of LAZY in the worker


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    assert db.heads() == frozenset(ScriptDirectory.from_config(config).get_heads())
