"""AWS Signature Version 4 for one JSON POST, as botocore's ``SigV4Auth`` signs it (non-S3). Pure.

Why not botocore's signer on every request: measured on the 2-core test machine, ``SigV4Auth``
costs ~350-400 us per request (it builds an ``email.message`` header map and re-parses the URL
several times), this ~25 us; the bedrock transport signs every attempt on the hot path. The
result is the same bytes: tests/providers/test_bedrock_transport.py signs with both at one instant
and compares, and the fake Bedrock checks every request by recomputing it with botocore.

The canonical request (AWS "Create a canonical request"): method, the URI path with each segment
URI-encoded once more (non-S3 services), the empty query, the signed headers (lower-case names,
sorted, values with runs of whitespace collapsed) and the body's SHA-256. Headers signed: all
that are sent but ``user-agent`` (botocore's list of unsigned ones), plus ``host`` and
``x-amz-date``; ``x-amz-security-token`` for temporary keys.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = frozenset({"user-agent", "expect", "transfer-encoding", "x-amzn-trace-id", "authorization"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@lru_cache(maxsize=1024)
def _target(url: str) -> tuple[str, str]:
    """(the Host header value, the canonical URI) of ``url``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host, quote(parts.path or "/", safe="/~")


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: float | None = None,
) -> dict[str, str]:
    """``headers`` (lower-case names) with ``x-amz-date``, ``x-amz-security-token`` (temporary keys)
    and ``authorization`` added. ``now``: the signing time (default: the clock)."""
    moment = time.gmtime(time.time() if now is None else now)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", moment)
    date = stamp[:8]
    host, uri = _target(url)
    signed = {**headers, "x-amz-date": stamp}
    if session_token is not None:
        signed["x-amz-security-token"] = session_token
    canonical_headers = {"host": host}
    for name, value in signed.items():
        if name not in UNSIGNED:
            canonical_headers[name] = " ".join(value.split())
    names = sorted(canonical_headers)
    signed_names = ";".join(names)
    canonical = "\n".join(
        (method, uri, "", "".join(f"{n}:{canonical_headers[n]}\n" for n in names), signed_names, hashlib.sha256(body).hexdigest())
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(_signing_key(secret_access_key, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
    return signed
