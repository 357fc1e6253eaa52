from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.postgres import PostgresServer
from tests.support.procs import GatewayProcess

# Variables that would change how faregate resolves config; each test sets what it needs.
_LEAKY_ENV = ("FAREGATE_CONFIG", "FAREGATE_METRICS_DIR", "FAREGATE_MASTER_KEY", "FAREGATE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
# A proxy set for the developer's shell would route the gateways' loopback upstreams through it.
_LEAKY_ENV += ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `faregate serve` processes for a test; all are stopped at its end."""
    started: list[GatewayProcess] = []

    def start(config: str, **kwargs: Any) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path, config, **kwargs).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (installed by `make test`, run as an unprivileged user)."""
    with PostgresServer() as server:
        yield server
