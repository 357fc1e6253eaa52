"""LiteLLM-compatible model and health routes: ``/model/info``, ``/health`` (every deployment
probed now, with ``faregate.probe``, as LiteLLM's ``/health`` calls each one), ``/health/liveliness``
and ``/health/readiness``. ``/model/info`` and ``/health`` need the master key; the other two need
none, as in LiteLLM. Nothing here changes routing: a probe's verdict is only reported (the admin
probe, ``POST /admin/deployments/{label}/probe``, is the one that applies it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from sqlalchemy import text

from faregate import __version__, fleet
from faregate import probe as probes
from faregate.errors import FaregateError, InvalidRequest
from faregate.gateway import Gateway
from faregate.generation import Deployment, Generation
from faregate.server import admin_input as inputs
from faregate.server.auth import authenticate_admin
from faregate.server.http import Receive, Scope, Send, send_bytes, send_error

JSON = b"application/json"
LITELLM_PREFIX = {"openai": "openai", "azure": "azure", "anthropic": "anthropic", "gemini": "gemini", "vertex": "vertex_ai"}
LITELLM_PREFIX |= {"bedrock": "bedrock", "mock": "mock"}
PARALLEL_PROBES = 8
READY_TIMEOUT = 2.0


async def _send(send: Send, status: int, body: Any) -> None:
    await send_bytes(send, status, orjson.dumps(body), JSON)


def _deployments(gen: Generation, model: str | None) -> list[Deployment]:
    if model is not None and model not in gen.models:
        raise InvalidRequest(f"'model': no public model '{model}'", param="model", code="model_not_found")
    return [d for route in gen.models.values() if model is None or route.name == model for d in route.deployments]


def _params(dep: Deployment, gen: Generation) -> dict[str, Any]:
    out: dict[str, Any] = {"model": f"{LITELLM_PREFIX.get(dep.provider.type, dep.provider.type)}/{dep.model}"}
    if dep.provider.type != "mock":
        out["api_base"] = gen.scrub(dep.provider.base_url)  # never a secret, even one written inside the URL
    if dep.provider.api_version is not None:
        out["api_version"] = dep.provider.api_version
    return out


async def model_info(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /model/info[?litellm_model_id=LABEL]``: every deployment, with its price per token."""
    try:
        authenticate_admin(gw.keyring.current, scope)
        wanted = inputs.query(scope).get("litellm_model_id")
    except FaregateError as err:
        await send_error(send, err)
        return
    gen = gw.keyring.current.generation
    data = []
    for route in gen.models.values():
        for dep in route.deployments:
            if wanted is not None and dep.label != wanted:
                continue
            price = dep.price
            info = {
                "id": dep.label,
                "key": dep.model,
                "litellm_provider": LITELLM_PREFIX.get(dep.provider.type, dep.provider.type),
                "input_cost_per_token": price.input / 1_000_000 if price is not None else None,
                "output_cost_per_token": price.output / 1_000_000 if price is not None else None,
                "weight": dep.weight,
                "priority": dep.priority,
                "rpm": dep.rpm,
                "tpm": dep.tpm,
            }
            data.append({"model_name": route.name, "litellm_params": _params(dep, gen), "model_info": info})
    await _send(send, 200, {"data": data})


async def health(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /health[?model=NAME]``: probe every deployment now; healthy and unhealthy endpoints."""
    try:
        snap = gw.keyring.current
        authenticate_admin(snap, scope)
        query = inputs.query(scope)
        deployments = _deployments(snap.generation, query.get("model"))
    except FaregateError as err:
        await send_error(send, err)
        return
    gen = snap.generation
    gate = asyncio.Semaphore(PARALLEL_PROBES)

    async def one(dep: Deployment) -> tuple[Deployment, probes.ProbeResult]:
        async with gate:
            timeout = min(dep.provider.timeout, probes.DEFAULT_TIMEOUT)
            limit = min(gen.server.max_reply_bytes, probes.MAX_LISTING_BYTES)
            found = await probes.probe(gw.upstream, dep, fleet.probe_credential(snap, dep), timeout, scrub=gen.scrub, limit=limit)
            return dep, found

    healthy: list[dict[str, Any]] = []
    unhealthy: list[dict[str, Any]] = []
    for dep, found in await asyncio.gather(*(one(d) for d in deployments)):
        entry = {**_params(dep, gen), "model_name": dep.public_model, "deployment": dep.label, "probe": found.body()}
        if found.result == "ok":
            healthy.append(entry)
        else:
            unhealthy.append({**entry, "error": found.message})
    body = {
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
        "healthy_count": len(healthy),
        "unhealthy_count": len(unhealthy),
    }
    await _send(send, 200, body)


async def liveliness(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await _send(send, 200, "I'm alive!")  # LiteLLM's exact answer (a JSON string)


async def readiness(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Ready when the config is loaded and the state database answers (503 otherwise)."""
    db = "Not connected"
    if gw.engine is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT), gw.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            db = "connected"
        except Exception:  # noqa: BLE001 - any failure means not ready; the kind is enough
            db = "disconnected"
    gen = gw.keyring.current.generation
    body: dict[str, Any] = {
        "status": "healthy" if db == "connected" else "unhealthy",
        "db": db,
        "cache": "redis" if gen.state.redis else None,
        "litellm_version": None,
        "faregate_version": __version__,
        "generation": gen.id,
        "success_callbacks": [],
    }
    await _send(send, 200 if db == "connected" else 503, body)
