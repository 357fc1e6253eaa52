"""The keyring: loads a config into a generation (resolving every secret), holds the current one,
and owns the per-generation credential pools. The only writer of credential state.
"""

from __future__ import annotations

import hmac
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from faregate.config.load import base_url_problems, read_yaml, semantic_problems, validate
from faregate.config.schema import Config
from faregate.config.secretlike import credential_header
from faregate.config.state import resolve_state
from faregate.credentials import aws, minted
from faregate.credentials.pool import CredentialPool
from faregate.credentials.refs import RefError, expand_env, expand_header, is_reference, resolve_env_ref, resolve_key_file
from faregate.errors import ConfigError, Problem
from faregate.generation import AlertTarget, Credential, Generation, Otlp, SecretHeader, compile_generation
from faregate.routing import dead_fallbacks
from faregate.types import Secret


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one request captures at its start: a generation and the credential pools built for it."""

    generation: Generation
    pools: Mapping[str, CredentialPool]


def build(path: Path, env: Mapping[str, str] | None = None) -> tuple[Generation, list[Problem]]:
    """Read, validate and resolve a config into a generation. Raises ConfigError listing every error
    (schema errors alone stop early: without a valid shape nothing else can be checked)."""
    config = validate(read_yaml(path))
    problems = semantic_problems(config)
    base_dir = path.parent
    credentials: dict[str, tuple[Credential, ...]] = {}
    headers: dict[str, tuple[tuple[str, str], ...]] = {}
    secret_headers: dict[str, tuple[SecretHeader, ...]] = {}
    base_urls: dict[str, str | None] = {}
    # watched as given, not symlink-resolved: a secret volume swaps a link, and the watch follows it
    watched = [Path(os.path.abspath(path))]
    seen: dict[str, str] = {}
    for name, provider in config.providers.items():
        headers[name], secret_headers[name] = _headers(name, provider.headers, env, problems)
        keyed = any(credential_header(h) for h in provider.headers)  # a key travels in a header
        if provider.credentials and any(h.name == "authorization" for h in secret_headers[name]):
            problems.append(
                Problem(f"providers.{name}.headers", "authorization is replaced by each credential's key (drop one of the two)", "warning")
            )
        creds: list[Credential] = []
        for i, cred in enumerate(provider.credentials):
            cpath = f"providers.{name}.credentials[{i}]"
            cid = cred.id or ("default" if len(provider.credentials) == 1 else f"key{i}")
            if provider.type == "bedrock":  # a pair of AWS keys (and a session token)
                keys = aws.configured(name, cid, cred, env, cpath, problems)
                if keys is not None:
                    creds.append(keys)
                continue
            try:
                if cred.key_file is not None:
                    file = Path(cred.key_file)
                    watched.append(Path(os.path.abspath(file if file.is_absolute() else base_dir / file)))
                    kind = minted.KINDS.get(provider.type)  # a key file of its own shape (vertex: a service-account JSON)
                    read = kind.read_key if kind is not None and kind.read_key is not None else resolve_key_file
                    secret = read(cred.key_file, base_dir)
                else:
                    secret = resolve_env_ref(cred.key or "", env)
            except RefError as exc:
                field = "key_file" if cred.key_file is not None else "key"
                problems.append(Problem(f"{cpath}.{field}", str(exc)))
                continue
            first = seen.setdefault(secret.fingerprint, cpath)
            if first != cpath:
                problems.append(Problem(cpath, f"the same key as {first} (fingerprint {secret.fingerprint})", "warning"))
            state = minted.new_state(provider.type, secret)  # a token minted from it, in this generation (None: sent as it is)
            creds.append(Credential(provider=name, id=cid, secret=secret, weight=cred.weight, retiring=cred.retiring, minted=state))
        if not provider.credentials and provider.type == "bedrock":
            creds.append(aws.chain(name))  # the AWS SDKs' chain, minted below
        elif not provider.credentials:
            if provider.type != "mock" and not keyed:
                problems.append(Problem(f"providers.{name}", "no credentials: requests are sent without an API key", "warning"))
            creds.append(Credential(provider=name, id="none", secret=None))
        credentials[name] = tuple(creds)
        base_urls[name] = _expand(f"providers.{name}.base_url", provider.base_url, env, problems)
        problems.extend(base_url_problems(name, provider.type, base_urls[name]))
    master_key = _master_key(config, env, problems)
    redis_url = _expand("state.redis", config.state.redis, env, problems)
    otlp = _otlp(config, env, problems)
    alerts = _alerts(config, env, problems)
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    generation = compile_generation(
        config,
        source=Path(os.path.abspath(path)),
        credentials=credentials,
        headers=headers,
        base_urls=base_urls,
        master_key=master_key,
        watched_files=tuple(dict.fromkeys(watched)),
        state=resolve_state(config.state, base_dir).model_copy(update={"redis": redis_url}),
        secret_headers=secret_headers,
        otlp=otlp,
        alerts=alerts,
    )
    problems.extend(dead_fallbacks(generation))
    problems.extend(aws.prepare(generation))  # Bedrock's AWS chain: minted at load, never on a request
    return generation, problems


def _headers(
    name: str, raw: Mapping[str, str], env: Mapping[str, str] | None, problems: list[Problem]
) -> tuple[tuple[tuple[str, str], ...], tuple[SecretHeader, ...]]:
    """A provider's headers: (plain ones, ones holding references, which are secrets)."""
    plain: list[tuple[str, str]] = []
    secret: list[SecretHeader] = []
    for header, value in raw.items():
        path = f"providers.{name}.headers.{header}"
        if not _TOKEN.fullmatch(header):
            problems.append(Problem(path, "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"))
            continue
        try:
            expanded, parts = expand_header(header, value, env)
        except RefError as exc:
            problems.append(Problem(path, str(exc)))
            continue
        if isinstance(expanded, Secret):
            secret.append(SecretHeader(name=header.lower(), value=expanded, parts=parts))
        else:
            plain.append((header.lower(), expanded))
    return tuple(plain), tuple(secret)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: what a header name may hold


