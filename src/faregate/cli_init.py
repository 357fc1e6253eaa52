"""`faregate init`: a starter config and the `.env` it reads, in a directory of the user's choice.

The config serves at once (a local mock model, no provider keys) and shows, commented out, how an
OpenAI and an Anthropic account are added. The `.env` holds a freshly generated master key and the
names of the provider keys; it is written 0600 and never printed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

CONFIG_NAME = "faregate.yaml"
ENV_NAME = ".env"

STARTER_CONFIG = """\
# faregate's config (faregate init). Check it with `faregate check -c {config}`, serve it with
# `faregate serve -c {config}` once the variables in {env} are in the environment
# (`set -a; . {env}; set +a`, or systemd's EnvironmentFile=). Every secret is a reference.
server:
  host: 127.0.0.1          # loopback: put a TLS proxy in front (examples/nginx/faregate.conf) before opening it up
  port: 4000
  master_key: ${{FAREGATE_MASTER_KEY}}

state:
  database: {database}

providers:
  local:
    type: mock             # answers locally, so the gateway works before any provider key is set
#  openai:
#    type: openai
#    base_url: https://api.openai.com/v1
#    credentials:
#      - id: primary
#        key: ${{OPENAI_API_KEY}}
#  anthropic:
#    type: anthropic
#    base_url: https://api.anthropic.com
#    credentials:
#      - id: primary
#        key: ${{ANTHROPIC_API_KEY}}

models:
  starter-chat:
    - provider: local
      model: mock-small
#  gpt-4o-mini:
#    - provider: openai
#      model: gpt-4o-mini
#  claude-sonnet-4-5:      # the long form of a model: its deployments and the response cache
#    deployments:
#      - provider: anthropic
#        model: claude-sonnet-4-5
#    cache: {{ttl: 300}}

prices:                    # USD per million tokens; the shipped table already prices the big providers' models
  mock-small: {{input: 0.1, output: 0.4}}
"""

STARTER_ENV = """\
# faregate's secrets (faregate init). Keep this file private (0600); never commit it.
# The master key signs in to the admin API and the dashboard: keep it secret, rotate it by editing it here.
FAREGATE_MASTER_KEY={master_key}
# Provider keys the config references (uncomment the providers in {config} that use them):
# OPENAI_API_KEY=
# ANTHROPIC_API_KEY=
"""


class InitRefused(Exception):
    """A file ``init`` would write exists already (and ``--force`` was not given)."""


def write_starter(directory: Path, database: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``faregate.yaml`` and ``.env`` into ``directory`` (created if missing); return their paths."""
    config, env = directory / CONFIG_NAME, directory / ENV_NAME
    if not force:
        existing = [str(p) for p in (config, env) if p.exists()]
        if existing:
            raise InitRefused(f"{', '.join(existing)} exist(s) already: nothing written (--force replaces them)")
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(STARTER_CONFIG.format(config=config.name, env=env.name, database=database), encoding="utf-8")
    master_key = "sk-faregate-" + secrets.token_urlsafe(32)
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(STARTER_ENV.format(master_key=master_key, config=config.name))
    env.chmod(0o600)  # an existing file keeps its mode through O_TRUNC
    return config, env
