"""Google service-account key files, and the OAuth access tokens google-auth mints from them (type vertex).

The key file's JSON is the credential's secret: its fingerprint names the credential
(``vertex/<id>:<fingerprint>``), as a one-line key's does. A token is minted by google-auth's
service-account flow: a JWT assertion signed with the file's private key, exchanged at the file's
``token_uri`` for an access token with the ``cloud-platform`` scope. google-auth's HTTP is
synchronous (urllib3 here): ``mint`` blocks and is run in a thread (``credentials.minted``).

Nothing here logs: google-auth's own debug logging (which would show the signed assertion) is
kept off, and errors carry the token endpoint's error code and description, never a key or a token.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import google.auth.exceptions
import urllib3
from google.auth.transport.urllib3 import Request
from google.oauth2 import service_account

from faregate.credentials.refs import RefError
from faregate.errors import CredentialRejected, UpstreamConnectionError, UpstreamError, UpstreamServerError
from faregate.types import Secret

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
FIELDS = ("client_email", "private_key", "token_uri")  # what a service-account key file must hold (beside its type)
DEFAULT_LIFETIME = 3600.0  # seconds, when the token endpoint names no expiry (Google's tokens last an hour)
ERROR_CHARS = 200

logging.getLogger("google.auth").setLevel(logging.INFO)  # its DEBUG request log would show the signed assertion


def read_key_file(path: str, base_dir: Path) -> Secret:
    """A service-account key file's JSON as the credential's secret; RefError (never showing the
    file's content) when it is missing, unreadable or no service-account key google-auth can use."""
    file = Path(path)
    if not file.is_absolute():
        file = base_dir / file
    try:
        text = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise RefError(f"key file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RefError(f"key file {file} cannot be read: {type(exc).__name__}") from None
    info = _info(text)
    if info is None:
        raise RefError(f"key file {file} is not JSON: a vertex credential is a service-account key file (JSON)")
    if info.get("type") != "service_account":
        raise RefError(f'key file {file} is not a service-account key (its "type" must be "service_account")')
    missing = [name for name in FIELDS if not isinstance(info.get(name), str) or not info[name]]
    if missing:
        raise RefError(f"key file {file} lacks {', '.join(missing)}: download a new JSON key for the service account")
    try:
        service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError):
        raise RefError(f"key file {file}: its private_key cannot be read (not a PEM-encoded RSA private key)") from None
    return Secret(text)


def _info(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def private_parts(secret: Secret) -> tuple[Secret, ...]:
    """The parts of a key file that are secrets on their own (its private key), for scrubbing."""
    info = _info(secret.reveal()) or {}
    key = info.get("private_key")
    return (Secret(key.strip()),) if isinstance(key, str) and key.strip() else ()


class _Request(Request):
    """google-auth's urllib3 transport (urllib3 is a dependency already; ``requests`` is not) with
    one timeout for every HTTP call of a minting."""

    def __init__(self, http: urllib3.PoolManager, timeout: float) -> None:
        super().__init__(http)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers, timeout=self._timeout, **kwargs)  # type: ignore[no-untyped-call]


def mint(label: str, secret: Secret, timeout: float) -> tuple[Secret, float]:
    """(access token, Unix time it expires) minted from a key file's secret. Blocks (run it in a
    thread). Raises CredentialRejected when the token endpoint refuses the key (invalid_grant, a
    deleted key, a disabled account), UpstreamServerError when it fails (5xx, an unreadable answer),
    UpstreamConnectionError when it cannot be reached; each message names ``label``."""
    info = _info(secret.reveal())
    if info is None:
        raise CredentialRejected(f"credential {label}: its key file is not JSON")
    try:
        creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError):
        raise CredentialRejected(f"credential {label}: its key file's private_key cannot be read") from None
    with urllib3.PoolManager(retries=False) as http:
        try:
            creds.refresh(_Request(http, timeout))
        except google.auth.exceptions.RefreshError as exc:
            raise _refused(label, exc) from None
        except google.auth.exceptions.TransportError as exc:
            raise UpstreamConnectionError(f"credential {label}: the token endpoint cannot be reached ({_cause(exc)})") from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise UpstreamServerError(f"credential {label}: minting a token failed ({type(exc).__name__})") from None
    token = creds.token
    if not isinstance(token, str) or not token:
        raise UpstreamServerError(f"credential {label}: the token endpoint answered without an access token")
    expiry = creds.expiry
    if isinstance(expiry, datetime.datetime):  # google-auth's expiry is naive UTC
        expires = expiry.replace(tzinfo=datetime.UTC).timestamp()
    else:
        expires = datetime.datetime.now(datetime.UTC).timestamp() + DEFAULT_LIFETIME
    return Secret(token), expires


def _refused(label: str, exc: google.auth.exceptions.RefreshError) -> UpstreamError:
    """The token endpoint's refusal: its OAuth error code and description (RFC 6749, 5.2), shortened."""
    detail = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(detail, dict):
        code, text = detail.get("error"), detail.get("error_description")
        said = ": ".join(str(x) for x in (code, text) if isinstance(x, str) and x) or "no error code"
    else:
        said = str(exc.args[0]) if exc.args else type(exc).__name__
    said = said[:ERROR_CHARS]
    if getattr(exc, "retryable", False):
        return UpstreamServerError(f"credential {label}: the token endpoint failed ({said})")
    return CredentialRejected(f"credential {label}: the token endpoint refused its key ({said})")


def _cause(exc: Exception) -> str:
    """The name of the underlying network error (its text may hold a URL with query parameters)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    return type(inner).__name__
