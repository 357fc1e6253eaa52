"""The route table and the middleware order, on one screen."""

from __future__ import annotations

import logging

from faregate.config import runtime
from faregate.dashboard import app as dashboard
from faregate.errors import FaregateError, MethodNotAllowed, RouteNotFound
from faregate.gateway import Gateway
from faregate.observability import logging as logs
from faregate.server import (
    admin_api,
    admin_deployments,
    admin_keys,
    admin_spend,
    admin_teams,
    anthropic_api,
    azure_api,
    litellm_api,
    litellm_health,
    openai_api,
    openai_extra_api,
    ops_api,
    protocol,
    responses_api,
    selftest,
)
from faregate.server.auth import authenticate, authenticate_admin
from faregate.server.cors import Cors
from faregate.server.http import ASGIApp, Receive, Scope, Send, error_shape, send_error
from faregate.server.middleware import ErrorGuard
from faregate.server.proxy import Handler

log = logging.getLogger("faregate.server")

ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": openai_api.CHAT},
    "/v1/completions": {"POST": openai_api.COMPLETIONS},
    "/v1/embeddings": {"POST": openai_api.EMBEDDINGS},
    "/v1/moderations": {"POST": openai_extra_api.MODERATIONS},
    "/v1/images/generations": {"POST": openai_extra_api.IMAGES},
    "/v1/audio/transcriptions": {"POST": openai_extra_api.TRANSCRIPTIONS},  # multipart/form-data
    "/v1/audio/speech": {"POST": openai_extra_api.SPEECH},  # the reply is audio, relayed as it comes
    "/v1/responses": {"POST": responses_api.RESPONSES},
    "/v1/messages": {"POST": anthropic_api.MESSAGES},
    "/v1/messages/count_tokens": {"POST": anthropic_api.COUNT_TOKENS},
    "/v1/models": {"GET": openai_api.models},
    "/healthz": {"GET": ops_api.healthz, "HEAD": ops_api.healthz},
    "/readyz": {"GET": ops_api.readyz, "HEAD": ops_api.readyz},
    "/metrics": {"GET": ops_api.metrics},
    "/admin/reload": {"POST": admin_api.reload},
    "/admin/workers": {"GET": admin_api.workers},
    "/admin/credentials": {"GET": admin_api.credentials},
    "/admin/deployments": {"GET": admin_deployments.deployments},
    "/admin/status": {"GET": selftest.status},  # doctor --live: database, bus and Redis, each checked now
    "/admin/selftest/stream": {"GET": selftest.stream},  # doctor --live: timed SSE events, no provider called
    "/cache/purge": {"POST": admin_api.purge},
    "/admin/keys": {"GET": admin_keys.handle, "POST": admin_keys.handle},
    "/admin/teams": {"GET": admin_teams.handle, "POST": admin_teams.handle},
    "/admin/spend": {"GET": admin_spend.aggregate},
    "/admin/spend/logs": {"GET": admin_spend.logs},
    "/key/generate": {"POST": litellm_api.generate},  # LiteLLM-compatible management routes (README: LiteLLM compatibility)
    "/key/info": {"GET": litellm_api.info},
    "/key/update": {"POST": litellm_api.update},
    "/key/delete": {"POST": litellm_api.delete},
    "/key/regenerate": {"POST": litellm_api.regenerate},
    "/spend/logs": {"GET": litellm_api.spend_logs},
    "/model/info": {"GET": litellm_health.model_info},
    "/health": {"GET": litellm_health.health},
    "/health/liveliness": {"GET": litellm_health.liveliness},
    "/health/liveness": {"GET": litellm_health.liveliness},
    "/health/readiness": {"GET": litellm_health.readiness},
    "/ui": {"GET": dashboard.handle, "HEAD": dashboard.handle},  # redirected to /ui/ (relative)
}
PREFIXES: dict[str, Handler] = {
    "/ui/": dashboard.handle,  # the dashboard (faregate.dashboard): its pages, sign-in, static files
    "/admin/keys/": admin_keys.handle,  # /admin/keys/{id}[/rotate|/revoke]
    "/key/": litellm_api.regenerate,  # LiteLLM's /key/{key}/regenerate
    "/admin/teams/": admin_teams.handle,
    "/admin/deployments/": admin_deployments.handle,  # /admin/deployments/{label}/probe, the label URL-encoded
    "/v1/models/": openai_api.model,  # /v1/models/{id}, where an id may hold slashes
    "/models/": openai_api.model,
    "/openai/deployments/": azure_api.deployments,  # Azure's /openai/deployments/{name}/chat/completions (AzureOpenAI clients)
}
# the same routes without /v1, as clients configured with a bare base URL send them
ROUTES.update({path.removeprefix("/v1"): methods for path, methods in list(ROUTES.items()) if path.startswith("/v1/")})
# Azure's v1 API (an OpenAI client at https://RESOURCE.openai.azure.com/openai/v1) and AzureOpenAI's model list
ROUTES.update({"/openai" + path: ROUTES[path] for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models")})
ROUTES.update({"/openai/v1/responses": ROUTES["/v1/responses"], "/openai/responses": ROUTES["/v1/responses"]})  # AzureOpenAI's responses
ROUTES["/openai/models"] = ROUTES["/v1/models"]
# an unknown path under these is called unknown only to a caller with a valid key (else 401), so
# a bad key learns nothing from probing; the bare OpenAI paths count as proxied ones too
PROXIED = (
    "/v1/",
    "/chat/",
    "/completions",
    "/embeddings",
    "/models",
    "/messages",
    "/openai/",
    "/moderations",
    "/images/",
    "/audio/",
    "/responses",
)
ADMIN = ("/admin/", "/cache/")


class Router:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        methods = ROUTES.get(scope["path"])
        if methods is None:
            for prefix, prefixed in PREFIXES.items():
                if scope["path"].startswith(prefix):
                    await prefixed(self.gateway, scope, receive, send)
                    return
            await self._unknown(scope, send)
            return
        handler = methods.get(scope["method"])
        if handler is None:
            allowed = ", ".join(methods)
            await send_error(
                send,
                MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use {allowed}"),
                [(b"allow", allowed.encode())],
                error_shape(scope["path"]),
            )
            return
        await handler(self.gateway, scope, receive, send)

    async def _unknown(self, scope: Scope, send: Send) -> None:
        path = scope["path"]
        try:
            if path.startswith(ADMIN):
                authenticate_admin(self.gateway.keyring.current, scope)
            elif path.startswith(PROXIED):
                await authenticate(self.gateway, self.gateway.keyring.current, scope)
        except FaregateError as err:
            await send_error(send, err, [], error_shape(path))
            return
        await send_error(
            send, RouteNotFound(f"unknown URL {scope['method']} {path!r}; the routes are listed in the README"), [], error_shape(path)
        )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if "state" in scope:  # uvicorn hands the lifespan state to every connection's protocol
                    scope["state"][protocol.STATE_KEY] = protocol.ConnectionLimits.of(self.gateway.keyring.current.generation.server)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(gateway: Gateway) -> ASGIApp:
    """Cors (only when the config the process starts with sets ``server.cors``: nothing is wrapped,
    and nothing costs, otherwise) -> ErrorGuard -> Router."""
    app: ASGIApp = ErrorGuard(Router(gateway))
    if gateway.keyring.current.generation.server.cors is not None:
        app = Cors(app, lambda: gateway.keyring.current.generation.server.cors)
    return app


def create_app() -> ASGIApp:
    """uvicorn factory: each worker process builds its own Gateway from the config file."""
    settings = runtime.current()
    logs.setup(settings.log_level)  # worker processes start with no logging configured
    return build_app(Gateway(settings.config_path, settings.metrics_dir, settings.instance))
