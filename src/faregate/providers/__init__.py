"""Provider transports (sans-IO; see README.md): which one serves each provider type, and what each supports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, get_args

from faregate.generation import Provider
from faregate.providers import anthropic, azure, bedrock, gemini, openai, openai_responses, vertex, vertex_anthropic
from faregate.providers.base import Transport
from faregate.types import Endpoint

TRANSPORTS: dict[str, Transport] = {"openai": openai, "anthropic": anthropic}  # provider type -> its transport
TRANSPORTS["azure"] = azure
TRANSPORTS["bedrock"] = bedrock
TRANSPORTS["gemini"] = gemini
TRANSPORTS["vertex"] = vertex  # its Gemini models; its Claude models: BY_MODEL


def _vertex(model: str) -> Transport:
    return vertex_anthropic if vertex.is_anthropic(model) else vertex


# provider type -> the transport of a deployment's model, for a type whose models speak different
# wire protocols (vertex: Google's Gemini and Anthropic's Claude); every other type has one (TRANSPORTS).
# Chosen per deployment by its model name (transport_for); the pipeline looks it up only for these types.
BY_MODEL: dict[str, Callable[[str], Transport]] = {"vertex": _vertex}


def transport_for(provider_type: str, model: str) -> Transport | None:
    """The transport that serves a deployment of ``provider_type`` whose upstream model is ``model``."""
    choose = BY_MODEL.get(provider_type)
    return choose(model) if choose is not None else TRANSPORTS.get(provider_type)


# codec NAME -> the transport that speaks it: the first listed of those that do (openai before azure)
SPEAKERS: dict[str, Transport] = {t.format: t for t in reversed(TRANSPORTS.values())}
LOCAL = frozenset({"mock"})  # answered in-process, no HTTP, in the client's own format

# One operation, one endpoint per format: a request for any can be translated into the others.
CONVERSATION: frozenset[Endpoint] = frozenset({"chat", "messages", "responses"})


class NativeTransport(Transport, Protocol):
    """A transport of another client format that some providers of a type speak themselves."""

    def serves(self, provider: Provider) -> bool: ...


# (provider type, client format) -> the transport that serves that format to the providers of the type
# it ``serves`` (an openai provider with ``responses: true``): their client's request goes as sent, the
# others' is translated for the type's own transport (TRANSPORTS)
NATIVE: dict[tuple[str, str], NativeTransport] = {("openai", openai_responses.format): openai_responses}


def native(provider: Provider, client_format: str) -> Transport | None:
    """The transport that serves ``provider`` the client's own format, when one does; else None."""
    transport = NATIVE.get((provider.type, client_format))
    return transport if transport is not None and transport.serves(provider) else None


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
    "mock": frozenset(get_args(Endpoint)) - {"images_generations", "audio_transcriptions", "audio_speech"},  # no demo images or audio
}
