"""Which deployments a request tries, in which order, and which fallbacks it may use. Pure.

Inside a model: priority tiers, lowest first; weighted random order inside a tier (weight 0 =
disabled); deployments in cooldown are skipped with their reason; at most ``retries + 1`` are
tried. Across models: the requested model's ``fallbacks`` in order, each refused when its price
exceeds ``max_fallback_cost_ratio`` times the requested model's (unpriced counts as pricier).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from faregate.errors import Problem
from faregate.generation import Deployment, Generation, ModelRoute

Blocked = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class Plan:
    route: ModelRoute
    candidates: tuple[Deployment, ...]
    skipped: tuple[tuple[Deployment, str], ...]  # deployments not tried, and why


def plan(route: ModelRoute, generation: Generation, blocked: Blocked, rng: random.Random) -> Plan:
    limit = generation.policy.retries + 1
    candidates: list[Deployment] = []
    skipped: list[tuple[Deployment, str]] = []
    for tier in route.tiers:
        for dep in _weighted_order(tier, rng):
            reason = blocked(dep.label)
            if reason is not None:
                skipped.append((dep, reason))
            elif len(candidates) < limit:
                candidates.append(dep)
            else:
                skipped.append((dep, f"not tried: retry limit reached (routing.retries={generation.policy.retries})"))
    skipped.extend((d, "disabled (weight 0)") for d in route.deployments if d.weight == 0)
    return Plan(route=route, candidates=tuple(candidates), skipped=tuple(skipped))


def _weighted_order(tier: tuple[Deployment, ...], rng: random.Random) -> list[Deployment]:
    if len(tier) == 1:
        return [tier[0]]
    pool = list(tier)
    order: list[Deployment] = []
    while pool:
        total = sum(d.weight for d in pool)
        pick = rng.random() * total
        for i, dep in enumerate(pool):
            pick -= dep.weight
            if pick < 0 or i == len(pool) - 1:
                order.append(pool.pop(i))
                break
    return order


def targets(generation: Generation, requested: ModelRoute) -> Iterator[tuple[ModelRoute, str | None]]:
    """The requested model, then its fallbacks in order, each with the reason it must be skipped
    (or None). Lazy: a request answered by its own model never prices a fallback."""
    yield requested, None
    for name in generation.fallbacks.get(requested.name, ()):
        target = generation.models.get(name)
        if target is None or target is requested:
            continue
        yield target, cost_refusal(generation, requested, target)


def cost_refusal(generation: Generation, requested: ModelRoute, target: ModelRoute) -> str | None:
    ratio = generation.policy.max_fallback_cost_ratio
    if ratio is None:
        return None
    knob = "routing.max_fallback_cost_ratio"
    if target.price is None:
        return f"fallback {target.name} skipped: it is unpriced and an unpriced model counts as pricier (add it to prices: or raise {knob})"
    if requested.price is None:
        return f"fallback {target.name} skipped: {requested.name} is unpriced, so no fallback can be shown to cost less (add it to prices: or unset {knob})"
    req, tgt = requested.price, target.price
    if tgt.input > ratio * req.input + 1e-12 or tgt.output > ratio * req.output + 1e-12:
        return f"fallback {target.name} skipped: its price {tgt.describe()} exceeds {ratio:g}x {requested.name}'s {req.describe()} ({knob})"
    return None


def dead_fallbacks(generation: Generation) -> list[Problem]:
    """Fallbacks that ``cost_refusal`` refuses on every request, as ``check`` warnings naming both
    prices and the setting to change (models without an enabled deployment are warned about already)."""
    ratio = generation.policy.max_fallback_cost_ratio
    if ratio is None:
        return []
    knob = "routing.max_fallback_cost_ratio"
    problems: list[Problem] = []
    for name, names in generation.fallbacks.items():
        requested = generation.models.get(name)
        if requested is None or not requested.tiers:
            continue
        for i, target_name in enumerate(names):
            target = generation.models.get(target_name)
            if target is None or target is requested or not target.tiers or cost_refusal(generation, requested, target) is None:
                continue
            head = f"fallback {target_name} is always refused by the price rule"
            if target.price is None:
                why = f"{target_name} is unpriced and an unpriced model counts as pricier; add its upstream model to prices: or set {knob} to null"
            elif requested.price is None:
                why = (
                    f"{name} is unpriced, so no fallback can be shown to cost less; add its upstream model to prices: or set {knob} to null"
                )
            else:
                req, tgt = requested.price, target.price
                needed = max(_ratio(tgt.input, req.input), _ratio(tgt.output, req.output))
                change = (
                    f"set {knob} to null" if math.isinf(needed) else f"raise {knob} to {math.ceil(needed * 100) / 100:g} or more (or null)"
                )
                why = f"its price {tgt.describe()} exceeds {ratio:g}x {name}'s {req.describe()}; {change} to allow it"
            problems.append(Problem(f"fallbacks.{name}[{i}]", f"{head}: {why}", "warning"))
    return problems


def _ratio(target: float, requested: float) -> float:
    """The smallest ratio that lets ``target`` pass against ``requested``."""
    if requested == 0:
        return math.inf if target > 0 else 0.0
    return target / requested
