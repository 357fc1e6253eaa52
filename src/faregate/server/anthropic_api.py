"""The Anthropic Messages routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(also without ``/v1``), with the request life of every proxied route (``server/proxy.py``).

Authentication is the same as everywhere: a faregate key in ``x-api-key`` (what the anthropic SDK
and Claude Code send) or ``Authorization: Bearer``. The body is checked only as far as routing and
admission need (a model name, a messages array of objects with roles, ``max_tokens`` a positive
whole number for ``/v1/messages``, ``stream`` a boolean); on the diagonal (an Anthropic provider)
everything else goes upstream as sent, and only a translation reads the rest (the codec, which
answers a body it cannot read with a 400 of its own). Every error is in Anthropic's shape
(``FaregateError.anthropic_body``); ``anthropic-version`` and ``anthropic-beta`` are handed to the
provider, which forwards them to an Anthropic upstream.
"""

from __future__ import annotations

from faregate.errors import FaregateError
from faregate.server import validate
from faregate.server.proxy import Front, proxy

ANTHROPIC = Front(
    "anthropic",
    validate.parse,
    FaregateError.anthropic_body,
    frozenset({b"anthropic-version", b"anthropic-beta"}),
    request_id_headers=(b"request-id",),
)

MESSAGES = proxy("messages", ANTHROPIC)
COUNT_TOKENS = proxy("count_tokens", ANTHROPIC)
