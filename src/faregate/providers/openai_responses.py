"""The OpenAI Responses wire protocol (``POST {base_url}/responses``), spoken to an ``openai``
provider with ``responses: true`` (OpenAI itself): a Responses client's request goes to it as
sent (re-serialised with the deployment's model, as ``openai.build`` does), and its reply or
stream comes back as bytes. Any other provider gets a Responses request translated (the
``openai_responses`` client codec and the provider's own transport).

It is the openai transport in all but the format: the same URL base, auth, headers and error
bodies (``openai.build``, ``classify_error``, ``error_in_reply``); what differs is the usage
shape (``input_tokens``/``output_tokens``, in the ``response`` object of ``response.completed``
when streamed) and how a stream ends (``response.completed``, ``response.incomplete`` or
``response.failed``, with no ``[DONE]``).
"""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import UpstreamProtocolError
from faregate.generation import Provider
from faregate.providers import openai, sse
from faregate.providers.openai import build as build
from faregate.providers.openai import classify_error as classify_error
from faregate.providers.openai import error_in_reply as error_in_reply
from faregate.types import Endpoint, Usage

# The Transport protocol (providers/base.py), for the providers ``serves`` accepts.
format = "openai_responses"
endpoints: frozenset[Endpoint] = frozenset({"responses"})
request_id_header = "x-request-id"
framing = sse.Splitter
ENDS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})  # a stream's own last events


def serves(provider: Provider) -> bool:
    """Whether a provider of the type this transport is registered for speaks Responses itself."""
    return provider.responses


def _usage(usage: Any) -> Usage | None:
    """Responses usage, normalised with the checks of ``openai.usage_of`` (the same fields under
    other names: input_tokens counts every prompt token, cached_tokens among them)."""
    if not isinstance(usage, dict):
        return None
    details, output_details = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    chat = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens")} if isinstance(details, dict) else None,
        "completion_tokens_details": {"reasoning_tokens": output_details.get("reasoning_tokens")}
        if isinstance(output_details, dict)
        else None,
    }
    return openai.usage_of({"usage": chat})


def usage_of(data: Any) -> Usage | None:
    """Usage of a whole ``response`` object; None when it reports none."""
    return _usage(data.get("usage")) if isinstance(data, dict) else None


def with_stream_usage(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A Responses stream always ends with its usage: nothing to ask for."""
    return payload, False


class StreamEvents:
    """Reads the complete events of a Responses stream on their way to the client: the usage of
    its last event (``response.completed`` and the other ends carry the response object), its end,
    and an event whose data is not a JSON object (refused, as ``openai.StreamEvents`` does). It
    passes on the bytes as read; for a stream cut midway it writes the ``error`` event that goes on
    from the last sequence number seen (``error_event``)."""

    __slots__ = ("done", "seen", "sequence", "usage")
    end = "response.completed"

    def __init__(self, *, strip: bool = False) -> None:
        del strip  # nothing is ever added to a Responses request, so nothing is removed
        self.usage: Usage | None = None
        self.done = False
        self.seen = 0
        self.sequence = -1  # the last sequence_number seen

    def feed(self, events: list[bytes]) -> bytes:
        for i, event in enumerate(events):
            self.seen += 1
            value = sse.data_of(event)
            if value is None:
                continue
            try:
                data = sse.json_object(value, self.seen)
            except UpstreamProtocolError as bad:
                bad.before = b"".join(events[:i])  # the good events before it are the client's
                raise
            number = data.get("sequence_number")
            if type(number) is int:
                self.sequence = number
            if data.get("type") in ENDS:
                self.done = True
                response = data.get("response")
                if isinstance(response, dict):
                    self.usage = _usage(response.get("usage")) or self.usage
        return b"".join(events)

    def error_event(self, kind: str, message: str, code: str | None) -> bytes:
        del kind
        data = {"type": "error", "sequence_number": self.sequence + 1, "code": code, "message": message, "param": None}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


stream_events = StreamEvents
