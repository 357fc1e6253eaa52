"""A fake Vertex AI upstream with its own OAuth token endpoint: a real HTTP server on loopback.

- ``POST /token``: Google's OAuth 2.0 token endpoint for service accounts (RFC 7523 JWT bearer
  grant): the form's ``assertion`` must be an RS256 JWT signed with the private key of a key file
  this fake wrote (``key_file``), whose ``iss`` is that file's ``client_email``, ``aud`` Google's
  token endpoint (``AUDIENCE``) and ``scope`` cloud-platform. It answers ``{"access_token", "expires_in", "token_type"}``
  (``expires_in`` from ``lifetimes``, else ``lifetime``), or Google's ``400 {"error": "invalid_grant",
  "error_description": ...}``. ``refuse`` makes it refuse every grant; ``hold`` makes it wait.
- ``POST /{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  and ``:streamGenerateContent?alt=sse``: the Gemini API's wire format (``gemini_wire``);
  ``.../publishers/anthropic/models/{m}:rawPredict`` and ``:streamRawPredict``: Anthropic's Messages
  API (``anthropic_wire``) with Vertex's rules: ``anthropic_version: "vertex-2023-10-16"`` (or the
  dated API version newer SDKs send) in the body and no ``model`` there. Each needs ``Authorization: Bearer <a token this fake issued and
  that has not expired>``, else Google's 401 UNAUTHENTICATED.

Everything is recorded (``requests``, ``grants``); the server runs in a background thread::

    with FakeVertex() as fake:
        key = fake.key_file(tmp_path / "sa.json")
        ...  # providers: {v: {type: vertex, base_url: fake.url, project: p, location: us-east5, credentials: [{key_file: key}]}}
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes import anthropic_wire, gemini_wire
from tests.fakes.loopback import LoopbackServer

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AUDIENCE = "https://oauth2.googleapis.com/token"  # the aud of every service-account grant, whatever the token_uri (as Google checks it)
ANTHROPIC_VERSION = "vertex-2023-10-16"  # the documented value (Anthropic's and Google's docs), what faregate sends
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")  # newer anthropic SDKs (AnthropicVertex) send their API version there instead
_PATH = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+):([A-Za-z]+)$")


@dataclass(frozen=True)
class Grant:
    """One token the fake issued."""

    token: str
    email: str
    issued: float
    expires: float


@dataclass(frozen=True)
class Recorded:
    """One model request as the fake received it."""

    path: str
    query: str
    headers: dict[str, str]
    json: Any | None
    publisher: str | None
    model: str | None
    method: str | None

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def google_error(code: int, status: str, message: str) -> tuple[int, bytes]:
    return code, orjson.dumps({"error": {"code": code, "message": message, "status": status}})


class FakeVertex(LoopbackServer):
    NAME = "fake Vertex upstream"

    def __init__(self) -> None:
        super().__init__()
        self.lifetime = 3600  # expires_in of a token when ``lifetimes`` is empty
        self.lifetimes: deque[int] = deque()  # expires_in of the next tokens, in order
        self.refuse = False  # every grant is refused (400 invalid_grant)
        self.hold: threading.Event | None = None  # token requests wait until it is set (30 s at most)
        self.project: str | None = None  # when set, another project in the URL is a 403
        self.replies: deque[tuple[int, bytes]] = deque()  # (status, body) answered to the next model requests instead
        self.claude: deque[anthropic_wire.Behaviour] = deque()  # how the next Claude requests are answered (default: the text)
        self.gemini: deque[gemini_wire.Behaviour] = deque()  # how the next Gemini requests are answered (default: the text)
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.RLock()  # re-entered by wait_for's condition, which reads grants and requests
        self._changed = threading.Condition(self._lock)
        self._grants: list[Grant] = []
        self._token_requests = 0
        self._requests: list[Recorded] = []

    # -- lifecycle ----------------------------------------------------------------
    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()  # a held token request lets go, so the server can stop
        super().stop()

    # -- test-facing --------------------------------------------------------------
    def key_file(self, path: Path, email: str = "faregate-test@fake-project.iam.gserviceaccount.com", trusted: bool = True) -> Path:
        """Write a service-account key file with a new RSA key; ``trusted``: this fake knows its public key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        info = {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        }
        if trusted:
            with self._lock:
                self._keys[email] = key.public_key()
        path.write_text(json.dumps(info, indent=2))
        return path

    @property
    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants)

    @property
    def token_requests(self) -> int:
        with self._lock:
            return self._token_requests

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, condition: Any, timeout: float = 30.0) -> bool:
        """Wait until ``condition(fake)`` holds (checked on every grant and request)."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout)

    # -- the token endpoint ---------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            return await self._token(request)
        return await self._model(request)

    def _refusal(self, description: str) -> web.Response:
        return web.json_response({"error": "invalid_grant", "error_description": description}, status=400)

    async def _token(self, request: web.Request) -> web.Response:
        with self._changed:
            self._token_requests += 1
            self._changed.notify_all()
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, 30)
        form = parse_qs((await request.read()).decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or len(form.get("assertion", [])) != 1:
            return web.json_response({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}, status=400)
        if self.refuse:
            return self._refusal("Invalid JWT Signature.")
        claims = self._verified(form["assertion"][0])
        if isinstance(claims, str):
            return self._refusal(claims)
        lifetime = self.lifetimes.popleft() if self.lifetimes else self.lifetime
        now = time.time()
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._changed:
            self._grants.append(Grant(token, claims["iss"], now, now + lifetime))
            self._changed.notify_all()
        return web.json_response({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def _verified(self, assertion: str) -> dict[str, Any] | str:
        """The JWT's claims when its RS256 signature and claims are right, else Google's description."""
        try:
            head, body, signature = assertion.split(".")
            header, claims = json.loads(_b64(head)), json.loads(_b64(body))
        except ValueError:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        key = self._keys.get(claims.get("iss", ""))
        if header.get("alg") != "RS256" or key is None:
            return "Invalid JWT Signature."
        try:
            key.verify(_b64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        if claims.get("aud") != AUDIENCE or SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: audience or scope."
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time() - 60:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        return dict(claims)

    # -- the models -------------------------------------------------------------------
    async def _model(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = None
        found = _PATH.match(request.path)
        rec = Recorded(
            request.path, request.query_string, {k.lower(): v for k, v in request.headers.items()}, payload,
            found.group(4) if found else None, found.group(5) if found else None, found.group(6) if found else None,
        )  # fmt: skip
        with self._changed:
            self._requests.append(rec)
            self._changed.notify_all()
        if found is None:
            return _send(*google_error(404, "NOT_FOUND", f"The requested URL {request.path} was not found on this server."))
        if not self._authorized(rec.bearer):
            return _send(
                *google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.")
            )
        if self.project is not None and found.group(2) != self.project:
            return _send(*google_error(403, "PERMISSION_DENIED", f"Permission denied on resource project {found.group(2)}."))
        if self.replies:
            return _send(*self.replies.popleft())
        if rec.publisher == "anthropic":
            return await self._anthropic(request, rec, payload)
        return await self._gemini(request, rec, payload)

    def _authorized(self, token: str | None) -> bool:
        now = time.time()
        with self._lock:
            return any(g.token == token and g.expires > now for g in self._grants)

    async def _anthropic(self, request: web.Request, rec: Recorded, payload: Any) -> web.StreamResponse:
        if rec.method not in ("rawPredict", "streamRawPredict"):
            return _send(*google_error(400, "INVALID_ARGUMENT", f"Method {rec.method} is not supported for Anthropic models."))
        version = payload.get("anthropic_version") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not (version == ANTHROPIC_VERSION or _DATED.fullmatch(str(version))):
            return _anthropic_error(400, f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'")
        if "model" in payload:
            return _anthropic_error(400, "model: Extra inputs are not permitted")
        if (payload.get("stream") is True) != (rec.method == "streamRawPredict"):
            return _anthropic_error(400, "stream: streamRawPredict streams, rawPredict does not")
        behaviour = self.claude.popleft() if self.claude else anthropic_wire.Behaviour()
        content = anthropic_wire.reply_content(payload, behaviour, "Hello from Claude on the fake Vertex.")
        reply = anthropic_wire.message(
            {**payload, "model": rec.model}, content, behaviour, anthropic_wire.reply_usage(payload, content, behaviour)
        )
        if rec.method == "rawPredict":
            return _send(200, orjson.dumps(reply))
        resp = web.StreamResponse(status=200, headers={"content-type": anthropic_wire.SSE_CONTENT_TYPE})
        await resp.prepare(request)
        for _, event in anthropic_wire.stream_events(reply, behaviour.chunks):
            await resp.write(event)
        await resp.write_eof()
        return resp

    async def _gemini(self, request: web.Request, rec: Recorded, payload: Any) -> web.StreamResponse:
        if rec.method not in ("generateContent", "streamGenerateContent"):
            return _send(*google_error(400, "INVALID_ARGUMENT", f"Method {rec.method} is not supported."))
        problem = gemini_wire.check_generate(payload)
        if problem is not None:
            return _send(*google_error(400, "INVALID_ARGUMENT", problem))
        for i, content in enumerate(payload["contents"]):
            if content.get("role") not in ("user", "model"):  # Vertex, unlike AI Studio, requires the role
                return _send(*google_error(400, "INVALID_ARGUMENT", f"Please use a valid role: user, model. (contents[{i}].role)"))
        behaviour = self.gemini.popleft() if self.gemini else gemini_wire.Behaviour()
        parts = gemini_wire.reply_parts(behaviour, "Hello from Gemini on the fake Vertex.")
        meta = gemini_wire.count_usage(payload, parts, behaviour)
        model = rec.model or ""
        if rec.method == "generateContent":
            return _send(200, orjson.dumps(gemini_wire.response(model, parts, behaviour, meta)))
        if request.query.get("alt") != "sse":
            return _send(*google_error(400, "INVALID_ARGUMENT", "this fake streams only with alt=sse"))
        resp = web.StreamResponse(status=200, headers={"content-type": gemini_wire.SSE_CONTENT_TYPE})
        await resp.prepare(request)
        for event in gemini_wire.stream_chunks(model, parts, behaviour, meta):
            await resp.write(event)
        await resp.write_eof()
        return resp


def _send(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _anthropic_error(status: int, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
