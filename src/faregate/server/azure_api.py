"""Azure OpenAI-style routes in, so an ``AzureOpenAI`` client can be pointed at faregate
(``azure_endpoint`` = faregate's URL, ``api_key`` = a faregate key, any ``api_version``):

- ``POST /openai/deployments/{name}/chat/completions`` (and ``/completions``, ``/embeddings``):
  ``{name}`` is the public model name (the URL's, as Azure reads it: it replaces the body's
  ``model``), the URL-encoded name may hold slashes;
- ``/openai/v1/...``, ``/openai/responses`` and ``/openai/models`` are OpenAI's routes under Azure's prefix (``app.py``).

``?api-version=`` is accepted and ignored: faregate's API does not change with it. The key may come
in ``api-key`` (what ``AzureOpenAI`` sends), as everywhere (``server/auth.py``). Requests, replies and
errors are OpenAI's, with the request life of every proxied route (``server/proxy.py``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from faregate.errors import FaregateError, MethodNotAllowed, RouteNotFound
from faregate.gateway import Gateway
from faregate.server import validate
from faregate.server.auth import authenticate
from faregate.server.http import Receive, Scope, Send, send_error
from faregate.server.proxy import Front, proxy
from faregate.types import Endpoint

PREFIX = "/openai/deployments/"
# what follows the deployment name; /chat/completions before /completions, which it ends with
SUFFIXES: tuple[tuple[str, Endpoint], ...] = (("/chat/completions", "chat"), ("/completions", "completions"), ("/embeddings", "embeddings"))


def route(path: str) -> tuple[str, Endpoint] | None:
    """(model name, endpoint) of an Azure deployment URL's path; None for any other path."""
    rest = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
    for suffix, endpoint in SUFFIXES:
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return rest[: -len(suffix)], endpoint
    return None


async def deployments(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """``/openai/deployments/...``: the proxied route its path names, for the model it names."""
    found = route(scope["path"])
    if found is None or scope["method"] != "POST":
        try:
            await authenticate(gw, gw.keyring.current, scope)  # a bad key learns nothing about the routes
        except FaregateError as err:
            await send_error(send, err)
            return
        if found is None:
            await send_error(send, RouteNotFound(f"unknown URL {scope['method']} {scope['path']!r}; the routes are listed in the README"))
        else:
            await send_error(
                send, MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use POST"), [(b"allow", b"POST")]
            )
        return
    name, endpoint = found
    handler = proxy(endpoint, Front("openai_chat", partial(_parse, name)))
    await handler(gw, scope, receive, send)


def _parse(name: str, endpoint: Endpoint, body: bytes) -> dict[str, Any]:
    return validate.parse(endpoint, body, model=name)
