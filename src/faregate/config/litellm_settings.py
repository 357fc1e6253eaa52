"""The second half of ``faregate import-litellm``: ``router_settings`` and ``litellm_settings``
(fallbacks, retries, cooldowns, routing strategy, aliases, Redis, the response cache), then the
faregate config assembled from everything ``faregate.config.litellm`` collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faregate.config.litellm import _Converter

DEFAULT_CACHE_TTL = 600.0
MAX_RETRIES = 20
REDIS_ENV = "FAREGATE_REDIS_URL"
STRATEGY_ADVICE = {
    "least-busy": "faregate picks by priority tier, then weighted at random: set weights",
    "usage-based-routing": "faregate skips a deployment at its own rpm/tpm (kept from litellm_params): weights share the rest",
    "usage-based-routing-v2": "faregate skips a deployment at its own rpm/tpm (kept from litellm_params): weights share the rest",
    "latency-based-routing": "faregate has no latency routing: put the fastest deployments in the first priority tier",
    "cost-based-routing": "faregate has no cost routing: give the cheapest deployments the lowest priority (tried first)",
}
ROUTER_HANDLED = {"routing_strategy", "num_retries", "allowed_fails", "cooldown_time", "fallbacks", "model_group_alias"}
ROUTER_HANDLED |= {"redis_host", "redis_port", "redis_password", "redis_url", "context_window_fallbacks", "content_policy_fallbacks"}
LITE_HANDLED = {"fallbacks", "drop_params", "num_retries", "cache", "cache_params", "request_timeout", "context_window_fallbacks"}
LITE_HANDLED |= {"content_policy_fallbacks", "default_fallbacks"}
LITE_ADVICE = {
    "success_callback": "faregate has /metrics (Prometheus), JSON access logs and OpenTelemetry (observability.otlp)",
    "failure_callback": "faregate has /metrics (Prometheus), JSON access logs and OpenTelemetry (observability.otlp)",
    "callbacks": "faregate has /metrics (Prometheus), JSON access logs and OpenTelemetry (observability.otlp)",
    "set_verbose": "use serve --log-level debug",
    "json_logs": "faregate's access log is always JSON lines",
    "turn_off_message_logging": "faregate never logs prompts or completions",
    "max_budget": "set budget_usd on virtual keys or teams (/admin/keys, /admin/teams)",
    "budget_duration": "set budget_period on virtual keys or teams",
    "request_timeout": "written as each provider's timeout",
}


@dataclass(frozen=True)
class Note:
    path: str  # where in the LiteLLM file
    message: str  # what happened, or what to do instead; never a secret value

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def apply(conv: _Converter, lite: dict[str, Any], router: dict[str, Any]) -> None:
    """Convert both sections into ``conv`` and assemble ``conv.out.config``."""
    config = conv.out.config
    _timeouts(conv, lite)
    routing = _routing(conv, lite, router)
    _aliases(conv, router)
    fallbacks = _fallbacks(conv, lite, router)
    redis = _redis(conv, router, lite)
    ttl = _cache(conv, lite)
    for name in router:
        if name not in ROUTER_HANDLED:
            conv.skip(f"router_settings.{name}", "no equivalent in faregate; not converted")
    for name in lite:
        if name not in LITE_HANDLED:
            conv.skip(f"litellm_settings.{name}", LITE_ADVICE.get(name, "no equivalent in faregate; not converted"))
    if redis is not None:
        config.setdefault("state", {})["redis"] = redis
    config["providers"] = conv.providers
    config["models"] = {name: ({"deployments": deps, "cache": {"ttl": ttl}} if ttl else deps) for name, deps in conv.models.items()}
    if fallbacks:
        config["fallbacks"] = fallbacks
    if routing:
        config["routing"] = routing
    if conv.prices:
        config["prices"] = conv.prices


def _timeouts(conv: _Converter, lite: dict[str, Any]) -> None:
    timeout = lite.get("request_timeout")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        for provider in conv.providers.values():
            provider.setdefault("timeout", float(timeout))


def _routing(conv: _Converter, lite: dict[str, Any], router: dict[str, Any]) -> dict[str, Any]:
    routing: dict[str, Any] = {}
    retries = router.get("num_retries", lite.get("num_retries"))
    if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
        routing["retries"] = min(retries, MAX_RETRIES)
        section = "router_settings" if "num_retries" in router else "litellm_settings"
        conv.skip(
            f"{section}.num_retries", "written as routing.retries: faregate retries on another deployment of the model, never the same one"
        )
    cooldown: dict[str, Any] = {}
    fails = router.get("allowed_fails")
    if isinstance(fails, int) and not isinstance(fails, bool) and fails >= 0:
        cooldown["failures"] = fails + 1  # LiteLLM cools a deployment down after more than allowed_fails
    seconds = router.get("cooldown_time")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        cooldown["seconds"] = float(seconds)
    if cooldown:
        routing["cooldown"] = cooldown
    strategy = router.get("routing_strategy")
    if strategy not in (None, "simple-shuffle"):
        conv.skip(
            "router_settings.routing_strategy",
            f"'{strategy}': {STRATEGY_ADVICE.get(str(strategy), 'faregate routes by priority, then weight')}",
        )
    return routing


def _aliases(conv: _Converter, router: dict[str, Any]) -> None:
    aliases = router.get("model_group_alias")
    if not isinstance(aliases, dict):
        return
    for alias, target in aliases.items():
        name = target.get("model") if isinstance(target, dict) else target
        if not isinstance(name, str) or name not in conv.models or alias in conv.models:
            conv.skip(f"router_settings.model_group_alias.{alias}", "names no model of model_list (or the alias is one): not converted")
            continue
        conv.models[str(alias)] = [dict(dep) for dep in conv.models[name]]  # the same deployments under a second public name
        if isinstance(target, dict) and target.get("hidden"):
            conv.skip(f"router_settings.model_group_alias.{alias}", "hidden: faregate lists every public model in /v1/models")


def _fallbacks(conv: _Converter, lite: dict[str, Any], router: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section, values in (("router_settings", router), ("litellm_settings", lite)):
        for kind in ("context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks"):
            if values.get(kind):
                conv.skip(
                    f"{section}.{kind}",
                    "faregate's fallbacks are tried when every deployment failed (not on a context-window or content-policy "
                    "error, which is the client's and returned to it): add a fallbacks entry if that is what you want",
                )
        given = values.get("fallbacks")
        if given is None:
            continue
        if isinstance(given, dict):
            given = [given]
        if not isinstance(given, list):
            conv.skip(f"{section}.fallbacks", "is not a list of {model: [fallbacks]}: not converted")
            continue
        for i, item in enumerate(given):
            if not isinstance(item, dict):
                conv.skip(f"{section}.fallbacks[{i}]", "is not {model: [fallbacks]}: not converted")
                continue
            for model, targets in item.items():
                _one_fallback(conv, f"{section}.fallbacks[{i}].{model}", str(model), targets, out)
    if out:
        conv.skip(
            "fallbacks",
            "faregate refuses a fallback to a pricier (or unpriced) model by default (check warns which): "
            "set routing.max_fallback_cost_ratio: null to allow any, as LiteLLM did",
        )
    return out


def _one_fallback(conv: _Converter, path: str, model: str, targets: Any, out: dict[str, list[str]]) -> None:
    if model not in conv.models:
        conv.skip(path, f"'{model}' is not a model of model_list: not converted")
        return
    if isinstance(targets, str):
        targets = [targets]
    chain = out.setdefault(model, [])
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, str) or target not in conv.models or target == model:
            conv.skip(path, f"fallback {target!r} is not another model of model_list: left out")
        elif target not in chain:
            chain.append(target)
    if not chain:
        del out[model]


def _redis(conv: _Converter, router: dict[str, Any], lite: dict[str, Any]) -> str | None:
    params: dict[str, Any] = lite["cache_params"] if isinstance(lite.get("cache_params"), dict) else {}
    url = router.get("redis_url") or params.get("url")
    host = router.get("redis_host") or params.get("host")
    port = router.get("redis_port") or params.get("port") or 6379
    password = router.get("redis_password") or params.get("password")
    if isinstance(url, str):
        return conv.secret("router_settings.redis_url", url, REDIS_ENV, "Redis URL") if "@" in url else url
    if not isinstance(host, str):
        return None
    if host.startswith(("os.environ/", "${")) or (isinstance(port, str) and port.startswith(("os.environ/", "${"))):
        conv.out.secrets.append(Note("router_settings.redis_host", f"references: set {REDIS_ENV} to redis://[:PASSWORD@]HOST:PORT"))
        return "${" + REDIS_ENV + "}"
    if password is None:
        return f"redis://{host}:{port}"
    conv.out.secrets.append(
        Note("router_settings.redis_password", f"set {REDIS_ENV} to redis://:PASSWORD@{host}:{port} (the password is not copied)")
    )
    return "${" + REDIS_ENV + "}"


def _cache(conv: _Converter, lite: dict[str, Any]) -> float | None:
    """``cache: true`` -> every model's ``cache: {ttl}`` (LiteLLM caches every model once it is on)."""
    if lite.get("cache") is not True:
        if lite.get("cache") not in (None, False):
            conv.skip("litellm_settings.cache", "not true or false: not converted")
        if "cache_params" in lite:
            conv.skip("litellm_settings.cache_params", "cache is not on: not converted")
        return None
    params: dict[str, Any] = lite["cache_params"] if isinstance(lite.get("cache_params"), dict) else {}
    kind = params.get("type", "redis")
    if kind not in ("redis", "local", None):
        conv.skip("litellm_settings.cache_params.type", f"'{kind}': faregate caches exact matches in Redis (state.redis) or in memory")
    if params.get("mode") == "default_off":
        conv.skip(
            "litellm_settings.cache_params.mode", "default_off (per-request opt-in): faregate caches per model; the cache is left off"
        )
        return None
    for name in params:
        if name not in ("type", "ttl", "host", "port", "password", "url", "mode"):
            conv.skip(f"litellm_settings.cache_params.{name}", "no equivalent in faregate's response cache; not converted")
    ttl = params.get("ttl")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool) and 0 < ttl <= 30 * 86_400:
        return float(ttl)
    conv.skip("litellm_settings.cache_params.ttl", f"not given (or out of range): faregate needs one; {DEFAULT_CACHE_TTL:g} s is written")
    return DEFAULT_CACHE_TTL
