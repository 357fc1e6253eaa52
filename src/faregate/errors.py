"""Every failure faregate can report, and how each one looks on the wire.

The tree (one class per failure a client or an operator must tell apart)::

    FaregateError                      status  type / code
    ├── RequestError                   4xx     our verdict on the client's request
    │   ├── InvalidRequest             400     invalid_request_error / invalid_request | invalid_json | missing_field | invalid_type
    │   ├── BodyTooLarge               413     invalid_request_error / request_too_large
    │   ├── AuthenticationFailed       401     authentication_error / invalid_api_key
    │   ├── PermissionDenied           403     permission_error / model_not_allowed | model_unpriced | origin_not_allowed (CORS)
    │   ├── BudgetExceeded             429     budget_exceeded / budget_exceeded (ours, not the provider's quota)
    │   ├── RateLimitExceeded          429     rate_limit_exceeded / rate_limit_exceeded (ours: a key's, team's or deployment's rpm/tpm/parallel)
    │   ├── ModelNotFound              404     invalid_request_error / model_not_found
    │   ├── RouteNotFound              404     invalid_request_error / unknown_url | key_not_found | team_not_found | deployment_not_found
    │   ├── AlreadyExists              409     invalid_request_error / already_exists (a unique name is taken)
    │   ├── MethodNotAllowed           405     invalid_request_error / method_not_allowed
    │   ├── HeadersTooLarge            431     invalid_request_error / request_headers_too_large (server.max_header_bytes, max_headers)
    │   └── RequestTimeout             408     invalid_request_error / request_timeout (server.header_timeout, body_timeout)
    ├── UpstreamError                  —       one attempt on one deployment failed (collected, rarely shown alone)
    │   ├── UpstreamRejected           4xx     the provider refused the request itself: passed through to the client
    │   ├── CredentialRejected         401/403 the provider refused our credential: try the next deployment
    │   ├── UpstreamModelMissing       404/400 the provider has no model of the deployment's name (misspelt, not
    │   │                                      deployed, not pulled): the deployment is misconfigured, try the next
    │   ├── UpstreamRateLimited        429     the provider's rate limit or quota: cool the deployment down
    │   ├── UpstreamServerError        5xx     the provider failed
    │   ├── UpstreamTimeout            —       connect, first byte or idle timeout
    │   ├── UpstreamConnectionError    —       refused, reset, DNS, TLS
    │   └── UpstreamProtocolError      —       a reply we cannot read (bad JSON, truncated body)
    ├── UpstreamReplyTooLarge          502     upstream_error / upstream_reply_too_large (a reply over
    │                                          server.max_reply_bytes; not retried elsewhere: see the class)
    ├── NoDeploymentAvailable          503     service_unavailable / no_deployment_available (names every deployment's reason)
    │   ├── UpstreamLimited            429     upstream_error / upstream_rate_limited | upstream_insufficient_quota (every
    │   │                                      deployment tried was refused by its provider's limit or quota)
    │   └── DeploymentMisconfigured    503     service_unavailable / deployment_misconfigured (nothing answered and at least
    │                                          one deployment is misconfigured: names each with its upstream model and
    │                                          the closest known names; Anthropic type api_error, not overloaded_error)
    ├── KeyStoreUnavailable            503     service_unavailable / key_store_unavailable (a dependency failed: never 401)
    ├── TooManyConnections             503     service_unavailable / too_many_connections (server.max_connections, per worker)
    └── InternalError                  500     server_error / internal_error (a bug: logged with its traceback, never shown)

    ConfigError                        —       a config that cannot be used; carries every problem with its path

Only ``upstream.py`` turns the HTTP client's exceptions into ``UpstreamError``s; provider
adapters turn provider error *bodies* into them. Their texts may repeat what the upstream said
(and so a key it echoed): the pipeline scrubs each one with ``UpstreamError.redact`` where an
attempt's errors are caught, before the error is used anywhere (reasons, 503s, cooldowns, logs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, overload

import orjson


class FaregateError(Exception):
    """Base of every error faregate reports to a client."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"
    anthropic_kind: str | None = None  # Anthropic's error type when not the one of its status (``anthropic_type``)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers this error implies (e.g. Retry-After)."""
        return []

    def openai_body(self) -> bytes:
        return openai_error_body(self.message, self.type, self.code, self.param)

    def anthropic_body(self) -> bytes:
        """The same error in Anthropic's shape, for the /v1/messages routes: the type by status
        (``anthropic_type``) unless the class names its own, faregate's precise message unchanged."""
        return anthropic_error_body(self.message, self.anthropic_kind or anthropic_type(self.status))


def openai_error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


