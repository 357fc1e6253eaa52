"""Config texts for tests, and clients pointed at a test gateway."""

from __future__ import annotations

import os
from pathlib import Path

import openai

from tests.support.procs import MASTER_KEY, GatewayProcess

# A canary upstream key: it must never appear in any response, header, log line or metric.
UPSTREAM_KEY = "sk-CANARY-upstream-7f3a9c1e5b2d4f60"
UPSTREAM_ENV = {"UPSTREAM_KEY": UPSTREAM_KEY}


def provider(name: str, base_url: str, *, key_env: str = "UPSTREAM_KEY", extra: str = "") -> str:
    return f"""
  {name}:
    type: openai
    base_url: {base_url}
    credentials: [{{id: main, key: "${{{key_env}}}"}}]
    timeout: 5
    connect_timeout: 2{extra}"""


def config(providers: str, models: str, *, fallbacks: str = "", routing: str = "", prices: str = "", server: str = "") -> str:
    text = f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}{server}
providers:{providers}
models:{models}
"""
    if fallbacks:
        text += f"fallbacks:{fallbacks}\n"
    text += "routing:" + (routing or "\n  retries: 2\n  cooldown: {failures: 3, seconds: 30}") + "\n"
    if prices:
        text += f"prices:{prices}\n"
    return text


def client(gateway: GatewayProcess, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30, **kwargs)  # type: ignore[arg-type]


def key_file_config(upstream: str) -> str:
    return f"""
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  up:
    type: openai
    base_url: {upstream}
    credentials: [{{id: main, key_file: key.txt}}]
models:
  m:
    - {{provider: up, model: gpt-4o-mini}}
"""


def write_key(directory: Path, key: str) -> None:
    """Atomic replace, as editors and secret managers do it."""
    tmp = directory / ".key.txt.tmp"
    tmp.write_text(key + "\n")
    os.replace(tmp, directory / "key.txt")
