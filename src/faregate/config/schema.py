"""The config file's shape: the one place field names and defaults live. Pure: no I/O.

Secrets appear here only as *references* (``${ENV}``, ``os.environ/NAME``, ``key_file``);
``faregate.credentials.refs`` is the only code that turns them into values.
"""

from __future__ import annotations

import re
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIB = 1024 * 1024
PROVIDER_TYPES = ("openai", "anthropic", "azure", "gemini", "vertex", "bedrock", "mock")
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9_-]+(\.[a-z0-9_-]+)*)(:[0-9]{1,5})?")  # "null" is refused


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class CorsConfig(Strict):
    """Browser access (CORS), off unless ``server.cors`` is set. An origin is ``scheme://host[:port]``
    exactly as a browser sends it, or ``"*"`` alone for any origin (never with credentials)."""

    origins: list[str] = Field(min_length=1, max_length=100)
    allow_credentials: bool = Field(False, description="let browsers send cookies or HTTP auth (never with '*')")
    max_age: int = Field(600, ge=0, le=86_400, description="seconds a browser may reuse a preflight answer")

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        if "*" in origins and len(origins) > 1:
            raise ValueError("'*' already allows every origin: list it alone or list origins without it")
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin[:100]!r} is not an origin: write scheme://host[:port], lower case, no path or trailing slash")
        return origins

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if self.allow_credentials and self.origins == ["*"]:
            raise ValueError("allow_credentials cannot be used with origins ['*']: list the origins that may send credentials")
        return self


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    master_key: str | None = None
    auth: Literal["key", "none"] = "key"
    max_body_bytes: int = Field(32 * MIB, ge=1024)
    max_reply_bytes: int = Field(32 * MIB, ge=1024, description="an upstream reply (not streamed) longer than this is a 502")
    stream_heartbeat: float = Field(15.0, gt=0, description="seconds of upstream silence before an SSE comment is sent")
    max_event_bytes: int = Field(
        8 * MIB, ge=1024, description="one upstream SSE event, in bytes; a larger one ends the stream with an error"
    )
    log_requests: bool = True
    cors: CorsConfig | None = None
    ui: bool = Field(True, description="serve the dashboard at /ui (sign-in with the master key or a virtual key)")
    # connection limits (faregate.server.protocol); each worker applies them when it starts, never on reload
    header_timeout: float = Field(10.0, gt=0, description="seconds to send a request's headers, from connecting or from its first byte")
    keep_alive_timeout: float = Field(15.0, gt=0, description="seconds an idle keep-alive connection is kept open")
    body_timeout: float = Field(30.0, gt=0, description="seconds a request body may pause between bytes")
    max_connections: int | None = Field(None, ge=1, description="open connections per worker; default: half the open-file limit")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line and headers, in bytes")
    max_headers: int = Field(100, ge=1)


CONNECTION_LIMITS = ("header_timeout", "keep_alive_timeout", "body_timeout", "max_connections", "max_header_bytes", "max_headers")


def connection_limits(server: ServerConfig) -> dict[str, object]:
    """The server fields a worker applies when it starts (a reload cannot change them)."""
    return {name: getattr(server, name) for name in CONNECTION_LIMITS}


class StateConfig(Strict):
    database: str = "sqlite:///.faregate/state.db"
    redis: str | None = None
    outbox_dir: str | None = None  # spend rows the database could not take; default: beside SQLite, else .faregate/outbox


class CredentialConfig(Strict):
    id: str | None = None
    key: str | None = None
    key_file: str | None = None
    # bedrock only, each a reference like key: an AWS access key pair, and the session token of temporary keys
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    weight: int = Field(1, ge=0)
    retiring: bool = False


