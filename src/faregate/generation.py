"""The Generation: the immutable compiled view of one config read.

Everything a request needs (providers with their credentials already resolved, each model's
deployments in priority tiers, fallbacks, routing policy, prices) lives in one frozen value with
an id derived from its resolved content. A worker swaps generations by replacing one reference;
a request captures one generation at its start and uses only it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import overload

import orjson

from faregate.config.prices import price_table
from faregate.config.schema import Config, ModelConfig, ProviderConfig, ServerConfig, StateConfig
from faregate.types import Price, Secret, fingerprint


@dataclass(slots=True, eq=False)
class Minted:
    """A secret minted for a credential rather than configured (Vertex: an OAuth token; Bedrock
    without keys: AWS keys from the environment's chain). One per credential per generation, so it
    rotates with a reload; replaced off the hot path before it expires. ``value`` is what the
    transport reads (None until first minted); ``fingerprint`` is all that is ever shown of it."""

    kind: str  # what mints it: "aws_chain", ...
    value: object = None
    expires: float | None = None  # Unix time; None: does not expire
    fingerprint: str = "none"
    error: str | None = None  # why the last minting failed (never a secret)
    secrets: tuple[Secret, ...] = ()  # the minted secrets, for scrubbing
    # kept by faregate.credentials.minted, which mints and refreshes it:
    minted_at: float | None = None  # Unix time of the value's minting
    count: int = 0  # values minted for this credential in this generation
    retry_at: float = 0.0  # after a failure: no new attempt before this (Unix time)
    failure: str = ""  # the UpstreamError class of the last failure ("" after a success)
    job: object = None  # the minting in flight (an asyncio task), shared by everyone who waits for it


@dataclass(frozen=True, slots=True)
class Credential:
    provider: str
    id: str
    secret: Secret | None  # None: a provider that needs no key (mock, keyless local servers)
    weight: int = 1
    retiring: bool = False
    parts: tuple[Secret, ...] = ()  # the other secrets of a credential of several (Bedrock: secret key, session token)
    minted: Minted | None = field(default=None, compare=False)
    label: str = field(init=False)  # `<provider>/<id>:<fingerprint>`, the x-faregate-credential value

    def __post_init__(self) -> None:
        fp = self.secret.fingerprint if self.secret is not None else "none"
        if self.secret is not None and self.parts:  # one fingerprint over every part
            fp = fingerprint("\n".join(s.reveal() for s in (self.secret, *self.parts)))
        object.__setattr__(self, "label", f"{self.provider}/{self.id}:{fp}")


@dataclass(frozen=True, slots=True)
class SecretHeader:
    """A configured upstream header that holds references (``Authorization: Bearer ${NAME}``)."""

    name: str  # lower case
    value: Secret  # the whole value, references expanded
    parts: tuple[Secret, ...]  # each referenced value: what scrubbing looks for


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: str
    base_url: str
    headers: tuple[tuple[str, str], ...]
    timeout: float
    connect_timeout: float
    credentials: tuple[Credential, ...]
    strategy: str
    stream_chunks: int
    chunk_delay: float
    stream_usage: bool = True
    secret_headers: tuple[SecretHeader, ...] = ()  # sent after ``headers``
    anthropic_version: str | None = None  # type anthropic: the anthropic-version sent when the client names none
    responses: bool = False  # type openai: it serves /responses itself (Responses requests go to it as sent)
    api_version: str | None = None  # type azure: the api-version query value, or "v1" for the /openai/v1/... URLs
    project: str | None = None  # type vertex: the Google Cloud project
    location: str | None = None  # type vertex: the location (region or "global")
    region: str | None = None  # type bedrock: the AWS region


@dataclass(frozen=True, slots=True)
class Deployment:
    label: str  # `<provider>/<upstream model>`: how operators and messages name it
    public_model: str
    provider: Provider
    model: str
    weight: int
    priority: int
    price: Price | None
    rpm: int | None = None  # our limits towards this deployment (the provider's, as configured)
    tpm: int | None = None
    drop_params: bool = False  # a field its format cannot carry is dropped and disclosed (False: a 400)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    name: str
    deployments: tuple[Deployment, ...]
    tiers: tuple[tuple[Deployment, ...], ...]  # enabled deployments grouped by priority, lowest first
    price: Price | None  # the dearest enabled deployment's price; None when any enabled one is unpriced
    cache_ttl: float | None = None  # models.NAME.cache.ttl: the response cache is on for this model


@dataclass(frozen=True, slots=True)
class Policy:
    retries: int
    cooldown_failures: int
    cooldown_seconds: float
    max_fallback_cost_ratio: float | None


@dataclass(frozen=True, slots=True)
class Otlp:
    """``observability.otlp`` with its references resolved (``keyring.build``): where traces go."""

    endpoint: str
    headers: tuple[tuple[str, Secret | str], ...]  # sent with every export; a value holding a reference is a Secret
    sample_ratio: float
    record_content: bool


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """One ``alerts:`` webhook with its URL resolved: a Secret (a Slack webhook URL is one), shown by fingerprint."""

    url: Secret
    events: frozenset[str]
    format: str  # slack | json
    budget_thresholds: tuple[float, ...]
    cooldown_minutes: float
    min_interval: float


@dataclass(frozen=True, slots=True)
class Generation:
    id: str
    loaded_at: float
    source: Path
    server: ServerConfig
    state: StateConfig
    master_key: Secret | None
    providers: Mapping[str, Provider]
    models: Mapping[str, ModelRoute]
    fallbacks: Mapping[str, tuple[str, ...]]
    policy: Policy
    prices: Mapping[str, Price]
    watched_files: tuple[Path, ...]
    otlp: Otlp | None = None  # observability.otlp (None: tracing off; faregate.observability.tracing)
    alerts: tuple[AlertTarget, ...] = ()  # alerts: (faregate.alerts)
    _redactor: Redactor | None = field(default=None, init=False, repr=False, compare=False)  # built on first use

    def secrets(self) -> tuple[Secret, ...]:
        found = [c.secret for p in self.providers.values() for c in p.credentials if c.secret is not None]
        found.extend(part for p in self.providers.values() for c in p.credentials for part in c.parts)
        found.extend(s for p in self.providers.values() for c in p.credentials if c.minted is not None for s in c.minted.secrets)
        found.extend(part for p in self.providers.values() for h in p.secret_headers for part in h.parts)
        if self.master_key is not None:
            found.append(self.master_key)
        found.extend(target.url for target in self.alerts)
        return tuple(found)

    def rescrub(self) -> None:
        """A credential's minted secrets changed (``credentials.minted``): the scrubber is rebuilt on its next use."""
        object.__setattr__(self, "_redactor", None)

    @overload
    def scrub(self, data: str) -> str: ...
    @overload
    def scrub(self, data: bytes) -> bytes: ...
    def scrub(self, data: str | bytes) -> str | bytes:
        """THE scrubber: every secret of this generation (``secrets``) in ``data`` becomes
        ``[redacted:<fingerprint>]``. Every text that comes from an upstream goes through it before
        it goes anywhere (``UpstreamError.redact``, the pipeline); one regular-expression search
        when there is nothing to remove."""
        redactor = self._redactor
        if redactor is None:
            redactor = _redactor(self.secrets())
            object.__setattr__(self, "_redactor", redactor)
        text, binary, names = redactor
        if isinstance(data, bytes):
            if binary is None or binary.search(data) is None:
                return data
            return binary.sub(lambda m: names[m.group().decode()].encode(), data)
        if text is None or text.search(data) is None:
            return data
        return text.sub(lambda m: names[m.group()], data)


Redactor = tuple["re.Pattern[str] | None", "re.Pattern[bytes] | None", dict[str, str]]


def _redactor(secrets: tuple[Secret, ...]) -> Redactor:
    """One pattern (str and bytes) matching any of ``secrets``, longest first (a secret that
    contains another is removed whole), and each value's replacement."""
    values = sorted({s.reveal() for s in secrets if s.reveal()}, key=len, reverse=True)
    names = {s.reveal(): f"[redacted:{s.fingerprint}]" for s in secrets}
    if not values:
        return None, None, names
    return re.compile("|".join(map(re.escape, values))), re.compile(b"|".join(re.escape(v.encode()) for v in values)), names


# The Anthropic root has no /v1: the anthropic SDKs' base_url convention (providers/anthropic.py adds /v1/messages).
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",  # AI Studio (the Gemini API)
    "mock": "mock://local",
}


