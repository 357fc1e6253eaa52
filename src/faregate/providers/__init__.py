"""Provider transports (sans-IO; see README.md): which one serves each provider type, and what each supports."""

from __future__ import annotations

from typing import get_args

from faregate.providers import anthropic, openai
from faregate.providers.base import Transport
from faregate.types import Endpoint

TRANSPORTS: dict[str, Transport] = {"openai": openai, "anthropic": anthropic}  # provider type -> its transport
SPEAKERS: dict[str, Transport] = {t.format: t for t in TRANSPORTS.values()}  # codec NAME -> the transport that speaks it
LOCAL = frozenset({"mock"})  # answered in-process, no HTTP, in the client's own format

# One operation, one endpoint per format: a request for either can be translated into the other.
CONVERSATION: frozenset[Endpoint] = frozenset({"chat", "messages"})


def endpoint_for(transport: Transport, endpoint: Endpoint) -> Endpoint | None:
    """The transport's endpoint that serves a client's ``endpoint``: the same one on the diagonal,
    the transport's conversation endpoint for a translated conversation; None when it has none."""
    if endpoint in transport.endpoints:
        return endpoint
    if endpoint in CONVERSATION:
        for own in CONVERSATION & transport.endpoints:
            return own
    return None


# provider type -> the client endpoints it can serve, directly or translated; count_tokens everywhere:
# a transport that cannot count is answered by faregate's estimate (the pipeline asks the mock's)
SUPPORTED: dict[str, frozenset[Endpoint]] = {
    **{
        kind: frozenset(e for e in get_args(Endpoint) if e == "count_tokens" or endpoint_for(t, e) is not None)
        for kind, t in TRANSPORTS.items()
    },
    "mock": frozenset(get_args(Endpoint)),
}
