"""Talking to a running gateway from the CLI: a small JSON-over-HTTP call and `verify`'s comparison."""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faregate.generation import Generation

SILENT_SECONDS = 2.5  # a worker whose heartbeat is older than this is reported as unresponsive
DEAD_SECONDS = 3.5  # older than this, it is gone (crashed or stopped): listed, not counted


def call(method: str, url: str, path: str, key: str | None, body: dict[str, Any] | None, timeout: float) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)  # noqa: S310 - an operator-given URL
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {"error": {"message": f"HTTP {exc.code}"}}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, {"error": {"message": f"cannot reach {url}: {getattr(exc, 'reason', exc)}"}}


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP(S)_PROXY: for a gateway on this host
_DEFAULT = urllib.request.build_opener()  # honours HTTP(S)_PROXY and NO_PROXY, like any HTTP client


def _opener(url: str) -> urllib.request.OpenerDirector:
    """The gateway on this machine is never reached through an outbound proxy (a corporate
    HTTP(S)_PROXY would otherwise carry `faregate reload` to the proxy, which cannot reach our
    loopback); a gateway elsewhere is reached as any HTTP client would."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return _DIRECT
    try:
        return _DIRECT if ipaddress.ip_address(host).is_loopback else _DEFAULT
    except ValueError:
        return _DEFAULT


def opener(url: str) -> urllib.request.OpenerDirector:
    """The opener ``call`` uses for ``url``, for a caller that reads a response as it arrives
    (doctor's streaming self-test)."""
    return _opener(url)


@dataclass(frozen=True)
class Row:
    worker: str
    generation: str
    state: str  # match | MISMATCH | UNRESPONSIVE | gone
    detail: str


def compare(generation: Generation, workers: dict[str, Any]) -> tuple[list[Row], bool]:
    """Each worker's credential fingerprints against the config's; ok only if every live worker matches."""
    expected = {c.label for p in generation.providers.values() for c in p.credentials}
    rows: list[Row] = []
    ok = True
    now = time.time()
    listed = workers.get("workers", [])
    for w in listed:
        age = float(w.get("last_heartbeat_age_s", now))
        have = set(w.get("credentials", []))
        if age > DEAD_SECONDS or not w.get("live", True):
            rows.append(Row(w["id"], w["generation"], "gone", f"not live (last heartbeat {age:.1f}s ago); not counted"))
            continue
        if age > SILENT_SECONDS:
            ok = False
            rows.append(Row(w["id"], w["generation"], "UNRESPONSIVE", f"no heartbeat for {age:.1f}s"))
            continue
        if have == expected:
            rows.append(Row(w["id"], w["generation"], "match", ""))
            continue
        ok = False
        parts = []
        if expected - have:
            parts.append("missing " + ", ".join(sorted(expected - have)))
        if have - expected:
            parts.append("still using " + ", ".join(sorted(have - expected)))
        rows.append(Row(w["id"], w["generation"], "MISMATCH", "; ".join(parts)))
    if not any(r.state != "gone" for r in rows):
        ok = False
        rows.append(Row("-", "-", "MISMATCH", "no live worker reported"))
    return rows, ok