def default_base_url(p: ProviderConfig) -> str:
    """Where a provider type is reached when the config names no base_url ("" for azure: its resource is required)."""
    if p.type == "vertex":
        return "https://aiplatform.googleapis.com" if p.location in (None, "global") else f"https://{p.location}-aiplatform.googleapis.com"
    if p.type == "bedrock":
        return f"https://bedrock-runtime.{p.region}.amazonaws.com"
    return DEFAULT_BASE_URLS.get(p.type, "")


def compile_generation(
    config: Config,
    *,
    source: Path,
    credentials: Mapping[str, tuple[Credential, ...]],
    headers: Mapping[str, tuple[tuple[str, str], ...]],
    base_urls: Mapping[str, str | None],
    master_key: Secret | None,
    watched_files: tuple[Path, ...],
    state: StateConfig | None = None,
    secret_headers: Mapping[str, tuple[SecretHeader, ...]] | None = None,
    otlp: Otlp | None = None,
    alerts: tuple[AlertTarget, ...] = (),
) -> Generation:
    """Build the generation from a validated config and already-resolved secrets. Pure but for the clock.
    ``state``: the config's state section with its paths resolved and references expanded (default: as written)."""
    secret_headers = secret_headers or {}
    providers = {
        name: Provider(
            name=name,
            type=p.type,
            base_url=(base_urls.get(name) or default_base_url(p)).rstrip("/"),
            headers=headers.get(name, ()),
            timeout=p.timeout,
            connect_timeout=p.connect_timeout,
            credentials=credentials.get(name, ()),
            strategy=p.credential_strategy,
            stream_chunks=p.stream_chunks or 8,
            chunk_delay=0.02 if p.chunk_delay is None else p.chunk_delay,
            stream_usage=p.stream_usage,
            secret_headers=secret_headers.get(name, ()),
            anthropic_version=p.anthropic_version,
            responses=p.responses,
            api_version=p.api_version,
            project=p.project,
            location=p.location,
            region=p.region,
        )
        for name, p in config.providers.items()
    }
    prices = price_table(config.prices)
    models = {name: _route(name, entry, providers, prices) for name, entry in config.models.items()}
    policy = Policy(
        retries=config.routing.retries,
        cooldown_failures=config.routing.cooldown.failures,
        cooldown_seconds=config.routing.cooldown.seconds,
        max_fallback_cost_ratio=config.routing.max_fallback_cost_ratio,
    )
    return Generation(
        id=_generation_id(config, credentials, master_key, secret_headers),
        loaded_at=time.time(),
        source=source,
        server=config.server,
        state=state or config.state,
        master_key=master_key,
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        fallbacks=MappingProxyType({k: tuple(v) for k, v in config.fallbacks.items()}),
        policy=policy,
        prices=MappingProxyType(prices),
        watched_files=watched_files,
        otlp=otlp,
        alerts=alerts,
    )


