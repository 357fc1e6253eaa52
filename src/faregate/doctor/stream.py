"""Doctor's streaming self-test: does the path in front of faregate deliver events as they are sent?

``GET /admin/selftest/stream`` (``server/selftest.py``) sends ``tick`` events a fixed interval
apart, each carrying the time since the first *as the gateway sent it*, with the headers every
proxied stream carries. This module reads that stream through ``--url`` as a client would (with
``Accept-Encoding: gzip, deflate``, as the SDKs send it), notes when each event arrives, and
compares the two spreads: sent over ``S`` seconds, arrived over ``A`` seconds.

The verdict leaves a wide margin either side, so a loaded machine does not change it: one by one
when ``A >= S / 2``; a burst when ``A < S / 4`` (a buffering proxy holds every event until the
stream ends, so ``A`` is about zero); uneven in between. The response headers say who is in front
(``Server``, ``Via``, ``cf-ray``) and whether someone compressed the stream (faregate never does),
and the fix names what to change there.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from faregate import remote
from faregate.doctor.findings import Finding

EVENTS = 6
INTERVAL = 0.5  # seconds: the stream lasts (EVENTS - 1) * INTERVAL
PATH = "/admin/selftest/stream"

NGINX_FIX = (
    "nginx: in the location that proxies faregate, `proxy_buffering off;` (or keep it on and remove "
    "`proxy_ignore_headers X-Accel-Buffering`, so faregate's `X-Accel-Buffering: no` is honoured), "
    "`gzip off;` (or leave text/event-stream out of gzip_types), `proxy_http_version 1.1;` and a "
    "`proxy_read_timeout` above server.stream_heartbeat"
)
CLOUDFLARE_FIX = (
    "Cloudflare: turn compression off for this route (a Compression Rule), and Rocket Loader and any "
    "Worker that reads the whole body; text/event-stream is passed through unbuffered otherwise"
)
BALANCER_FIX = (
    "load balancers (AWS ALB/ELB, Google Cloud, Azure Application Gateway, Traefik, HAProxy): HTTP/1.1 "
    "to the target, no response buffering or compression for text/event-stream (Azure: response "
    "buffering off), and an idle timeout above server.stream_heartbeat"
)


@dataclass
class Measured:
    """What the client saw: the status, the headers, and each event with its arrival time (seconds
    since the request was sent) and the gateway's own send time (seconds since its first event)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    ticks: list[tuple[float, float]] = field(default_factory=list)  # (arrived, sent)
    ended: bool = False
    error: str | None = None
    message: str = ""  # the error body's message, for a refused request


def measure(url: str, key: str | None, timeout: float, events: int = EVENTS, interval: float = INTERVAL) -> Measured:
    """Read the self-test stream; each read waits at most the stream's length plus ``timeout``."""
    request = urllib.request.Request(url.rstrip("/") + f"{PATH}?events={events}&interval={interval:g}")  # noqa: S310 - the operator's URL
    request.add_header("accept", "text/event-stream")
    request.add_header("accept-encoding", "gzip, deflate")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    seen = Measured()
    started = time.monotonic()
    try:
        with remote.opener(url).open(request, timeout=timeout + events * interval) as response:
            seen.status = response.status
            seen.headers = {name.lower(): value for name, value in response.getheaders()}
            _read(response, seen, started)
    except urllib.error.HTTPError as exc:
        seen.status = exc.code
        seen.headers = {name.lower(): value for name, value in exc.headers.items()}
        seen.message = _error_message(exc)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError, zlib.error) as exc:
        seen.error = f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"
    return seen


def _read(response: http.client.HTTPResponse, seen: Measured, started: float) -> None:
    decode = _decoder(seen.headers.get("content-encoding", ""))
    pending = b""
    while not seen.ended:
        chunk = response.read1(65536)
        arrived = time.monotonic() - started
        if not chunk:
            return
        pending += decode(chunk).replace(b"\r\n", b"\n")
        while b"\n\n" in pending:
            raw, pending = pending.split(b"\n\n", 1)
            _event(raw, arrived, seen)


def _event(raw: bytes, arrived: float, seen: Measured) -> None:
    name, data = b"message", b""
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            data = line[5:].strip()
    if name == b"end":
        seen.ended = True
    elif name == b"tick":
        sent = orjson.loads(data).get("sent_ms")
        if isinstance(sent, int | float):
            seen.ticks.append((arrived, float(sent) / 1000))