def _expand(path: str, value: str | None, env: Mapping[str, str] | None, problems: list[Problem]) -> str | None:
    if value is None:
        return None
    try:
        return expand_env(value, env)
    except RefError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _otlp(config: Config, env: Mapping[str, str] | None, problems: list[Problem]) -> Otlp | None:
    """``observability.otlp`` resolved: the endpoint may be a reference, header values may hold them
    (``Bearer ${NAME}``: a Secret, never logged); the same rules as a provider's headers."""
    otlp = config.observability.otlp
    if otlp is None:
        return None
    endpoint = _expand("observability.otlp.endpoint", otlp.endpoint, env, problems)
    headers: list[tuple[str, Secret | str]] = []
    for header, value in otlp.headers.items():
        path = f"observability.otlp.headers.{header}"
        if not _TOKEN.fullmatch(header):
            problems.append(Problem(path, "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"))
            continue
        try:
            headers.append((header.lower(), expand_header(header, value, env)[0]))
        except RefError as exc:
            problems.append(Problem(path, str(exc)))
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        problems.append(
            Problem("observability.otlp.endpoint", "not an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces)")
        )
        endpoint = None
    if endpoint is None:
        return None
    return Otlp(endpoint=endpoint, headers=tuple(headers), sample_ratio=otlp.sample_ratio, record_content=otlp.record_content)


def _alerts(config: Config, env: Mapping[str, str] | None, problems: list[Problem]) -> tuple[AlertTarget, ...]:
    """``alerts:`` with each webhook URL resolved; the URL is a Secret whatever was written (a Slack
    webhook URL is a credential), so it is scrubbed from every text and only its fingerprint is shown."""
    targets: list[AlertTarget] = []
    for i, alert in enumerate(config.alerts):
        path = f"alerts[{i}].url"
        try:
            url = resolve_env_ref(alert.url, env) if is_reference(alert.url) else Secret(alert.url)
        except RefError as exc:
            problems.append(Problem(path, str(exc)))
            continue
        if not url.reveal().startswith(("http://", "https://")):
            problems.append(Problem(path, "not an http:// or https:// URL"))
            continue
        if not is_reference(alert.url) and alert.format == "slack":
            problems.append(Problem(path, "a Slack webhook URL is a secret: write it as a reference (${SLACK_WEBHOOK_URL})", "warning"))
        targets.append(
            AlertTarget(
                url=url,
                events=frozenset(alert.events),
                format=alert.format,
                budget_thresholds=tuple(sorted(set(alert.budget_thresholds))),
                cooldown_minutes=alert.cooldown_minutes,
                min_interval=alert.min_interval,
            )
        )
    return tuple(targets)


def _master_key(config: Config, env: Mapping[str, str] | None, problems: list[Problem]) -> Secret | None:
    if config.server.master_key is None:
        return None
    try:
        return resolve_env_ref(config.server.master_key, env)
    except RefError as exc:
        problems.append(Problem("server.master_key", str(exc)))
        return None


class Keyring:
    """Holds the current snapshot. Swapping it is one assignment; a request reads ``current`` once."""

    def __init__(self, generation: Generation, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.current = self._snapshot(generation)
        self.listeners: list[Callable[[Snapshot], None]] = []  # told of every install (the token refresher)

    def _snapshot(self, generation: Generation) -> Snapshot:
        pools = {name: CredentialPool(p.credentials, p.strategy, self._rng) for name, p in generation.providers.items()}
        return Snapshot(generation=generation, pools=MappingProxyType(pools))

    def install(self, generation: Generation) -> Snapshot:
        previous = self.current.generation
        if previous is not generation:
            minted.carry_over(previous, generation)  # an unchanged key keeps its token until the new one is minted
        self.current = self._snapshot(generation)
        for listener in self.listeners:
            listener(self.current)
        return self.current

    def reload(self, path: Path | None = None) -> tuple[Snapshot, list[Problem]]:
        """Build a new generation from the config file; on any error the current one stays (ConfigError)."""
        generation, warnings = build(path or self.current.generation.source)
        return self.install(generation), warnings


def master_key_matches(generation: Generation, presented: str) -> bool:
    """Constant-time comparison of a presented key with the master key."""
    master = generation.master_key
    if master is None:
        return False
    return hmac.compare_digest(presented.encode(), master.reveal().encode())
