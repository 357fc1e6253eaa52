"""The OpenAI-compatible routes: the proxied ones share the request life in ``server/proxy.py``
(with the OpenAI front: ``validate.parse`` and OpenAI's error body); the model list is answered here."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import FaregateError, MethodNotAllowed, ModelNotFound
from faregate.gateway import Gateway
from faregate.server.auth import authenticate
from faregate.server.http import Receive, Scope, Send, send_bytes, send_error
from faregate.server.proxy import OPENAI, proxy

CHAT = proxy("chat", OPENAI)
COMPLETIONS = proxy("completions", OPENAI)
EMBEDDINGS = proxy("embeddings", OPENAI)


async def models(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    snap = gw.keyring.current
    try:
        principal = await authenticate(gw, snap, scope)
    except FaregateError as err:
        await send_error(send, err)
        return
    created = int(snap.generation.loaded_at)
    names = sorted(name for name in snap.generation.models if principal is None or principal.allows(name))  # only what the key may use
    data = [_model_object(name, created) for name in names]
    await send_bytes(
        send,
        200,
        orjson.dumps({"object": "list", "data": data}),
        b"application/json",
        [(b"x-faregate-generation", snap.generation.id.encode())],
    )


async def model(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """`GET /v1/models/{id}` (and `/models/{id}`; an id may hold slashes): the model if this key may
    use it, else 404 ``model_not_found``, the same for a model that does not exist and for one the
    key may not use, so nothing about other keys' models is revealed."""
    snap = gw.keyring.current
    name = scope["path"].partition("/models/")[2]
    try:
        principal = await authenticate(gw, snap, scope)
        if scope["method"] != "GET":
            await send_error(send, MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use GET"), [(b"allow", b"GET")])
            return
        if name not in snap.generation.models or (principal is not None and not principal.allows(name)):
            raise ModelNotFound(f"the model {name[:200]!r} does not exist or this API key may not use it", param="model")
    except FaregateError as err:
        await send_error(send, err)
        return
    body = orjson.dumps(_model_object(name, int(snap.generation.loaded_at)))
    await send_bytes(send, 200, body, b"application/json", [(b"x-faregate-generation", snap.generation.id.encode())])


def _model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "faregate"}
