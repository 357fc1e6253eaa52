"""A LiteLLM proxy ``config.yaml`` -> the equivalent faregate config (``faregate import-litellm``).

Pure but for reading the file: ``convert`` takes the parsed mapping and returns the faregate config
as data, plus two lists the command prints: the literal secrets that became references (with the
environment variable to set, never the value) and every setting without an equivalent, with what
to do instead. Nothing is dropped silently: each key of the LiteLLM file is either converted or
named in ``unconverted``; the YAML written carries both lists as comments.

Providers: every deployment's account, i.e. (provider type, base URL, credential references, API
version, project, region, timeout...), is one faregate provider with a readable name, so deployments
sharing an account share a provider (and its credential pool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from faregate.config import litellm_settings
from faregate.config.litellm_settings import Note
from faregate.config.load import read_mapping
from faregate.config.secretlike import credential_header, looks_like_secret

REF = re.compile(r"^(os\.environ/|\$\{)[A-Za-z_][A-Za-z0-9_]*\}?$")
AZURE_API_VERSION = "2024-10-21"
MASTER_KEY_ENV = "FAREGATE_MASTER_KEY"
# LiteLLM provider prefix -> (faregate type, default base URL); None: the type's own default
OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": None,
    "text-completion-openai": None,
    "custom_openai": None,
    "openai_like": None,
    "hosted_vllm": None,
    "vllm": None,
    "litellm_proxy": None,
    "azure_ai": None,
    "ollama": "http://localhost:11434/v1",
    "ollama_chat": "http://localhost:11434/v1",
    "lm_studio": "http://localhost:1234/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "cerebras": "https://api.cerebras.ai/v1",
    "nvidia_nim": "https://integrate.api.nvidia.com/v1",
}
NATIVE = {
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex_ai": "vertex",
    "vertex_ai_beta": "vertex",
    "bedrock": "bedrock",
}
# the environment variable LiteLLM reads for a provider's key when api_key is not written
DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "text-completion-openai": "OPENAI_API_KEY",
    "azure": "AZURE_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "nvidia_nim": "NVIDIA_NIM_API_KEY",
}
# litellm_params keys read below; any other is named as not converted
PARAMS = {"model", "api_base", "api_key", "api_version", "rpm", "tpm", "weight", "order", "timeout", "drop_params", "organization"}
PARAMS |= {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name", "extra_headers", "headers"}
PARAMS |= {"vertex_project", "vertex_location", "vertex_credentials", "input_cost_per_token", "output_cost_per_token"}
PARAMS |= {"cache_read_input_token_cost", "cache_creation_input_token_cost"}
PRICE_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
}
INFO_ONLY = {"id", "mode", "base_model", "max_tokens", "max_input_tokens", "max_output_tokens", "description", "metadata"}
STRATEGIES_EQUIVALENT = ("simple-shuffle", None)


@dataclass
class Imported:
    config: dict[str, Any]
    secrets: list[Note] = field(default_factory=list)  # literal secrets now references: the variable to set
    unconverted: list[Note] = field(default_factory=list)  # settings without an equivalent, and what to do

    def yaml(self, source: str) -> str:
        lines = [f"# faregate config imported from the LiteLLM config {source} (faregate import-litellm)"]
        if self.secrets:
            lines.append("# Secrets written literally there are references here; set these environment variables:")
            lines.extend(f"#   {note}" for note in self.secrets)
        if self.unconverted:
            lines.append("# Not converted (no equivalent in faregate), and what to do instead:")
            lines.extend(f"#   {note}" for note in self.unconverted)
        body = yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, width=120)
        return "\n".join(lines) + "\n" + body


def import_file(path: Path) -> Imported:
    return convert(read_mapping(path))


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and bool(REF.match(value.strip()))


def _env_name(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "provider"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class _Converter:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.out = Imported(config={})
        self.providers: dict[str, dict[str, Any]] = {}  # name -> provider config
        self.accounts: dict[tuple[Any, ...], str] = {}  # account key -> provider name
        self.secret_names: dict[tuple[str, str], str] = {}  # (literal's role, value) -> env name (values never leave)
        self.models: dict[str, list[dict[str, Any]]] = {}
        self.prices: dict[str, dict[str, float]] = {}
        self.data_drop_params = False  # litellm_settings.drop_params: on every deployment
        self.referenced = set(_references(data))  # variables the file already names: never reused for a literal

    def skip(self, path: str, message: str) -> None:
        self.out.unconverted.append(Note(path, message))

    def secret(self, path: str, value: Any, env: str, what: str) -> str:
        """A reference for a secret: kept when it is one, else a new ``${ENV}`` (said on stderr)."""
        text = str(value).strip()
        if _is_ref(text):
            return text
        key = (env, text)
        name = self.secret_names.get(key)
        if name is None:
            name = env
            taken = set(self.secret_names.values()) | self.referenced
            i = 2
            while name in taken:
                name, i = f"{env}_{i}", i + 1
            self.secret_names[key] = name
            self.out.secrets.append(Note(path, f"was a literal {what}: set {name} to it (the value is not copied)"))
        return "${" + name + "}"

    # -- model_list -------------------------------------------------------------------

    def model_list(self, entries: Any) -> None:
        if not isinstance(entries, list):
            self.skip("model_list", "is not a list: nothing converted")
            return
        for i, entry in enumerate(entries):
            path = f"model_list[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
                self.skip(path, "has no model_name: not converted")
                continue
            self.deployment(path, entry)

    def deployment(self, path: str, entry: dict[str, Any]) -> None:
        public = entry["model_name"]
        params: dict[str, Any] = entry["litellm_params"] if isinstance(entry.get("litellm_params"), dict) else {}
        info: dict[str, Any] = entry["model_info"] if isinstance(entry.get("model_info"), dict) else {}
        for key in entry:
            if key not in ("model_name", "litellm_params", "model_info"):
                self.skip(f"{path}.{key}", "not a model_list field faregate knows; not converted")
        if "*" in public:
            self.skip(f"{path}.model_name", f"'{public}' is a wildcard: faregate serves named models only; list each model by name")
            return
        target = params.get("model")
        if not isinstance(target, str) or not target:
            self.skip(f"{path}.litellm_params.model", "missing: this deployment is not converted")
            return
        prefix, _, upstream = target.partition("/")
        if not upstream:
            prefix, upstream = _infer(target), target
        ppath = f"{path}.litellm_params"
        provider = self.provider(ppath, prefix, upstream, params)
        if provider is None:
            return
        if prefix == "bedrock" and upstream.startswith(("converse/", "invoke/")):
            upstream = upstream.partition("/")[2]
        dep: dict[str, Any] = {"provider": provider, "model": upstream}
        weight = _number(params.get("weight"))
        if weight is not None:
            dep["weight"] = max(round(weight), 0)
            if weight != round(weight):
                self.skip(f"{ppath}.weight", f"{weight:g} rounded to {round(weight)}: faregate weights are whole numbers")
        order = _number(params.get("order"))
        if order is not None:
            dep["priority"] = int(order)
        for limit in ("rpm", "tpm"):
            value = _number(params.get(limit))
            if value is not None and value >= 1:
                dep[limit] = int(value)
        drop = params.get("drop_params")
        if (drop if isinstance(drop, bool) else self.data_drop_params) is True:
            dep["drop_params"] = True
        for key in params:
            if key not in PARAMS or (key == "api_version" and prefix != "azure") or (key == "api_key" and prefix.startswith("vertex")):
                self.skip(f"{ppath}.{key}", _param_advice(key))
        self.price(path, upstream, {**params, **info})
        for key in info:
            if key in INFO_ONLY or key.startswith("supports_"):
                self.skip(f"{path}.model_info.{key}", "informational in LiteLLM; faregate needs no such field (not converted)")
            elif key not in PRICE_FIELDS:
                self.skip(f"{path}.model_info.{key}", "not converted (faregate keeps no per-deployment info beyond prices)")
        self.models.setdefault(public, []).append(dep)

    def price(self, path: str, upstream: str, fields: dict[str, Any]) -> None:
        price: dict[str, float] = {}
        for name, ours in PRICE_FIELDS.items():
            value = _number(fields.get(name))
            if value is not None:
                price[ours] = round(value * 1_000_000, 6)  # USD per token -> per million tokens
        if not price:
            return
        if "input" not in price or "output" not in price:
            self.skip(f"{path}.model_info", "a price needs both input_cost_per_token and output_cost_per_token; not converted")
            return
        known = self.prices.get(upstream)
        if known is not None and known != price:
            self.skip(
                f"{path}.model_info", f"another price for '{upstream}' was given first and is kept (faregate prices by upstream model)"
            )
            return
        self.prices[upstream] = price

    def provider(self, path: str, prefix: str, upstream: str, params: dict[str, Any]) -> str | None:
        """The faregate provider (its name) for this deployment's account, created on first use."""
        api_base = params.get("api_base")
        kind = NATIVE.get(prefix) or ("openai" if prefix in OPENAI_COMPATIBLE else None)
        if kind is None and prefix == upstream:
            self.skip(f"{path}.model", f"'{upstream}' names no provider: write it as provider/model (openai/..., anthropic/...)")
            return None
        if kind is None:
            self.skip(f"{path}.model", f"provider '{prefix}' has no faregate provider type; serve it behind an OpenAI-compatible server")
            return None
        conf: dict[str, Any] = {"type": kind}
        base = api_base if isinstance(api_base, str) and api_base else OPENAI_COMPATIBLE.get(prefix)
        if kind == "openai" and prefix in ("ollama", "ollama_chat") and isinstance(base, str) and not base.rstrip("/").endswith("/v1"):
            base = base.rstrip("/") + "/v1"  # Ollama's OpenAI-compatible API
        if kind == "anthropic" and isinstance(base, str):
            base = base.rstrip("/").removesuffix("/v1")
        if kind == "azure":
            base = base or "os.environ/AZURE_API_BASE"
            if isinstance(base, str) and not _is_ref(base):
                split = urlsplit(base)
                base = f"{split.scheme}://{split.netloc}"  # faregate adds /openai/... itself
            version = params.get("api_version")
            if not isinstance(version, str) or not re.fullmatch(r"v1|[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?", version):
                self.skip(f"{path}.api_version", f"missing or not a literal date: api_version {AZURE_API_VERSION} is written; check it")
                version = AZURE_API_VERSION
            conf["api_version"] = version
        if base:
            conf["base_url"] = base
        timeout = _number(params.get("timeout"))
        if timeout is not None and timeout > 0:
            conf["timeout"] = timeout
        headers: dict[str, Any] = {}
        for section in ("extra_headers", "headers"):
            given = params.get(section)
            if isinstance(given, dict):
                headers.update(given)
            elif given is not None:
                self.skip(f"{path}.{section}", "not a mapping of header names to values: not converted")
        if params.get("organization"):
            headers["OpenAI-Organization"] = params["organization"]
        if headers:
            conf["headers"] = {str(k): self.header(f"{path}.headers.{k}", str(k), str(v), prefix) for k, v in headers.items()}
        name_hint = "vllm" if prefix in ("hosted_vllm", "vllm") else _slug(prefix)
        credentials = self.credentials(path, kind, prefix, params, conf)
        if kind == "vertex":
            self.vertex(path, params, conf)
        if kind == "bedrock":
            region = params.get("aws_region_name")
            if not isinstance(region, str) or _is_ref(region):
                self.skip(f"{path}.aws_region_name", "missing or a reference: region us-east-1 is written; set the deployment's region")
                region = "us-east-1"
            conf["region"] = region
        if credentials:
            conf["credentials"] = credentials
        account = (kind, repr(sorted(conf.items())), repr(credentials))
        name = self.accounts.get(account)
        if name is None:
            name = self._name(name_hint, conf)
            self.accounts[account] = name
            self.providers[name] = conf
        return name

    def header(self, path: str, name: str, value: str, prefix: str) -> str:
        """A header value: a literal that is (or may be) a secret becomes a reference, as a literal key does."""
        if _is_ref(value) or not (credential_header(name) or looks_like_secret(value)):
            return value
        return self.secret(path, value, _env_name(_slug(prefix), name), f"value of header {name}")

    def _name(self, hint: str, conf: dict[str, Any]) -> str:
        """The prefix's name (``openai``, ``vllm``); Azure's resource, or the host, when that is taken."""
        host = _host(conf)
        if hint not in self.providers and not (conf["type"] == "azure" and host):
            return hint
        candidate = f"{hint}-{_slug(host)}" if host else hint
        i = 2
        name = candidate
        while name in self.providers:
            name, i = f"{candidate}-{i}", i + 1
        return name

    def credentials(self, path: str, kind: str, prefix: str, params: dict[str, Any], conf: dict[str, Any]) -> list[dict[str, Any]]:
        label = _slug(prefix if prefix not in ("hosted_vllm", "vllm") else "vllm")
        if kind == "bedrock":
            aws = {k: params.get(f"aws_{k}") for k in ("access_key_id", "secret_access_key", "session_token")}
            if aws["access_key_id"] is None and aws["secret_access_key"] is None:
                return []  # the AWS SDKs' chain, as LiteLLM would use
            cred = {k: self.secret(f"{path}.aws_{k}", v, _env_name(label, "aws", k), f"aws_{k}") for k, v in aws.items() if v is not None}
            return [cred]
        if kind == "vertex":
            return []
        key = params.get("api_key")
        if key is None:
            env = DEFAULT_KEY_ENV.get(prefix)
            if env is None or (prefix == "openai" and params.get("api_base")):
                return []  # a local or custom server: no key, as LiteLLM sent none
            return [{"key": f"os.environ/{env}"}]
        return [{"key": self.secret(f"{path}.api_key", key, _env_name(label, _host(conf), "api_key"), "api_key")}]

    def vertex(self, path: str, params: dict[str, Any], conf: dict[str, Any]) -> None:
        for ours, theirs in (("project", "vertex_project"), ("location", "vertex_location")):
            value = params.get(theirs)
            if isinstance(value, str) and not _is_ref(value):
                conf[ours] = value
            else:
                self.skip(f"{path}.{theirs}", f"missing or a reference: write providers.<name>.{ours} literally (required for vertex)")
        creds = params.get("vertex_credentials")
        if isinstance(creds, str) and not _is_ref(creds) and not creds.lstrip().startswith("{"):
            conf["credentials"] = [{"key_file": creds}]
        else:
            self.skip(f"{path}.vertex_credentials", "not a file path: write credentials: [{key_file: PATH}] of a service-account key file")

    # -- settings ---------------------------------------------------------------------

    def settings(self) -> None:
        general = self.section("general_settings")
        lite = self.section("litellm_settings")
        self.data_drop_params = lite.get("drop_params") is True
        for key in self.data:
            if key not in ("model_list", "router_settings", "general_settings", "litellm_settings", "environment_variables"):
                self.skip(key, "not a LiteLLM config section faregate knows; not converted")
        env = self.data.get("environment_variables")
        if isinstance(env, dict):
            for name in env:
                self.skip(f"environment_variables.{name}", "faregate does not set environment variables: set it in faregate's environment")
        self.general(general)

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.skip(name, "is not a mapping: not converted")
            return {}
        return value

    def general(self, general: dict[str, Any]) -> None:
        server: dict[str, Any] = {}
        key = general.get("master_key")
        if key is not None:
            server["master_key"] = self.secret("general_settings.master_key", key, MASTER_KEY_ENV, "master key")
        else:
            server["master_key"] = "${" + MASTER_KEY_ENV + "}"
            self.out.secrets.append(Note("general_settings.master_key", f"not set (LiteLLM ran without auth): set {MASTER_KEY_ENV}"))
        self.out.config["server"] = server
        url = general.get("database_url")
        if isinstance(url, str) and not _is_ref(url):
            split = urlsplit(url.replace("postgres://", "postgresql://", 1))
            if split.password:
                netloc = split.netloc.rsplit("@", 1)
                safe = split._replace(netloc=f"{split.username}@{netloc[1]}").geturl()
                self.out.secrets.append(
                    Note("general_settings.database_url", "held a password: set PGPASSWORD to it (removed from the URL)")
                )
            else:
                safe = split.geturl()
            self.out.config["state"] = {"database": safe}
            self.skip("general_settings.database_url", "faregate makes its own tables there; LiteLLM's keys, teams and spend are not moved")
        elif url is not None:
            self.skip("general_settings.database_url", "a reference: state.database takes the URL itself (password in PGPASSWORD)")
        for name in general:
            if name not in ("master_key", "database_url"):
                self.skip(f"general_settings.{name}", _general_advice(name))


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [name for item in value.values() for name in _references(item)]
    if isinstance(value, list):
        return [name for item in value for name in _references(item)]
    if _is_ref(value):
        return [value.strip().removeprefix("os.environ/").removeprefix("${").removesuffix("}")]
    return []