def _decoder(encoding: str) -> Callable[[bytes], bytes]:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return lambda chunk: chunk
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
        return inflate.decompress
    raise ValueError(f"the stream came back compressed with {encoding!r}, which doctor cannot read")


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = orjson.loads(exc.read() or b"{}")
    except (orjson.JSONDecodeError, OSError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message", ""))[:200] if isinstance(error, dict) else ""


def proxies(headers: dict[str, str]) -> list[str]:
    """Who answered in front of faregate, as far as the headers tell (faregate sends no Server header)."""
    found: list[str] = []
    server = headers.get("server", "").lower()
    if "cf-ray" in headers or server == "cloudflare":
        found.append("Cloudflare")
    if "nginx" in server or "openresty" in server:
        found.append("nginx")
    if server.startswith("awselb") or "x-amzn-trace-id" in headers:
        found.append("AWS load balancer")
    if "x-amz-cf-id" in headers:
        found.append("CloudFront")
    if "x-azure-ref" in headers:
        found.append("Azure Front Door")
    if "google" in server or "google" in headers.get("via", "").lower():
        found.append("Google Cloud load balancer")
    for name in ("traefik", "haproxy", "envoy", "caddy", "apache", "varnish"):
        if name in server or name in headers.get("via", "").lower() or (name == "envoy" and "x-envoy-upstream-service-time" in headers):
            found.append(name.capitalize() if name != "haproxy" else "HAProxy")
    if not found and (server or "via" in headers):
        found.append(f"a proxy ({headers.get('server') or headers.get('via')})")
    return found


def fix_for(found: list[str], compressed: bool) -> str:
    """The fixes for who is in front; for anyone else, or no one named, every usual suspect's."""
    named = [fix for name, fix in (("nginx", NGINX_FIX), ("Cloudflare", CLOUDFLARE_FIX)) if name in found]
    if not named or len(named) < len(found):
        named = [NGINX_FIX, CLOUDFLARE_FIX, BALANCER_FIX]
    lead = (
        "stop compressing and buffering text/event-stream in front of faregate"
        if compressed
        else "turn response buffering off in front of faregate"
    )
    return lead + ". " + "; ".join(named)


def findings(url: str, shown: str, key: str | None, timeout: float) -> list[Finding]:
    """The ``stream`` group: one finding on how the self-test's events arrived through ``url``."""
    seen = measure(url, key, timeout)
    found = proxies(seen.headers)
    encoding = seen.headers.get("content-encoding", "").strip().lower()
    compressed = encoding not in ("", "identity")
    notes = ([f"in front: {', '.join(found)}"] if found else []) + ([f"the stream came back {encoding}-compressed"] if compressed else [])
    front = f" ({'; '.join(notes)})" if notes else ""
    if seen.error is not None:
        fix = "check the path in front of faregate holds a stream open; " + fix_for(found, compressed)
        return [
            Finding("stream", "stream_failed", "error", shown, f"the self-test stream through {shown} failed: {seen.error}{front}", fix)
        ]
    if seen.status != 200:
        return [_refused(seen, shown, front)]
    if len(seen.ticks) < EVENTS or not seen.ended:
        message = (
            f"only {len(seen.ticks)} of {EVENTS} self-test events arrived{' and the stream never ended' if not seen.ended else ''}{front}"
        )
        fix = "something in front of faregate cut the stream: " + fix_for(found, compressed)
        return [Finding("stream", "stream_cut", "error", shown, message, fix)]
    sent = seen.ticks[-1][1] - seen.ticks[0][1]
    arrived = seen.ticks[-1][0] - seen.ticks[0][0]
    spreads = f"{EVENTS} events sent over {sent:.2f}s arrived over {arrived:.2f}s"
    if arrived >= sent / 2:
        note = (
            "; keep text/event-stream out of compression, which buffers it once the proxy ignores X-Accel-Buffering" if compressed else ""
        )
        return [Finding("stream", "stream_ok", "ok", shown, f"{spreads}: one by one, as sent{front}{note}")]
    if arrived < sent / 4:
        message = (
            f"{spreads}, the first {seen.ticks[0][0]:.2f}s after the request: in one burst, so something between the "
            f"client and faregate buffers streams{front}; clients see each answer only when it has ended"
        )
        return [Finding("stream", "stream_buffered", "error", shown, message, fix_for(found, compressed))]
    message = f"{spreads}: partly grouped, so something in front of faregate holds events back{front}"
    return [Finding("stream", "stream_uneven", "warning", shown, message, fix_for(found, compressed))]


def _refused(seen: Measured, shown: str, front: str) -> Finding:
    detail = f": {seen.message}" if seen.message else ""
    if seen.status == 401:
        return Finding("stream", "stream_not_checked", "error", shown, f"the self-test was refused (401{detail})", "pass the master key")
    if seen.status in (403, 404, 405):
        message = f"the self-test route answered {seen.status}{detail}{front}"
        fix = f"let GET {PATH} through the proxy (from the operator's address only), or upgrade faregate to a version that has it"
        return Finding("stream", "stream_not_checked", "warning", shown, message, fix)
    return Finding(
        "stream", "stream_failed", "error", shown, f"the self-test route answered {seen.status}{detail}{front}", fix_for([], False)
    )
