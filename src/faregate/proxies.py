"""Which outbound proxy, if any, reaches an upstream: ``HTTPS_PROXY``, ``HTTP_PROXY`` and
``NO_PROXY`` as curl and most HTTP clients read them. Pure: the values come from
``faregate.config.runtime.proxy_env`` (the one reader of the environment); the client that dials
is ``faregate.http1``.

- ``https://`` upstreams go through ``HTTPS_PROXY`` with ``CONNECT host:port`` and TLS inside the
  tunnel (the proxy sees only the host name); ``http://`` upstreams go through ``HTTP_PROXY`` with
  absolute-form request targets.
- A proxy URL is ``http://[user:password@]host[:port]`` (port 1080 if left out, as curl; a URL
  without a scheme is taken as http). ``user:password`` becomes a ``Proxy-Authorization: Basic``
  header: a secret, kept out of ``repr`` and out of every message (they name ``host:port`` only).
- ``NO_PROXY``: a comma (or space) separated list; ``*`` alone bypasses every host; ``example.com``
  and ``.example.com`` match that domain and every host under it; ``host:port`` only that port; IP
  addresses and CIDR ranges (``10.0.0.0/8``, ``[::1]``) match literal IP hosts. Loopback is not
  bypassed implicitly: add ``localhost,127.0.0.1`` for local upstreams (as curl and requests do).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 1080


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)  # ``Basic ...``: a secret
    problem: str | None = None  # set when the environment's value cannot be used; requests through it fail with this

    @property
    def shown(self) -> str:
        """``host:port``: how messages name the proxy (never its credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy(name: str, value: str) -> Proxy:
    """The proxy an environment value names (``name`` is the variable, for messages)."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return Proxy("", 0, problem=f"{name} is not a valid proxy URL (expected http://host:port)")
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        scheme = parts.scheme or "?"
        return Proxy(host, port, problem=f"{name} uses {scheme}://; only http:// proxies are supported (CONNECT tunnels carry TLS)")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = b"Basic " + base64.b64encode(pair)
    return Proxy(host, port, authorization)


@dataclass(frozen=True, slots=True)
class _Bypass:
    host: str = ""  # a domain: matches itself and every host below it
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        return host == self.host or host.endswith("." + self.host)


def _bypass(entry: str) -> _Bypass | None:
    entry = entry.strip().lower()
    port: int | None = None
    if entry.startswith("["):  # [v6] or [v6]:port
        inside, _, rest = entry[1:].partition("]")
        entry = inside
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif entry.count(":") == 1:
        name, _, digits = entry.partition(":")
        if digits.isdigit():
            entry, port = name, int(digits)
    entry = entry.removeprefix("*.").lstrip(".")
    if not entry:
        return None
    try:
        return _Bypass(network=ipaddress.ip_network(entry, strict=False), port=port)
    except ValueError:
        return _Bypass(host=entry.rstrip("."), port=port)


@dataclass(frozen=True, slots=True)
class Proxies:
    """The proxy routes of one process; ``NONE`` when no proxy variable is set."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass_all: bool = False
    bypass: tuple[_Bypass, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Proxies:
        """From ``{"https_proxy", "http_proxy", "no_proxy"}`` values (any missing)."""
        http = parse_proxy("HTTP_PROXY", env["http_proxy"]) if env.get("http_proxy", "").strip() else None
        https = parse_proxy("HTTPS_PROXY", env["https_proxy"]) if env.get("https_proxy", "").strip() else None
        entries = env.get("no_proxy", "").replace(" ", ",").split(",")
        bypass_all = any(e.strip() == "*" for e in entries)
        bypass = tuple(b for b in map(_bypass, entries) if b is not None and not bypass_all)
        return cls(http, https, bypass_all, bypass)

    @property
    def any(self) -> bool:
        return self.http is not None or self.https is not None

    def route(self, tls: bool, host: str, port: int) -> Proxy | None:
        """The proxy for an upstream origin, or None to connect directly."""
        proxy = self.https if tls else self.http
        if proxy is None or self.bypass_all:
            return None
        host = host.lower().rstrip(".")
        if any(b.matches(host, port) for b in self.bypass):
            return None
        return proxy


NONE = Proxies()