def _route(name: str, entry: ModelConfig, providers: Mapping[str, Provider], prices: Mapping[str, Price]) -> ModelRoute:
    deps = entry.deployments
    deployments: list[Deployment] = []
    labels: dict[str, int] = {}
    for d in deps:
        label = f"{d.provider}/{d.model}"
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label}#{labels[label]}"
        deployments.append(
            Deployment(
                label=label,
                public_model=name,
                provider=providers[d.provider],
                model=d.model,
                weight=d.weight,
                priority=d.priority,
                price=prices.get(d.model),
                rpm=d.rpm,
                tpm=d.tpm,
                drop_params=d.drop_params,
            )
        )
    enabled = [d for d in deployments if d.weight > 0]
    tiers = tuple(tuple(d for d in enabled if d.priority == p) for p in sorted({d.priority for d in enabled}))
    price: Price | None = None
    if enabled and all(d.price is not None for d in enabled):
        priced = [d.price for d in enabled if d.price]
        writes = [p.cache_write for p in priced if p.cache_write is not None]
        writes_1h = [p.cache_write_1h for p in priced if p.cache_write_1h is not None]
        price = Price(  # the dearest of each rate: what a budget must be able to pay, whichever deployment answers
            input=max(p.input for p in priced),
            output=max(p.output for p in priced),
            cache_write=max(writes) if writes else None,
            cache_write_1h=max(writes_1h) if writes_1h else None,
        )
    cache_ttl = entry.cache.ttl if entry.cache else None
    return ModelRoute(name=name, deployments=tuple(deployments), tiers=tiers, price=price, cache_ttl=cache_ttl)


def _generation_id(
    config: Config,
    credentials: Mapping[str, tuple[Credential, ...]],
    master_key: Secret | None,
    secret_headers: Mapping[str, tuple[SecretHeader, ...]],
) -> str:
    digest = hashlib.sha256(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS))
    for provider in sorted(credentials):
        for cred in credentials[provider]:
            if cred.secret is not None:
                digest.update(f"{cred.label}={hashlib.sha256(cred.secret.reveal().encode()).hexdigest()}".encode())
    if master_key is not None:
        digest.update(hashlib.sha256(master_key.reveal().encode()).digest())
    for provider in sorted(secret_headers):
        for header in secret_headers[provider]:
            digest.update(f"{provider}/{header.name}={hashlib.sha256(header.value.reveal().encode()).hexdigest()}".encode())
    return digest.hexdigest()[:12]
