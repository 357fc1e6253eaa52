"""Admission against budgets (a key's and its team's): reserve a request's maximum cost before it runs, settle with what it
really cost afterwards, release on failure. A budget can then not be overspent by concurrent
requests (check-then-record races), only by one request's usage beyond its estimate.

The estimate: prompt tokens <= UTF-8 bytes of the prompt / 2 + 16, and output tokens = the
request's `max_completion_tokens`/`max_tokens`, else ``DEFAULT_OUTPUT_TOKENS``, at most
``MAX_OUTPUT_TOKENS``; priced at the dearest enabled deployment of the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from faregate import costs
from faregate.credentials.virtual import VirtualKey
from faregate.errors import BudgetExceeded, PermissionDenied
from faregate.store import budgets
from faregate.types import Price

DEFAULT_OUTPUT_TOKENS = 4096
MAX_OUTPUT_TOKENS = 131_072


@dataclass(frozen=True, slots=True)
class Reservation:
    charges: tuple[budgets.Charge, ...]
    amount: float


def max_cost(payload: dict[str, Any], price: Price) -> float:
    """The most a request can cost, reserved against budgets before it is sent: its prompt at the
    input rate, or at the dearest cache-write rate when it asks for prompt caching (a write costs
    1.25x-2x input on Anthropic), and its output at the requested maximum (else a default)."""
    prompt_tokens = costs.prompt_bytes(payload) // 2 + 16
    requested = costs.requested_output(payload)
    output_tokens = min(requested, MAX_OUTPUT_TOKENS) if requested is not None else DEFAULT_OUTPUT_TOKENS
    prompt_rate = price.input
    if (price.cache_write or price.cache_write_1h) and costs.asks_cache_write(payload):
        prompt_rate = max(prompt_rate, price.cache_write or 0.0, price.cache_write_1h or 0.0)
    return (prompt_tokens * prompt_rate + output_tokens * price.output) / 1_000_000


async def admit(engine: AsyncEngine, key: VirtualKey, model: str, price: Price | None, payload: dict[str, Any]) -> Reservation | None:
    """None when neither the key nor its team has a budget; else a reservation on both, or
    BudgetExceeded naming the budget that did not fit (and then nothing is reserved)."""
    budgeted: list[tuple[budgets.Kind, str]] = []
    if key.budget_usd is not None:
        budgeted.append(("key", key.id))
    if key.team_budget_usd is not None and key.team_id is not None:
        budgeted.append(("team", key.team_id))
    if not budgeted:
        return None
    if price is None:
        raise PermissionDenied(
            f"the model '{model}' is unpriced, and a key with a budget can only use priced models (add it to prices:)",
            param="model",
            code="model_unpriced",
        )
    amount = max_cost(payload, price)
    charges = tuple(budgets.Charge(kind, id_, amount) for kind, id_ in budgeted)
    try:
        await budgets.reserve(engine, charges, time.time())
    except budgets.DoesNotFit as refusal:
        kind, id_ = refusal.charge.kind, refusal.charge.id
        state = await budgets.state(engine, kind, id_) or {}
        spent, reserved = float(state.get("spent_usd") or 0.0), float(state.get("reserved_usd") or 0.0)
        limit = float(state.get("budget_usd") or 0.0)
        period = state.get("budget_period") or "total"
        raise BudgetExceeded(
            f"budget exceeded for {kind} {id_} ({period}): spent ${spent:.6f} + in flight ${reserved:.6f} + this request up to "
            f"${amount:.6f} > limit ${limit:.6f}"
        ) from None
    return Reservation(charges, amount)


async def settle(engine: AsyncEngine, reservation: Reservation, cost: float | None, answered: bool) -> None:
    """A request that was answered costs its priced usage, or its whole reservation when the usage
    is unknown (never a silent $0); one that failed costs nothing."""
    if not answered:
        spent = 0.0
    elif cost is None or not math.isfinite(cost):
        spent = reservation.amount
    else:
        spent = cost
    await budgets.settle(engine, reservation.charges, spent)
