"""YAML -> validated ``Config``, with every problem named by its path.

Checks here need no secrets; resolving references is the keyring's job.
"""

from __future__ import annotations

import datetime
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from faregate.config.prices import price_table
from faregate.config.provider_checks import provider_problems
from faregate.config.schema import PROVIDER_TYPES, Config
from faregate.config.secretlike import looks_like_secret
from faregate.errors import ConfigError, Problem


def closest(name: str, candidates: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: typing.Iterable[str]) -> str:
    match = closest(name, candidates)
    return f" (did you mean '{match}'?)" if match else ""


def format_path(loc: typing.Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged by construct_mapping below
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:  # construct_mapping reports an unhashable key with its line
            continue
        if key in seen:
            shown = "(not shown: it looks like a secret)" if looks_like_secret(str(key)) else repr(key)
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


LITELLM_SECTIONS = ("model_list", "litellm_settings", "general_settings", "router_settings")


def read_yaml(path: Path) -> Any:
    """A faregate config file's mapping; a LiteLLM proxy config is refused with the command that converts it."""
    data = read_mapping(path)
    found = [name for name in LITELLM_SECTIONS if name in data]
    if found:
        raise ConfigError(
            [
                Problem(
                    "(top level)",
                    f"{path} is a LiteLLM proxy config ({', '.join(found)}), not a faregate config: convert it with "
                    f"`faregate import-litellm {path} -o faregate.yaml`, then check and serve faregate.yaml",
                )
            ]
        )
    return data


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (duplicate keys refused), with the problem named by line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", f"config file {path} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"config file {path} cannot be read: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", f"{path}: YAML syntax error{where}: {problem}")]) from None
    if data is None:
        raise ConfigError([Problem("", f"config file {path} is empty")])
    if not isinstance(data, dict):
        raise ConfigError([Problem("", f"config file {path} must hold a mapping at the top, not a {type(data).__name__}")])
    return data


def _model_at(loc: typing.Sequence[int | str]) -> type[BaseModel] | None:
    """The schema class that owns the last element of ``loc`` (to suggest valid keys)."""
    annotation: Any = Config
    for part in loc[:-1]:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        else:
            args = typing.get_args(annotation)
            if not args:
                return None
            annotation = args[-1]
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _as_written(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """A path as the user wrote it: a model in the short form (a bare list of deployments) has no
    ``deployments`` key, so ``models.NAME.deployments[0]`` is shown as ``models.NAME[0]``."""
    if len(loc) >= 3 and loc[0] == "models" and loc[2] == "deployments" and isinstance(data, dict):
        models = data.get("models")
        if isinstance(models, dict) and isinstance(models.get(loc[1]), list):
            return (*loc[:2], *loc[3:])
    return loc


def _pydantic_problems(exc: ValidationError, data: Any = None) -> list[Problem]:
    """Each error with its path and what was expected; an input value only where it cannot be a secret
    (pydantic's own rendering always shows the input, so only ``msg`` and the path are used)."""
    problems = []
    for err in exc.errors():
        schema_loc = tuple(_shown_part(part) for part in err["loc"])
        loc = _as_written(schema_loc, data)
        path = format_path(loc)
        kind = err["type"]
        got = _got(loc, err["input"])
        if kind == "extra_forbidden":
            owner = _model_at(schema_loc)
            hint = did_you_mean(str(loc[-1]), owner.model_fields) if owner else ""
            message = f"unknown key '{loc[-1]}'{hint}"
            path = format_path(loc[:-1]) or "(top level)"
        elif kind == "literal_error" and loc and loc[-1] == "type":
            hint = did_you_mean(err["input"], PROVIDER_TYPES) if isinstance(err["input"], str) else ""
            shown = _shown(loc, err["input"])
            named = f" {shown}" if shown is not None else got
            message = f"unknown provider type{named}{hint}; supported: {', '.join(PROVIDER_TYPES)}"
        elif kind == "literal_error" and isinstance(err["input"], str):
            message = f"{err['msg']}{got}{did_you_mean(err['input'], _literal_choices(loc))}"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "value_error":  # a schema validator's own sentence, without pydantic's prefix
            message = err["msg"].removeprefix("Value error, ")
        else:
            message = err["msg"] + got
        value = err["input"]
        if isinstance(value, str) and len(value) >= 6 and value in message and _shown(loc, value) is None:
            message = message.replace(value, "(the value, not shown)")  # a validator's own sentence that quotes it
        problems.append(Problem(path, message))
    return problems


_HIDDEN_KEY = "(a key not shown: it looks like a secret)"


def _shown_part(part: int | str) -> int | str:
    """A path element as printed: a mapping key that looks like a secret is not."""
    return _HIDDEN_KEY if isinstance(part, str) and looks_like_secret(part) else part


def _shown(loc: typing.Sequence[int | str], value: Any) -> str | None:
    """The input's repr when it cannot be a secret: a short scalar outside every secret-holding field."""
    if _is_secret_field(loc):
        return None
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= 64 and not looks_like_secret(value):
        return repr(value)
    return None


def _got(loc: typing.Sequence[int | str], value: Any) -> str:
    """`` (got VALUE)``, or only its kind when it may be a secret (nothing for a mapping or list)."""
    if isinstance(value, dict | list):
        return ""
    shown = _shown(loc, value)
    if shown is not None:
        return f" (got {shown})"
    kind = _KINDS.get(type(value), f"a value of type {type(value).__name__}")
    return f" (got {kind}; not shown, as it may be a secret)"


_KINDS = {str: "a string", int: "a number", float: "a number", bool: "a boolean", datetime.date: "a date", datetime.datetime: "a date"}


def _literal_choices(loc: typing.Sequence[int | str]) -> tuple[str, ...]:
    """The values the ``Literal`` field at ``loc`` accepts (to suggest the closest one)."""
    owner = _model_at(loc)
    field = owner.model_fields.get(str(loc[-1])) if owner else None
    if field is None:
        return ()
    annotation = _unwrap(field.annotation)
    if typing.get_origin(annotation) is not typing.Literal:
        return ()
    return tuple(str(a) for a in typing.get_args(annotation))


_SECRET_FIELDS = frozenset({"key", "master_key", "base_url", "database", "redis", "credentials", "headers", "url", _HIDDEN_KEY})


def _is_secret_field(loc: typing.Sequence[int | str]) -> bool:
    """Anywhere a secret, or a URL with a password in it, may be written: a credential, a header,
    the master key, base_url, the state URLs (and anything inside them)."""
    return any(part in _SECRET_FIELDS for part in loc)


def validate(data: Any) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, data)) from None