class ProviderConfig(Strict):
    type: Literal["openai", "anthropic", "azure", "gemini", "vertex", "bedrock", "mock"]
    base_url: str | None = None
    credentials: list[CredentialConfig] = Field(default_factory=list)
    credential_strategy: Literal["round_robin", "weighted", "fill_first"] = "round_robin"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(600.0, gt=0, description="seconds to the first byte and between bytes")
    connect_timeout: float = Field(10.0, gt=0)
    stream_usage: bool = Field(
        True, description="ask for stream_options.include_usage to price streams (and hide it from clients that did not ask)"
    )
    # anthropic provider only
    anthropic_version: str | None = Field(
        None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="anthropic-version sent when the client sends none (default 2023-06-01)"
    )
    # openai provider only: it serves POST /responses itself (OpenAI does), so Responses requests go to it as sent
    responses: bool = False
    # azure provider only: the api-version of /openai/deployments/{model}/... URLs, or "v1" for the /openai/v1/... form
    api_version: str | None = Field(None, pattern=r"^(v1|[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?)$")
    # vertex provider only: the Google Cloud project and location (a region such as us-east5, or "global")
    project: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{4,61}[a-z0-9]$")
    location: str | None = Field(None, pattern=r"^[a-z0-9-]{1,40}$")
    # bedrock provider only: the AWS region (us-east-1, eu-central-1, ...)
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$")
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
    # A request field this deployment's format cannot carry (translated requests only): false, a 400
    # naming it; true, left out and named in the x-faregate-dropped response header.
    drop_params: bool = False


class ModelCacheConfig(Strict):
    """The response cache of one public model (off unless set): exact matches of the canonical request."""

    ttl: float = Field(gt=0, le=30 * 86_400, description="seconds a cached answer is served")


class ModelConfig(Strict):
    """A public model. The short form (a bare list) is its deployments alone; the long form is
    ``{deployments: [...], cache: {ttl: 300}}``."""

    deployments: list[DeploymentConfig]
    cache: ModelCacheConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: object) -> object:
        return {"deployments": value} if isinstance(value, list) else value


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
    cache_write: float | None = Field(None, ge=0)  # 5-minute cache writes (Anthropic: 1.25x input)
    cache_write_1h: float | None = Field(None, ge=0)  # 1-hour cache writes (Anthropic: 2x input)


class OtlpConfig(Strict):
    """OpenTelemetry traces exported over OTLP/HTTP (protobuf), off unless set."""

    endpoint: str = Field(description="the collector's traces URL, e.g. http://127.0.0.1:4318/v1/traces")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every export (values may be ${ENV} references)")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="share of requests traced (parent-based: a sampled traceparent is kept)")
    record_content: bool = Field(False, description="record prompts and completions on spans (off: never recorded)")


class ObservabilityConfig(Strict):
    otlp: OtlpConfig | None = None


AlertEvent = Literal[
    "budget_threshold", "deployment_misconfigured", "deployment_cooldown", "credential_rejected", "reload_failed", "spend_outbox"
]
ALERT_EVENTS: tuple[str, ...] = typing.get_args(AlertEvent)


class AlertConfig(Strict):
    """One webhook and the events it gets (every event when ``events`` is left out)."""

    url: str = Field(description="the webhook URL (may be a ${ENV} reference: Slack webhook URLs are secrets)")
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS))  # type: ignore[arg-type]
    format: Literal["slack", "json"] = "slack"
    budget_thresholds: list[float] = Field(
        default_factory=lambda: [0.8, 1.0], min_length=1, max_length=10, description="shares of a key's or team's budget (0.8 = 80 %)"
    )
    cooldown_minutes: float = Field(5.0, gt=0, description="a deployment cooling down (or misconfigured) longer than this alerts")
    min_interval: float = Field(300.0, ge=0, description="seconds before the same alert is sent again")

    @field_validator("budget_thresholds")
    @classmethod
    def _check_thresholds(cls, thresholds: list[float]) -> list[float]:
        if any(not 0 < t <= 10 for t in thresholds):
            raise ValueError("each threshold is a share of the budget: more than 0, at most 10 (0.8 = 80 %, 1.0 = the whole budget)")
        return thresholds


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    alerts: list[AlertConfig] = Field(default_factory=list)
