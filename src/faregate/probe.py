"""One probe of one deployment, now: the cheapest request its provider type allows, with a timeout.

``probe`` asks the provider's model listing (OpenAI's ``GET /models``, Anthropic's paged ``GET
/v1/models``) whether it knows the deployment's upstream model; only when there is no listing (an
OpenAI-compatible server answering 404/405, or no listing shape), or the listing does not name the
model, does it send one 1-token request (``max_tokens: 1``), so that the verdict "model not found"
is always the provider's own answer to that model: listings leave out names that work (Anthropic's
aliases such as ``claude-sonnet-4-0``, Ollama's tag-less names, a proxy's wildcard routes), and a
probe must never take a working deployment out of traffic. Each outcome is named (``RESULTS``);
its message is scrubbed by the generation's scrubber, so no secret is ever in it.

The caller (``server.admin_deployments``) chooses the credential and applies the verdict to
deployment health; this module only talks to the provider, through the worker's one client.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson

from faregate.credentials import minted
from faregate.errors import (
    CredentialRejected,
    Scrub,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamModelMissing,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamReplyTooLarge,
    UpstreamTimeout,
)
from faregate.generation import Credential, Deployment
from faregate.providers import BY_MODEL, LOCAL, anthropic, azure, bedrock, gemini, openai, transport_for
from faregate.providers.base import Transport, UpstreamRequest
from faregate.types import Endpoint
from faregate.upstream import Upstream

RESULTS = ("ok", "credential_rejected", "model_not_found", "quota_exhausted", "rate_limited", "unreachable", "timeout", "error")
DEFAULT_TIMEOUT = 10.0
MAX_PAGES = 10  # listing pages followed at most (Anthropic's hold 1000 models each)
MAX_LISTING_BYTES = 8 * 1024 * 1024
NO_LISTING = (404, 405)  # an OpenAI-compatible server without a model listing
CLOSEST = 3
MESSAGE_CHARS = 300
NAME_CHARS = 200


class OneToken(Protocol):
    """What a transport module offers for the 1-token request of a probe."""

    PROBE_ENDPOINT: Endpoint
    PROBE_PAYLOAD: dict[str, Any]


class Listing(OneToken, Protocol):
    """What a transport module with a model listing offers for probes (providers/openai.py, providers/anthropic.py)."""

    def models_request(self, deployment: Deployment, credential: Credential | None, after: str | None = None) -> UpstreamRequest: ...
    def listed_models(self, body: bytes) -> tuple[list[str], str | None] | None: ...


LISTINGS: dict[str, Listing] = {"openai": openai, "anthropic": anthropic}  # provider type -> its listing
LISTINGS["gemini"] = gemini
# provider types without a listing of what a deployment names: the 1-token request only
ONE_TOKEN: dict[str, OneToken] = {"azure": azure, "bedrock": bedrock}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    result: str  # one of RESULTS
    message: str  # what was found, for an operator (scrubbed: never a secret)
    closest: tuple[str, ...]  # the provider's model names closest to the deployment's (model_not_found)
    method: str  # "models_list" | "completion" | "local"
    credential: str | None  # the credential's fingerprint label, never its value
    latency: float  # seconds the probe took

    def body(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "message": self.message,
            "closest": list(self.closest),
            "method": self.method,
            "credential": self.credential,
            "latency_ms": round(self.latency * 1000, 1),
        }


def closest_names(model: str, names: list[str]) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(model, names, n=CLOSEST, cutoff=0.5))


@dataclass(frozen=True, slots=True)
class _Found:
    """A verdict, before its message is scrubbed and cut."""

    result: str
    message: str
    method: str
    closest: tuple[str, ...] = ()


async def probe(
    upstream: Upstream,
    deployment: Deployment,
    credential: Credential | None,
    timeout: float,
    *,
    scrub: Scrub,
    limit: int = MAX_LISTING_BYTES,
) -> ProbeResult:
    """Probe ``deployment`` with ``credential`` within ``timeout`` seconds in all."""
    started = time.perf_counter()
    label = credential.label if credential is not None and deployment.provider.type not in LOCAL else None
    state = _Probe(upstream, deployment, credential, timeout, limit)
    try:
        async with asyncio.timeout(timeout):
            verdict = await state.run()
    except TimeoutError:
        verdict = _Found("timeout", f"no answer within the probe's {timeout:g}s", state.method)
    except UpstreamError as err:
        err.redact(scrub)
        verdict = _verdict(err, deployment, state)
    except UpstreamReplyTooLarge as err:
        verdict = _Found("error", err.message, state.method)
    message = scrub(verdict.message)
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 3] + "..."
    closest = tuple(scrub(name)[:NAME_CHARS] for name in verdict.closest)  # the provider's words, as every upstream text
    return ProbeResult(verdict.result, message, closest, verdict.method, label, time.perf_counter() - started)


class _Probe:
    """The steps of one probe; ``method`` and ``names`` say how far it got (for the verdict of an error)."""

    def __init__(self, upstream: Upstream, deployment: Deployment, credential: Credential | None, timeout: float, limit: int) -> None:
        self.upstream, self.deployment, self.credential, self.limit = upstream, deployment, credential, limit
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.method = "local" if deployment.provider.type in LOCAL else "models_list"
        self.names: list[str] | None = None  # the provider's listing, once read

    async def run(self) -> _Found:
        """The verdict when the provider answered; an UpstreamError (or TimeoutError) when it did not."""
        dep = self.deployment
        ptype = dep.provider.type
        if ptype in LOCAL:
            return _Found("ok", f"provider type {ptype} answers in-process: nothing to reach", "local")
        listing, transport = LISTINGS.get(ptype), transport_for(ptype, dep.model)  # vertex: by the model (Claude or Gemini)
        credential = self.credential
        m = credential.minted if credential is not None else None
        if credential is not None and m is not None and m.kind in minted.KIND_NAMES and not minted.usable(m, time.time()):
            result = "credential_rejected" if m.failure == "CredentialRejected" else "error"  # no token to send (yet)
            return _Found(result, m.error or f"credential {credential.label}: no token minted yet", self.method)
        one = cast(OneToken, transport) if ptype in BY_MODEL else ONE_TOKEN.get(ptype)  # a per-model transport has its own
        if listing is None and one is not None and transport is not None:
            return await self._one_token(one, transport)
        if listing is None or transport is None:
            return _Found("error", f"no probe is known for provider type {ptype}", self.method)
        self.names = await self._listing(listing, transport)
        if self.names is not None and dep.model in self.names:
            return _Found("ok", f"the provider lists model '{dep.model}'", "models_list")
        return await self._one_token(listing, transport)

    def _left(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001)

    async def _send(self, request: UpstreamRequest) -> _Reply:
        """One request, its reply read whole (an error status too: the caller classifies it)."""
        provider = self.deployment.provider
        left = self._left()
        reply = await self.upstream.send(request, connect_timeout=min(provider.connect_timeout, left), timeout=left)
        return _Reply(reply.status, await reply.read(self.limit), reply.headers, reply.content_type)

    async def _listing(self, listing: Listing, transport: Transport) -> list[str] | None:
        """Every model name the provider lists (following pages), or None when it has no listing."""
        names: list[str] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            reply = await self._send(listing.models_request(self.deployment, self.credential, after))
            if reply.status in NO_LISTING and not names:
                return None
            if reply.status >= 300:
                raise reply.error(transport)
            page = listing.listed_models(reply.body)
            if page is None:
                return names or None  # not a listing (an HTML page, another shape): as if there were none
            names.extend(page[0])
            after = page[1]
            if after is None:
                break
        return names

    async def _one_token(self, listing: OneToken, transport: Transport) -> _Found:
        """The 1-token request: the provider's own answer on the deployment's model."""
        dep = self.deployment
        self.method = "completion"
        request = transport.build(listing.PROBE_ENDPOINT, dep, self.credential, dict(listing.PROBE_PAYLOAD))
        reply = await self._send(request)
        if reply.status >= 300:
            raise reply.error(transport)
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            data = None
        failed = transport.error_in_reply(data, reply.headers, reply.body, reply.content_type, time.time())
        if failed is not None:
            raise failed
        if type(data) is not dict:
            shown = reply.content_type.decode("latin-1")
            return _Found("error", f"the 1-token request was answered {reply.status} with no JSON reply ({shown})", "completion")
        unlisted = " (though the provider's model listing does not name it)" if self.names is not None else ""
        return _Found("ok", f"model '{dep.model}' answered a 1-token request{unlisted}", "completion")


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]
    content_type: bytes

    def error(self, transport: Transport) -> UpstreamError:
        return transport.classify_error(self.status, self.headers, self.body, self.content_type, time.time())


def _verdict(err: UpstreamError, dep: Deployment, state: _Probe) -> _Found:
    """The named result for an upstream error met while probing."""
    method, names = state.method, state.names
    reason = err.reason
    if isinstance(err, CredentialRejected):
        return _Found("credential_rejected", f"the provider rejected the credential: {reason}", method)
    if isinstance(err, UpstreamRateLimited):
        wait = f"; retry after {err.retry_after:g}s" if err.retry_after is not None else ""
        if err.code == "insufficient_quota":
            return _Found("quota_exhausted", f"the account's quota or credit is used up: {reason}", method)
        return _Found("rate_limited", f"the provider's rate limit refused the probe: {reason}{wait}", method)
    missing = isinstance(err, UpstreamModelMissing) or (
        isinstance(err, UpstreamRejected) and err.upstream_status == 404 and method == "completion" and names is not None
    )
    if missing:
        closest = closest_names(dep.model, names or [])
        hint = f"; closest names it lists: {', '.join(closest)}" if closest else ""
        listed = "" if names is None else f" (nor is it among the {len(names)} it lists)"
        return _Found("model_not_found", f"the provider has no model '{dep.model}'{listed}: {reason}{hint}", method, closest)
    if isinstance(err, UpstreamTimeout):
        return _Found("timeout", f"no answer within the probe's {state.timeout:g}s ({reason})", method)
    if isinstance(err, UpstreamConnectionError):
        return _Found("unreachable", reason, method)
    if isinstance(err, UpstreamRejected) and err.upstream_status in NO_LISTING:
        return _Found(
            "error", f"{reason}: neither a model listing nor the 1-token request was found; is the provider's base_url right?", method
        )
    return _Found("error", reason, method)
