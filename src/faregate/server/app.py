"""The route table and the middleware order, on one screen."""

from __future__ import annotations

import logging

from faregate.config import runtime
from faregate.errors import MethodNotAllowed, RouteNotFound
from faregate.gateway import Gateway
from faregate.observability import logging as logs
from faregate.server import admin_api, admin_keys, admin_spend, admin_teams, openai_api, ops_api
from faregate.server.http import Receive, Scope, Send, send_error
from faregate.server.middleware import ErrorGuard
from faregate.server.openai_api import Handler

log = logging.getLogger("faregate.server")

ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": openai_api.proxy("chat")},
    "/v1/completions": {"POST": openai_api.proxy("completions")},
    "/v1/embeddings": {"POST": openai_api.proxy("embeddings")},
    "/v1/models": {"GET": openai_api.models},
    "/healthz": {"GET": ops_api.healthz},
    "/readyz": {"GET": ops_api.readyz},
    "/metrics": {"GET": ops_api.metrics},
    "/admin/reload": {"POST": admin_api.reload},
    "/admin/workers": {"GET": admin_api.workers},
    "/admin/credentials": {"GET": admin_api.credentials},
    "/cache/purge": {"POST": admin_api.purge},
    "/admin/keys": {"GET": admin_keys.handle, "POST": admin_keys.handle},
    "/admin/teams": {"GET": admin_teams.handle, "POST": admin_teams.handle},
    "/admin/spend": {"GET": admin_spend.aggregate},
    "/admin/spend/logs": {"GET": admin_spend.logs},
}
PREFIXES: dict[str, Handler] = {"/admin/keys/": admin_keys.handle, "/admin/teams/": admin_teams.handle}  # /admin/keys/{id}[/rotate|/revoke]
# the same routes without /v1, as OpenAI clients configured with a bare base URL send them
ROUTES.update({path.removeprefix("/v1"): methods for path, methods in list(ROUTES.items()) if path.startswith("/v1/")})


class Router:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        methods = ROUTES.get(scope["path"])
        if methods is None:
            for prefix, prefixed in PREFIXES.items():
                if scope["path"].startswith(prefix):
                    await prefixed(self.gateway, scope, receive, send)
                    return
            await send_error(send, RouteNotFound(f"unknown URL {scope['method']} {scope['path']!r}; the routes are listed in the README"))
            return
        handler = methods.get(scope["method"])
        if handler is None:
            allowed = ", ".join(methods)
            await send_error(
                send,
                MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use {allowed}"),
                [(b"allow", allowed.encode())],
            )
            return
        await handler(self.gateway, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(gateway: Gateway) -> ErrorGuard:
    return ErrorGuard(Router(gateway))


def create_app() -> ErrorGuard:
    """uvicorn factory: each worker process builds its own Gateway from the config file."""
    settings = runtime.current()
    logs.setup(settings.log_level)  # worker processes start with no logging configured
    return build_app(Gateway(settings.config_path, settings.metrics_dir, settings.instance))
