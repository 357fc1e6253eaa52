"""The config file's shape: the one place field names and defaults live. Pure: no I/O.

Secrets appear here only as *references* (``${ENV}``, ``os.environ/NAME``, ``key_file``);
``faregate.credentials.refs`` is the only code that turns them into values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024
PROVIDER_TYPES = ("openai", "mock")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    master_key: str | None = None
    auth: Literal["key", "none"] = "key"
    max_body_bytes: int = Field(32 * MIB, ge=1024)
    stream_heartbeat: float = Field(15.0, gt=0, description="seconds of upstream silence before an SSE comment is sent")
    log_requests: bool = True


class StateConfig(Strict):
    database: str = "sqlite:///.faregate/state.db"
    redis: str | None = None
    outbox_dir: str | None = None  # spend rows the database could not take; default: beside SQLite, else .faregate/outbox


class CredentialConfig(Strict):
    id: str | None = None
    key: str | None = None
    key_file: str | None = None
    weight: int = Field(1, ge=0)
    retiring: bool = False


class ProviderConfig(Strict):
    type: Literal["openai", "mock"]
    base_url: str | None = None
    credentials: list[CredentialConfig] = Field(default_factory=list)
    credential_strategy: Literal["round_robin", "weighted", "fill_first"] = "round_robin"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(600.0, gt=0, description="seconds to the first byte and between bytes")
    connect_timeout: float = Field(10.0, gt=0)
    stream_usage: bool = Field(
        True, description="ask for stream_options.include_usage to price streams (and hide it from clients that did not ask)"
    )
    # mock provider only
    stream_chunks: int | None = Field(None, ge=1, le=10_000)
    chunk_delay: float | None = Field(None, ge=0, le=60)


class DeploymentConfig(Strict):
    provider: str
    model: str
    weight: int = Field(1, ge=0)
    priority: int = 0
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class CooldownConfig(Strict):
    failures: int = Field(3, ge=1)
    seconds: float = Field(30.0, ge=0)


class RoutingConfig(Strict):
    retries: int = Field(2, ge=0, le=20)
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)
    max_fallback_cost_ratio: float | None = Field(1.0, ge=0)


class PriceConfig(Strict):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, list[DeploymentConfig]] = Field(default_factory=dict)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
