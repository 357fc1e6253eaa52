"""The dashboard's request and response: a parsed ASGI request (``Request``), whole responses
(``Response``: HTML, JSON, a relative redirect, a static file), the security headers every answer
carries, and the jinja2 environment (autoescape on for every template, undefined names an error)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from faregate.gateway import Gateway

if TYPE_CHECKING:
    import jinja2

    from faregate.dashboard.sessions import Session

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MOUNT = "/ui"
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
STATIC_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
STATIC: dict[str, tuple[bytes, bytes]] = {
    item.name: (item.read_bytes(), STATIC_TYPES[item.name[item.name.rfind(".") :]])
    for item in resources.files("faregate.dashboard").joinpath("static").iterdir()
    if item.name[item.name.rfind(".") :] in STATIC_TYPES
}


@cache
def templates() -> jinja2.Environment:
    """Built on the first page a worker renders (a worker that never serves /ui never loads jinja2)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("faregate.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name: client-controlled strings are text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class FormTooLarge(Exception):
    pass


@dataclass
class Request:
    """One request to /ui: ``page`` is the path below /ui/ ("" for the overview, "deployments", ...),
    ``base`` the relative way back to /ui/ from it ("./", "../" ...): every link and redirect is
    ``base + page``, so the dashboard works behind any path prefix."""

    gw: Gateway
    scope: Scope
    method: str
    page: str
    base: str
    query: dict[str, str]
    cookies: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    session: Session | None = None

    @property
    def client_ip(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "unknown"

    @property
    def https(self) -> bool:
        """Served over HTTPS: the request's scheme (uvicorn already takes X-Forwarded-Proto from a
        loopback proxy), or a loopback proxy's X-Forwarded-Proto."""
        if self.scope.get("scheme") == "https":
            return True
        return _loopback(self.client_ip) and self.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(gw: Gateway, scope: Scope) -> Request:
    path: str = scope["path"]
    page = path[len(MOUNT) + 1 :] if path.startswith(MOUNT + "/") else ""
    depth = page.count("/")
    base = "../" * depth if depth else "./"
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=50).items()}
    headers: dict[str, str] = {}
    for k, v in scope["headers"]:
        headers.setdefault(k.decode("latin-1"), v.decode("latin-1"))
    cookies: dict[str, str] = {}
    try:
        jar: SimpleCookie = SimpleCookie(headers.get("cookie", ""))
        cookies = {k: m.value for k, m in jar.items()}
    except CookieError:
        pass
    return Request(gw, scope, scope["method"], page, base, query, cookies, headers=headers)


async def read_form(request: Request, receive: Receive) -> None:
    """An application/x-www-form-urlencoded (or empty) body into ``request.form``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise FormTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks).decode("utf-8", "replace")
    request.form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True, max_num_fields=100).items()}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Send) -> None:
        head = [(b"content-type", self.content_type), (b"content-length", str(len(self.body)).encode()), *SECURITY_HEADERS, *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": head})
        await send({"type": "http.response.body", "body": self.body})


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A page: ``template`` (under dashboard/templates) with ``base``, ``page``, ``session`` and
    ``csrf`` (the token every form and fetch sends back) besides ``context``."""
    session = request.session
    csrf = session.csrf if session is not None else context.pop("csrf", "")
    html = templates().get_template(template).render(base=request.base, page=request.page, session=session, csrf=csrf, **context)
    return Response(status, html.encode(), b"text/html; charset=utf-8")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(body), b"application/json")


def redirect(request: Request, target: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    """303 to ``target``, a page name below /ui/ ("" for the overview), as a relative Location."""
    return Response(303, b"", b"text/plain; charset=utf-8", [(b"location", (request.base + target).encode()), *(headers or [])])


def static(name: str) -> Response | None:
    found = STATIC.get(name)
    return Response(200, found[0], found[1]) if found is not None else None


Handler = Callable[[Request], Awaitable[Response]]