def _host(conf: dict[str, Any]) -> str:
    base = conf.get("base_url")
    host = urlsplit(base).hostname if isinstance(base, str) and not _is_ref(base) else None
    return host.split(".")[0] if host else ""


def _infer(model: str) -> str:
    """LiteLLM's provider for a model written without a prefix (the common ones)."""
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "dall-e", "whisper", "tts-", "omni-moderation")):
        return "openai"
    if model.startswith("claude"):
        return "anthropic"
    return model


def _param_advice(key: str) -> str:
    if key in ("temperature", "max_tokens", "top_p", "stop", "seed", "max_completion_tokens", "presence_penalty", "frequency_penalty"):
        return "a default request parameter: faregate sends what the client sends; set it in the client"
    if key in ("stream_timeout", "max_retries"):
        return "per-deployment: faregate has providers.<name>.timeout and routing.retries"
    return "no equivalent in faregate; not converted"


def _general_advice(key: str) -> str:
    advice = {
        "alerting": "write alerts: [{url: ${SLACK_WEBHOOK_URL}}] (faregate's webhook alerts)",
        "store_model_in_db": "faregate's models live in the config file (reload with faregate reload)",
        "disable_spend_logs": "faregate always writes the spend log (GET /admin/spend/logs)",
        "max_parallel_requests": "set max_parallel on virtual keys or teams",
        "proxy_batch_write_at": "faregate writes spend rows every 0.5 s",
    }
    return advice.get(key, "no equivalent in faregate; not converted")


def convert(data: dict[str, Any]) -> Imported:
    """The faregate config for a parsed LiteLLM config, with what was not converted and why."""
    conv = _Converter(data)
    conv.settings()
    lite, router = conv.section("litellm_settings"), conv.section("router_settings")
    conv.model_list(data.get("model_list", []))
    litellm_settings.apply(conv, lite, router)
    return conv.out
