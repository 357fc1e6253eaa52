"""The pitfall map: what a config can get wrong that still loads, as named findings. Offline and pure.

Every check yields its problems, or one "ok" finding saying what it looked at, so doctor's output
shows what was checked. Codes are stable (scripts match them); each problem says what it means
and how to fix it. ``config_findings`` turns ``check``'s own errors and warnings into findings,
leaving out the warnings a pitfall here restates with its own code.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path

from faregate.doctor.findings import Finding, Severity
from faregate.errors import Problem
from faregate.generation import Deployment, Generation, ModelRoute
from faregate.routing import cost_refusal, dead_fallbacks

# Above this output price (USD per million tokens) a request without max_tokens is a cost trap:
# claude-opus-4-5 ($25) and dearer are above it, claude-sonnet-4-6 ($15) and gpt-4o ($10) are not.
CEILING_PRICE = 20.0
LONG_REPLY = 100_000  # output tokens of one long answer: how the price of one is put in dollars
# Upstream attempts for one request above which retries multiply its cost: 4 is two deployments
# of the model and two of one fallback, each tried once. Every attempt can be billed (one that
# times out after the provider started generating is).
MAX_ATTEMPTS = 4
CLOSE = 0.6  # difflib ratio above which a known model name is offered as "did you mean"
KNOB = "routing.max_fallback_cost_ratio"

# check's warnings that a pitfall below restates with its own code, what it means and its fix
RESTATED = (
    "weight 0 disables this deployment",
    "no enabled deployment (every weight is 0)",
    "is unpriced: its requests are counted",
    "is always refused by the price rule",
    "without state.redis, rpm/tpm are counted per worker process",
)


def findings(generation: Generation, config_path: Path, workers: int | None) -> list[Finding]:
    """Every pitfall check on a loaded generation; ``workers``: ``--workers`` (default server.workers)."""
    del config_path  # the generation holds all this needs; kept for the doctor-wide signature
    checks: tuple[Callable[[Generation], list[Finding]], ...] = (
        _unknown_upstream_models,
        _weight_zero,
        _single_deployment,
        _single_credential,
        _fallbacks_always_refused,
        _retiring_credentials,
        _unpriced,
        _no_max_tokens_ceiling,
        _retries_multiply_cost,
        _fallbacks_end_dearest,
    )
    out: list[Finding] = []
    for check in checks:
        out.extend(check(generation))
    out.extend(_limits_per_worker(generation, workers or generation.server.workers))
    return out


def config_findings(problems: Iterable[Problem], generation: Generation | None) -> list[Finding]:
    """``check``'s problems as group "config" findings (the ones a pitfall restates left out); an
    "ok" one when nothing is left. ``generation`` is None when the config has errors."""
    out = [
        Finding(
            "config",
            "config_error" if p.severity == "error" else "config_warning",
            "error" if p.severity == "error" else "warning",
            p.path or "config",
            p.message,
            "correct it in the config file, then run faregate check -c FILE" if p.severity == "error" else "",
        )
        for p in problems
        if p.severity == "error" or not any(fragment in p.message for fragment in RESTATED)
    ]
    if not out and generation is not None:
        out.append(
            _ok(
                "config",
                "config_valid",
                "config",
                f"valid: generation {generation.id}, {len(generation.models)} model(s), {len(generation.providers)} provider(s)",
            )
        )
    return out


def _ok(group: str, code: str, subject: str, message: str) -> Finding:
    return Finding(group, code, "ok", subject, message)


def _where(generation: Generation) -> Iterable[tuple[str, Deployment]]:
    """Every deployment with its config path (``models.<name>[<i>]``)."""
    for name, route in generation.models.items():
        for i, dep in enumerate(route.deployments):
            yield f"models.{name}[{i}]", dep


def _paid(dep: Deployment) -> bool:
    """A deployment whose requests cost real money (the mock provider answers locally)."""
    return dep.provider.type != "mock"


def _passing_fallbacks(generation: Generation, route: ModelRoute) -> list[ModelRoute]:
    """The fallbacks a request to ``route`` can really use: known, enabled, allowed by the price rule."""
    out = []
    for name in generation.fallbacks.get(route.name, ()):
        target = generation.models.get(name)
        if target is not None and target is not route and target.tiers and cost_refusal(generation, route, target) is None:
            out.append(target)
    return out


def _enabled(route: ModelRoute) -> list[Deployment]:
    return [d for tier in route.tiers for d in tier]


def _unknown_upstream_models(generation: Generation) -> list[Finding]:
    known = list(generation.prices)
    lowered = {name.lower(): name for name in known}
    out = []
    for subject, dep in _where(generation):
        if not _paid(dep) or dep.model in generation.prices:
            continue
        match = difflib.get_close_matches(dep.model.lower(), list(lowered), n=1, cutoff=CLOSE)
        closest = lowered[match[0]] if match else None
        if closest is not None:
            said = f"the closest known name is '{closest}'"
            fix = f"if it is a typo, write model: {closest}; if {dep.provider.name} really serves '{dep.model}', add it to prices:"
        else:
            said = "no known name is close to it"
            fix = f"check the name against {dep.provider.name}'s model list (faregate doctor --live probes it) and add it to prices:"
        out.append(
            Finding(
                "deployments",
                "unknown_upstream_model",
                "warning",
                subject,
                f"{dep.label}: upstream model '{dep.model}' is not in the price table; {said} "
                "(a misspelt name fails every request sent to this deployment with model not found)",
                fix,
            )
        )
    paid = sum(_paid(d) for _, d in _where(generation))
    said = f"all {paid} upstream model name(s) are in the price table" if paid else "no deployment calls a provider (mock only)"
    return out or [_ok("deployments", "unknown_upstream_model", "models", said)]


def _weight_zero(generation: Generation) -> list[Finding]:
    out = []
    for subject, dep in _where(generation):
        if dep.weight == 0:
            out.append(
                Finding(
                    "routing",
                    "weight_zero",
                    "warning",
                    subject,
                    f"{dep.label} has weight 0: it is disabled and takes no traffic",
                    "set weight: 1 or more to use it, or delete the deployment",
                )
            )
    for name, route in generation.models.items():
        if route.deployments and not route.tiers:
            fallbacks = _passing_fallbacks(generation, route)
            if fallbacks:
                severity: Severity = "warning"
                what = f"every request to {name} goes to its fallback {fallbacks[0].name}"
            else:
                severity, what = "error", f"every request to {name} gets a 503"
            out.append(
                Finding(
                    "routing",
                    "weight_zero",
                    severity,
                    f"models.{name}",
                    f"no enabled deployment (every weight is 0): {what}",
                    "give one deployment weight: 1 or more, or delete the model",
                )
            )
    return out or [_ok("routing", "weight_zero", "models", "every deployment has a weight above 0")]


def _single_deployment(generation: Generation) -> list[Finding]:
    out = []
    for name, route in generation.models.items():
        enabled = _enabled(route)
        if len(enabled) != 1 or not _paid(enabled[0]):
            continue
        fallbacks = _passing_fallbacks(generation, route)
        if fallbacks:
            out.append(
                _ok(
                    "routing",
                    "single_deployment",
                    f"models.{name}",
                    f"one deployment, {enabled[0].label}; fallback {fallbacks[0].name} covers it",
                )
            )
            continue
        out.append(
            Finding(
                "routing",
                "single_deployment",
                "warning",
                f"models.{name}",
                f"one enabled deployment, {enabled[0].label}, and no usable fallback: when it fails or cools down, every request to {name} fails",
                f"add a second deployment of {name} (another provider, region or account), or a fallback model the price rule allows",
            )
        )
    if not any(f.severity != "ok" for f in out):
        out.append(
            _ok(
                "routing",
                "single_deployment",
                "models",
                "every model has two or more enabled deployments, a usable fallback, or answers locally",
            )
        )
    return out


def _credentials_of(dep: Deployment) -> dict[str, str] | None:
    """The keys a deployment depends on, by fingerprint (the same key under two ids is one key), with
    a label to name each; None when it needs none (mock, a keyless local server)."""
    provider = dep.provider
    keys = {c.secret.fingerprint: c.label for c in provider.credentials if c.secret is not None}
    if not keys and provider.secret_headers:
        keys = {f"{provider.name}/headers": f"the key in providers.{provider.name}.headers"}
    return keys or None


def _single_credential(generation: Generation) -> list[Finding]:
    out = []
    for name, route in generation.models.items():
        keys: dict[str, str] = {}
        for dep in _enabled(route):
            needed = _credentials_of(dep)
            if needed is None:  # a deployment that needs no key cannot lose one
                break
            keys.update(needed)
        else:
            if len(keys) != 1:
                continue
            (label,) = keys.values()
            providers = sorted({d.provider.name for d in _enabled(route)})
            out.append(
                Finding(
                    "routing",
                    "single_credential",
                    "warning",
                    f"models.{name}",
                    f"every deployment of {name} uses one key, {label}: if it is revoked, expires or runs out of quota, {name} stops",
                    f"add a second credential (another project or account) to providers.{providers[0]}.credentials, "
                    "or a deployment on another provider",
                )
            )
    return out or [_ok("routing", "single_credential", "models", "no model depends on a single credential")]


def _fallbacks_always_refused(generation: Generation) -> list[Finding]:
    out = []
    for problem in dead_fallbacks(generation):
        what, _, fix = problem.message.rpartition("; ")
        out.append(Finding("routing", "fallback_always_refused", "warning", problem.path, what, fix))
    if out:
        return out
    count = sum(len(v) for v in generation.fallbacks.values())
    said = f"{count} fallback(s): none is refused by the price rule on every request" if count else "no fallbacks configured"
    return [_ok("routing", "fallback_always_refused", "fallbacks", said)]


def _retiring_credentials(generation: Generation) -> list[Finding]:
    out = []
    for name, provider in generation.providers.items():
        for i, cred in enumerate(provider.credentials):
            if cred.retiring:
                out.append(
                    Finding(
                        "routing",
                        "retiring_credential",
                        "warning",
                        f"providers.{name}.credentials[{i}]",
                        f"{cred.label} is marked retiring and is still in the file: it takes traffic only when no other credential is healthy",
                        "once GET /admin/credentials shows it takes no requests, delete it from the file (then revoke the key at the provider)",
                    )
                )
    return out or [_ok("routing", "retiring_credential", "providers", "no credential is marked retiring")]


def _limits_per_worker(generation: Generation, workers: int) -> list[Finding]:
    if generation.state.redis is not None:
        return [_ok("routing", "limits_per_worker", "state.redis", "set: rpm/tpm limits are counted once across workers")]
    if workers <= 1:
        return [_ok("routing", "limits_per_worker", "server.workers", "one worker: rpm/tpm limits are counted exactly without state.redis")]
    fix = "set state.redis (one count for every worker and instance), or run one worker"
    out = [
        Finding(
            "routing",
            "limits_per_worker",
            "warning",
            subject,
            f"{dep.label}: without state.redis, rpm/tpm are counted per worker process: "
            f"with {workers} workers up to {workers}x the limit can pass",
            fix,
        )
        for subject, dep in _where(generation)
        if dep.rpm is not None or dep.tpm is not None
    ]
    out.append(
        Finding(
            "routing",
            "limits_per_worker",
            "warning",
            "state.redis",
            f"not set with {workers} workers: virtual keys' and teams' rpm/tpm/max_parallel are counted per worker too, "
            f"so up to {workers}x such a limit can pass",
            fix,
        )
    )
    return out


def _unpriced(generation: Generation) -> list[Finding]:
    out = [
        Finding(
            "cost",
            "unpriced_model",
            "warning",
            subject,
            f"{dep.label}: '{dep.model}' is unpriced, so its cost is invisible: requests are counted but their cost is unknown "
            "(never $0), budgeted keys cannot use it and no fallback to or from it passes the price rule",
            f"add {dep.model} to prices: with its input and output price in USD per million tokens",
        )
        for subject, dep in _where(generation)
        if _paid(dep) and dep.price is None
    ]
    return out or [_ok("cost", "unpriced_model", "models", "every deployment that costs money is priced")]


def _no_max_tokens_ceiling(generation: Generation) -> list[Finding]:
    out = []
    for subject, dep in _where(generation):
        if not _paid(dep) or dep.price is None or dep.price.output <= CEILING_PRICE:
            continue
        reply = dep.price.output * LONG_REPLY / 1_000_000
        out.append(
            Finding(
                "cost",
                "no_max_tokens_ceiling",
                "warning",
                subject,
                f"{dep.label} is priced ${dep.price.output:g} per million output tokens, above ${CEILING_PRICE:g}, and faregate sets no "
                f"max_tokens ceiling on it: one request that runs to {LONG_REPLY:,} output tokens costs ${reply:.2f}",
                f"have clients send max_tokens, and give the virtual keys that may use {dep.public_model} a budget (faregate keys ... --budget)",
            )
        )
    return out or [
        _ok("cost", "no_max_tokens_ceiling", "models", f"no deployment is priced above ${CEILING_PRICE:g} per million output tokens")
    ]


def _retries_multiply_cost(generation: Generation) -> list[Finding]:
    tries = generation.policy.retries + 1
    out = []
    for name, route in generation.models.items():
        chain = [route, *_passing_fallbacks(generation, route)]
        attempts = sum(min(tries, len(_enabled(r))) for r in chain)
        if attempts <= MAX_ATTEMPTS:
            continue
        per = ", ".join(f"{min(tries, len(_enabled(r)))} on {r.name}" for r in chain)
        out.append(
            Finding(
                "cost",
                "retries_multiply_cost",
                "warning",
                f"models.{name}",
                f"one request to {name} can be sent upstream {attempts} times ({per}; routing.retries={generation.policy.retries} "
                f"allows {tries} per model); an attempt that fails after the provider started generating "
                f"(a timeout, a dropped connection) is billed too, so the worst case costs {attempts}x one request",
                f"lower routing.retries or shorten the fallback chain so one request makes at most {MAX_ATTEMPTS} attempts",
            )
        )
    return out or [
        _ok("cost", "retries_multiply_cost", "routing.retries", f"no request can make more than {MAX_ATTEMPTS} upstream attempts")
    ]


def _fallbacks_end_dearest(generation: Generation) -> list[Finding]:
    """A chain (the model, then the fallbacks it can use) whose last hop is dearer than every other
    hop (by output price, then input): in an outage all its traffic moves to the dearest model."""
    out = []
    for name in generation.fallbacks:
        route = generation.models.get(name)
        if route is None or not route.tiers:
            continue
        chain = [route, *_passing_fallbacks(generation, route)]
        if len(chain) < 2 or any(r.price is None for r in chain):
            continue  # unpriced models are their own finding
        last = chain[-1]
        assert last.price is not None
        dearest = max((r.price.output, r.price.input) for r in chain[:-1] if r.price is not None)
        if (last.price.output, last.price.input) <= dearest:
            continue
        ratio = generation.policy.max_fallback_cost_ratio
        knob = f"lower {KNOB} (now {ratio:g})" if ratio is not None else f"set {KNOB} (now null, e.g. to 1)"
        out.append(
            Finding(
                "cost",
                "fallback_ends_dearest",
                "warning",
                f"fallbacks.{name}",
                f"the chain {' -> '.join(r.name for r in chain)} ends with its dearest model, {last.name} at {last.price.describe()}: "
                f"when the others fail, every request to {name} is billed at {last.name}'s price",
                f"end the chain with a model no dearer than {name}, or {knob} so the price rule refuses it",
            )
        )
    return out or [_ok("cost", "fallback_ends_dearest", "fallbacks", "no fallback chain ends with its dearest model")]
