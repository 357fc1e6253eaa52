"""One gateway for the translation tests, in front of a fake OpenAI and a fake Anthropic upstream
(real HTTP on loopback both ways): OpenAI-format clients reach Anthropic deployments and the other
way round. Each test starts with both fakes' queues, rules and records empty."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

# Two deployments of each upstream model: drop_params false (the default) and true. The `-cut`
# models have their own upstream model, so the failures the cut tests cause cool nothing else down.
CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  oa:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
    timeout: 10
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
    timeout: 10
models:
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
  claude-lax:
    - {{provider: an, model: claude-sonnet-4-5, drop_params: true}}
  claude-cut:
    - {{provider: an, model: claude-sonnet-4-5-20250929}}
  gpt:
    - {{provider: oa, model: gpt-4o-mini}}
  gpt-lax:
    - {{provider: oa, model: gpt-4o-mini, drop_params: true}}
  gpt-cut:
    - {{provider: oa, model: gpt-4o-mini-2024-07-18}}
  mixed:  # Anthropic first, an OpenAI-compatible deployment when it fails
    - {{provider: an, model: claude-sonnet-4-5, priority: 0}}
    - {{provider: oa, model: gpt-4o-mini, priority: 1}}
routing:
  retries: 1
  cooldown: {{failures: 1000, seconds: 1}}
"""
ANTHROPIC_KEY = "sk-ant-CANARY-upstream-0f1e2d3c4b5a6978"


@dataclass
class World:
    gateway: GatewayProcess
    openai_upstream: FakeOpenAI
    anthropic_upstream: FakeAnthropic

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30)

    def access_line(self, request_id: str, timeout: float = 10.0) -> str:
        """The access log line of a request: written when it has finished, after the client saw its
        last byte, so it is waited for (a condition with a bound, not a pause)."""
        deadline = time.monotonic() + timeout
        needle = f'"request_id":"{request_id}"'
        while True:
            for line in self.gateway.logs().splitlines():
                if needle in line and '"logger":"faregate.access"' in line:
                    return line
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.02)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("translation")
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        config = CONFIG.format(openai=oa.url, anthropic=an.url)
        env = {**UPSTREAM_ENV, "ANTHROPIC_KEY": ANTHROPIC_KEY, "FAREGATE_MASTER_KEY": MASTER_KEY}
        with GatewayProcess(tmp, config, env=env).start() as gateway:
            yield World(gateway, oa, an)


@pytest.fixture
def w(world: World) -> World:
    world.openai_upstream.clear()
    world.anthropic_upstream.clear()
    return world