def semantic_problems(config: Config) -> list[Problem]:
    """Cross-references and policy warnings that the schema alone cannot express."""
    problems: list[Problem] = []
    server = config.server
    prices = price_table(config.prices)
    if server.auth == "key" and not server.master_key:
        problems.append(
            Problem(
                "server.master_key",
                "no master key: set one (e.g. ${FAREGATE_MASTER_KEY}) or write `auth: none` to run without auth on loopback only",
            )
        )
    if config.state.redis and not config.state.redis.startswith(("redis://", "rediss://", "unix://", "${", "os.environ/")):
        problems.append(Problem("state.redis", "must be a redis://, rediss:// or unix:// URL, or a reference to one"))
    for name, provider in config.providers.items():
        path = f"providers.{name}"
        problems.extend(provider_problems(name, provider))
        if provider.type == "mock" and provider.credentials:
            problems.append(Problem(f"{path}.credentials", "the mock provider takes no credentials", "warning"))
        ids: set[str] = set()
        for i, cred in enumerate(provider.credentials):
            cpath = f"{path}.credentials[{i}]"
            aws = (cred.access_key_id, cred.secret_access_key, cred.session_token)
            if provider.type == "bedrock":
                if cred.key is not None or cred.key_file is not None or None in aws[:2]:
                    problems.append(Problem(cpath, "give access_key_id and secret_access_key (and session_token for temporary keys)"))
            elif aws != (None, None, None):
                problems.append(Problem(cpath, "access_key_id, secret_access_key, session_token: only valid for providers of type bedrock"))
            elif (cred.key is None) == (cred.key_file is None):
                problems.append(Problem(cpath, "give exactly one of key (an env reference) or key_file"))
            cid = cred.id or ("default" if len(provider.credentials) == 1 else f"key{i}")
            if cid in ids:
                problems.append(Problem(f"{cpath}.id", f"duplicate credential id '{cid}'"))
            ids.add(cid)
    for model, entry in config.models.items():
        deployments = entry.deployments
        if not deployments:
            problems.append(Problem(f"models.{model}", "has no deployments"))
        for i, dep in enumerate(deployments):
            dpath = f"models.{model}[{i}]"
            if dep.provider not in config.providers:
                problems.append(
                    Problem(f"{dpath}.provider", f"unknown provider '{dep.provider}'{did_you_mean(dep.provider, config.providers)}")
                )
            if dep.weight == 0:
                problems.append(Problem(f"{dpath}.weight", "weight 0 disables this deployment (the default is 1)", "warning"))
            kind = config.providers[dep.provider].type if dep.provider in config.providers else None
            if kind is not None and kind != "mock" and dep.model not in prices:
                problems.append(
                    Problem(
                        f"{dpath}.model",
                        f"'{dep.model}' is unpriced: its requests are counted but their cost is unknown (never $0), "
                        "budgeted keys cannot use it and no fallback to or from it passes the price rule; add it to prices:",
                        "warning",
                    )
                )
        if deployments and all(d.weight == 0 for d in deployments):
            problems.append(Problem(f"models.{model}", "no enabled deployment (every weight is 0): every request will get 503", "warning"))
    problems.extend(per_worker_limits(config, config.server.workers))
    for model, targets in config.fallbacks.items():
        if model not in config.models:
            problems.append(Problem(f"fallbacks.{model}", f"unknown model '{model}'{did_you_mean(model, config.models)}"))
        for i, target in enumerate(targets):
            if target not in config.models:
                problems.append(Problem(f"fallbacks.{model}[{i}]", f"unknown model '{target}'{did_you_mean(target, config.models)}"))
            elif target == model:
                problems.append(Problem(f"fallbacks.{model}[{i}]", "a model cannot fall back to itself"))
    problems.extend(_fallback_cycles(config.fallbacks))
    return problems