# Anthropic's error types by HTTP status. Faregate's own codes (budget_exceeded, rate_limit_exceeded,
# model_not_found, no_deployment_available, ...) have no field in Anthropic's error object; the
# message names them, and the status and type say what an Anthropic client needs to act on:
# 429 is rate_limit_error (budget or rate limit), 503 is overloaded_error (nothing could serve right
# now, retry later: what Anthropic clients retry on), any other 5xx api_error, any other 4xx
# invalid_request_error.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_type(status: int) -> str:
    return ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def anthropic_error_body(message: str, type_: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


class RequestError(FaregateError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(RequestError):
    pass


class BodyTooLarge(RequestError):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(RequestError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(RequestError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class BudgetExceeded(RequestError):
    status = 429
    type = "budget_exceeded"
    code = "budget_exceeded"


class RateLimitExceeded(RequestError):
    """One of our own limits (a key's, a team's or a deployment's rpm, tpm or parallel requests)."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.extra_headers = headers or []

    def headers(self) -> list[tuple[bytes, bytes]]:
        extra = list(self.extra_headers)
        if self.retry_after is not None:
            extra.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return extra


class ModelNotFound(RequestError):
    status = 404
    code = "model_not_found"


class RouteNotFound(RequestError):
    status = 404
    code = "unknown_url"


class AlreadyExists(RequestError):
    status = 409
    code = "already_exists"


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"


class HeadersTooLarge(RequestError):
    status = 431
    code = "request_headers_too_large"


class RequestTimeout(RequestError):
    status = 408
    code = "request_timeout"


class Scrub(Protocol):
    """``Generation.scrub``: removes every secret of a generation from a text."""

    @overload
    def __call__(self, data: str, /) -> str: ...
    @overload
    def __call__(self, data: bytes, /) -> bytes: ...


class UpstreamError(FaregateError):
    """One attempt failed. ``reason`` is the short operator-facing phrase used in 503 messages."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    credential_scoped = False  # set when only the credential failed: the deployment may be retried with another
    before = b""  # mid-stream: the complete events that arrived with the bad one, to send before the error event

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.reason = reason
        self.upstream_status = status

    def redact(self, scrub: Scrub) -> None:
        """Scrub every text of this error that may come from the upstream (its message, code, the
        reason built from them) and only then cut the reason to ``REASON_CHARS`` (cutting first
        could leave part of a secret). The pipeline calls this once, where an attempt's errors are
        caught, before the error is used anywhere."""
        reason = scrub(self.reason)
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 3] + "..."
        self.reason = self.message = reason
        self.args = (reason,)
        if self.code is not None:
            self.code = scrub(self.code)


REASON_CHARS = 200  # an upstream's message in a reason: enough to tell what failed, short enough for a 503 naming several


class UpstreamRejected(UpstreamError):
    """A provider 4xx about the request itself; the client gets the provider's status and message."""

    def __init__(self, reason: str, *, status: int, body: bytes, content_type: bytes) -> None:
        super().__init__(reason, status=status)
        self.body = body
        self.content_type = content_type

    def redact(self, scrub: Scrub) -> None:
        super().redact(scrub)
        self.body = scrub(self.body)


class CredentialRejected(UpstreamError):
    pass


class UpstreamModelMissing(UpstreamError):
    """The provider says the deployment's upstream model does not exist there (OpenAI's 404
    ``model_not_found``, Anthropic's 404 ``model: ...``, Ollama's "try pulling it first", ...;
    ``providers.base.model_missing``). Not the client's fault and not passed through: the
    deployment is marked misconfigured until the next reload or a probe that succeeds, and the
    request goes on to the next deployment."""


class UpstreamRateLimited(UpstreamError):
    def __init__(self, reason: str, *, status: int = 429, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, status=status, code=code)
        self.retry_after = retry_after


class UpstreamServerError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamConnectionError(UpstreamError):
    pass


class UpstreamProtocolError(UpstreamError):
    pass


class UpstreamReplyTooLarge(FaregateError):
    """A reply longer than ``server.max_reply_bytes``: reading stopped there and the connection was
    dropped. Not an ``UpstreamError``, so it is not retried on another deployment and does not cool
    this one down: the upstream did its work (and billed it), and another deployment of the same
    model would produce a reply as large for the same request."""

    status = 502
    type = "upstream_error"
    code = "upstream_reply_too_large"


class NoDeploymentAvailable(FaregateError):
    status = 503
    type = "service_unavailable"
    code = "no_deployment_available"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


class UpstreamLimited(NoDeploymentAvailable):
    """Every deployment that could serve was refused by its provider's rate limit or quota (429):
    the provider's limit, not ours, and not an outage."""

    status = 429
    type = "upstream_error"
    code = "upstream_rate_limited"


class DeploymentMisconfigured(NoDeploymentAvailable):
    """Nothing answered, and at least one deployment of the model is misconfigured (its provider
    said its upstream model does not exist). 503 as every "nothing could serve" (the gateway's
    config is wrong, not the client's request; a 4xx would tell the client to change a request
    that is right). The message names each misconfigured deployment, its upstream model and the
    closest names known, and the other deployments' reasons. For an Anthropic client the type is
    ``api_error``, not ``overloaded_error``: nothing is overloaded, and waiting will not fix it."""

    code = "deployment_misconfigured"
    anthropic_kind = "api_error"


class KeyStoreUnavailable(FaregateError):
    status = 503
    type = "service_unavailable"
    code = "key_store_unavailable"


class TooManyConnections(FaregateError):
    status = 503
    type = "service_unavailable"
    code = "too_many_connections"


class InternalError(FaregateError):
    pass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or worth a warning) in a config, with the path where it is."""

    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}" if self.path else f"{self.severity}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` lists every error (and the warnings found with them)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("; ".join(str(p) for p in errors) or "invalid config")