def base_url_problems(name: str, kind: str, base_url: str | None) -> list[Problem]:
    """A provider's base_url once its references are expanded (never echoed: it may hold a secret):
    an http(s) URL for the HTTP transports, and for anthropic the root without /v1, which the
    transport adds (the anthropic SDKs' convention)."""
    if base_url is None or kind == "mock":
        return []
    path = f"providers.{name}.base_url"
    if not base_url.startswith(("http://", "https://")):
        return [Problem(path, "must be an http:// or https:// URL")]
    if kind == "anthropic" and base_url.rstrip("/").endswith("/v1"):
        return [Problem(path, "leave out the /v1: faregate adds /v1/messages itself, as the anthropic SDK does")]
    if kind == "gemini" and base_url.rstrip("/").endswith(("/v1beta", "/v1")):
        return [Problem(path, "the host only (https://generativelanguage.googleapis.com): faregate adds /v1beta/models/... itself")]
    if kind == "azure" and "/openai" in base_url:
        return [Problem(path, "the resource's endpoint only (https://RESOURCE.openai.azure.com): faregate adds /openai/... itself")]
    return []


def per_worker_limits(config: Config, workers: int) -> list[Problem]:
    """Deployment rpm/tpm that, without state.redis, each of ``workers`` processes counts on its own
    (``check`` uses server.workers; ``serve --workers N`` asks again with N)."""
    if config.state.redis is not None or workers <= 1:
        return []
    return [
        Problem(
            f"models.{model}[{i}]",
            f"without state.redis, rpm/tpm are counted per worker process: with {workers} workers "
            f"up to {workers}x the limit can pass (set state.redis for one exact count)",
            "warning",
        )
        for model, entry in config.models.items()
        for i, dep in enumerate(entry.deployments)
        if dep.rpm is not None or dep.tpm is not None
    ]


def _fallback_cycles(fallbacks: dict[str, list[str]]) -> list[Problem]:
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()

    def walk(node: str, trail: list[str]) -> None:
        for nxt in fallbacks.get(node, []):
            if nxt in trail:
                cycle = [*trail[trail.index(nxt) :], nxt]
                key = frozenset(cycle)
                if len(cycle) > 2 and key not in reported:
                    reported.add(key)
                    problems.append(
                        Problem(
                            f"fallbacks.{cycle[0]}",
                            "fallback cycle: "
                            + " -> ".join(cycle)
                            + " (only the requested model's own fallbacks are followed, so the loop is never walked)",
                            "warning",
                        )
                    )
            elif len(trail) < 50:
                walk(nxt, [*trail, nxt])

    for start in fallbacks:
        walk(start, [start])
    return problems


def load_config(path: Path) -> tuple[Config, list[Problem]]:
    """Read and validate; raise ConfigError with every error, else return the config and its warnings."""
    config = validate(read_yaml(path))
    problems = semantic_problems(config)
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return config, problems
