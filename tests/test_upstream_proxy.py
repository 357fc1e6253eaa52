"""The outbound proxy corporate networks require (issue 9 item 16): HTTPS_PROXY (CONNECT, then TLS
to the upstream inside the tunnel), HTTP_PROXY (absolute-form targets), NO_PROXY, proxy
credentials that never show, against a loopback proxy that counts what it forwards and a loopback
TLS upstream whose certificate is signed by a CA made for the test (verification stays on)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from faregate.config import runtime
from faregate.errors import UpstreamConnectionError
from faregate.providers.base import UpstreamRequest
from faregate.proxies import Proxies, parse_proxy
from faregate.upstream import Upstream
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.raw_http import LoopbackCA, RawServer, make_ca, read_request

USER, PASSWORD = "alice", "pr0xy:p@ss-CANARY"  # the password must never appear anywhere
PROXY_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CREDENTIALS = "alice:pr0xy%3Ap%40ss-CANARY@"
LIMIT = 1 << 20
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-tls",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
).encode()
REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(COMPLETION), COMPLETION)


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


def _head(raw: bytes) -> Seen:
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return Seen(method, target, headers)


class LoopbackProxy:
    """A small HTTP proxy: CONNECT tunnels and absolute-form forwarding, with optional Basic auth."""

    def __init__(self, *, require_auth: bool) -> None:
        self.require_auth = require_auth
        self.seen: list[Seen] = []
        self.server = RawServer(self._handle)

    def __enter__(self) -> LoopbackProxy:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def url(self, credentials: str = CREDENTIALS) -> str:
        return f"http://{credentials}127.0.0.1:{self.server.port}"

    @property
    def connects(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "CONNECT"]

    @property
    def forwarded(self) -> list[Seen]:
        return [s for s in self.seen if s.method != "CONNECT"]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            seen = _head(raw)
            self.seen.append(seen)
            if self.require_auth and seen.headers.get("proxy-authorization") != PROXY_AUTH:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                return
            if seen.method == "CONNECT":
                host, _, port = seen.target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            await self._forward(seen, raw, reader, writer)

    async def _forward(self, seen: Seen, raw: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await reader.readexactly(int(seen.headers.get("content-length", "0")))
        url = urlsplit(seen.target)
        lines = [f"{seen.method} {url.path} HTTP/1.1"] + [
            f"{k}: {v}" for k, v in seen.headers.items() if k not in ("proxy-authorization", "connection")
        ]
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        up_writer.write("\r\n".join([*lines, "connection: close", "", ""]).encode("latin-1") + body)
        await up_writer.drain()
        reply = await up_reader.read()  # the upstream closes (connection: close): the whole reply
        up_writer.close()
        writer.write(reply.replace(b"\r\n", b"\r\nconnection: close\r\n", 1))  # one request per client connection
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class Upstream1:
    """A loopback upstream (TLS when given a CA) that answers every request with a completion and
    records the heads it received."""

    def __init__(self, ca: LoopbackCA | None = None) -> None:
        self.seen: list[Seen] = []
        self.server = RawServer(self._handle, tls=ca.server_context() if ca else None)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            raw = await read_request(reader)
            seen = _head(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            self.seen.append(seen)
            writer.write(REPLY)
            await writer.drain()
            if seen.headers.get("connection") == "close":
                return


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    made = make_ca(tmp_path_factory.mktemp("ca"))
    if made is None:
        pytest.skip("the openssl command is not installed: TLS through the proxy cannot be tested here")
    return made


@pytest.fixture
def tls_upstream(ca: LoopbackCA) -> Iterator[Upstream1]:
    up = Upstream1(ca)
    with up.server:
        yield up


@pytest.fixture
def proxy() -> Iterator[LoopbackProxy]:
    with LoopbackProxy(require_auth=True) as p:
        yield p


def _send(up: Upstream, url: str, n: int = 1) -> list[tuple[int, bytes]]:
    async def go() -> list[tuple[int, bytes]]:
        out = []
        try:
            for _ in range(n):
                reply = await up.send(UpstreamRequest("POST", url, {"authorization": "Bearer sk-up"}, b"{}"), connect_timeout=5, timeout=5)
                out.append((reply.status, await reply.read(LIMIT)))
        finally:
            await up.close()
        return out

    return asyncio.run(go())


def test_https_goes_through_connect_with_tls_inside_the_tunnel(ca: LoopbackCA, tls_upstream: Upstream1, proxy: LoopbackProxy) -> None:
    up = Upstream(Proxies.from_env({"https_proxy": proxy.url()}), ssl_context=ca.client_context())
    assert _send(up, tls_upstream.server.url, n=3) == [(200, COMPLETION)] * 3
    assert len(proxy.connects) == 1  # one tunnel, its TLS connection kept alive for all three
    assert proxy.connects[0].target == f"127.0.0.1:{tls_upstream.server.port}"
    assert proxy.connects[0].headers["proxy-authorization"] == PROXY_AUTH
    assert len(tls_upstream.seen) == 3
    assert all("proxy-authorization" not in s.headers and s.target == "/v1/chat/completions" for s in tls_upstream.seen)


def test_tls_through_the_tunnel_is_still_verified(tls_upstream: Upstream1, proxy: LoopbackProxy) -> None:
    up = Upstream(Proxies.from_env({"https_proxy": proxy.url()}))  # the system's CAs: the test CA is not among them
    with pytest.raises(UpstreamConnectionError, match=r"through proxy 127\.0\.0\.1:\d+ \(TLS: SSLCertVerificationError\)"):
        _send(up, tls_upstream.server.url)
    assert tls_upstream.seen == []


def test_http_goes_to_the_proxy_in_absolute_form(proxy: LoopbackProxy) -> None:
    plain = Upstream1()
    with plain.server:
        up = Upstream(Proxies.from_env({"http_proxy": proxy.url(), "https_proxy": "http://127.0.0.1:9"}))
        assert _send(up, plain.server.url, n=2) == [(200, COMPLETION)] * 2
    assert [s.target for s in proxy.forwarded] == [plain.server.url] * 2
    assert all(
        s.headers["proxy-authorization"] == PROXY_AUTH and s.headers["host"] == f"127.0.0.1:{plain.server.port}" for s in proxy.forwarded
    )
    assert [s.target for s in plain.seen] == ["/v1/chat/completions"] * 2


def test_no_proxy_connects_directly(proxy: LoopbackProxy) -> None:
    plain = Upstream1()
    with plain.server:
        up = Upstream(Proxies.from_env({"http_proxy": proxy.url(), "no_proxy": "example.com, 127.0.0.1"}))
        assert _send(up, plain.server.url) == [(200, COMPLETION)]
    assert proxy.seen == []
    assert len(plain.seen) == 1


@pytest.mark.parametrize(
    ("proxy_url", "needle"),
    [
        (
            "http://127.0.0.1:{port}",
            "through proxy 127.0.0.1:{port}: the proxy refused CONNECT to 127.0.0.1:{up}: 407 Proxy Authentication",
        ),
        ("http://" + CREDENTIALS + "127.0.0.1:9", "cannot connect to 127.0.0.1:{up} through proxy 127.0.0.1:9 ("),  # proxy down
        ("socks5://" + CREDENTIALS + "127.0.0.1:1080", "HTTPS_PROXY uses socks5://; only http:// proxies are supported"),
    ],
    ids=["407", "proxy-down", "unsupported-scheme"],
)
def test_proxy_failures_name_the_proxy_never_its_credentials(
    ca: LoopbackCA, tls_upstream: Upstream1, proxy: LoopbackProxy, proxy_url: str, needle: str
) -> None:
    port, up_port = proxy.server.port, tls_upstream.server.port
    up = Upstream(Proxies.from_env({"https_proxy": proxy_url.format(port=port)}), ssl_context=ca.client_context())
    with pytest.raises(UpstreamConnectionError) as caught:
        _send(up, tls_upstream.server.url)
    text = caught.value.message
    assert needle.format(port=port, up=up_port) in text
    assert PASSWORD not in text and "pr0xy" not in text and USER not in text
    assert PASSWORD not in repr(parse_proxy("HTTPS_PROXY", proxy_url))


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "api.openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),
        ("openai.com", "openai.com", 443, True),
        ("openai.com", "notopenai.com", 443, False),
        (".openai.com", "api.openai.com", 443, True),
        (".openai.com", "openai.com", 443, True),
        ("*.openai.com", "api.openai.com", 443, True),
        ("API.OpenAI.com", "api.openai.com", 443, True),
        ("openai.com:8443", "api.openai.com", 443, False),
        ("openai.com:8443", "api.openai.com", 8443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("[::1]", "::1", 443, True),
        ("[::1]:8080", "::1", 443, False),
        ("::1", "::1", 443, True),
        ("localhost 127.0.0.1", "127.0.0.1", 80, True),
        ("localhost,,", "localhost", 80, True),
        ("", "localhost", 80, False),  # loopback is not bypassed unless listed (curl, requests)
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    proxies = Proxies.from_env({"https_proxy": "proxy.corp:3128", "no_proxy": no_proxy})
    routed = proxies.route(True, host, port)
    assert (routed is None) == bypassed
    if routed is not None:
        assert (routed.host, routed.port, routed.authorization) == ("proxy.corp", 3128, None)


def test_proxy_urls() -> None:
    assert parse_proxy("HTTP_PROXY", "proxy.corp").shown == "proxy.corp:1080"  # curl's defaults: http, port 1080
    assert parse_proxy("HTTP_PROXY", "http://[fd00::1]:3128").shown == "[fd00::1]:3128"
    assert parse_proxy("HTTP_PROXY", "http://u:p@h:1").authorization == b"Basic " + base64.b64encode(b"u:p")
    assert parse_proxy("HTTPS_PROXY", "https://h:1").problem is not None  # TLS to the proxy itself: not supported
    assert not Proxies.from_env({}).any and not Proxies.from_env({"https_proxy": " "}).any


def test_the_environment_is_read_in_both_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("NO_PROXY", "a.example")
    monkeypatch.setenv("http_proxy", "http://lower:2")
    monkeypatch.setenv("HTTP_PROXY", "http://upper:2")
    assert runtime.proxy_env() == {"https_proxy": "http://upper:1", "http_proxy": "http://lower:2", "no_proxy": "a.example"}


def test_a_gateway_uses_the_proxies_of_its_environment(
    ca: LoopbackCA, tls_upstream: Upstream1, proxy: LoopbackProxy, fake: FakeOpenAI, gateways: Callable[..., GatewayProcess], tmp: Path
) -> None:
    """End to end: HTTPS_PROXY and HTTP_PROXY (with credentials) set for `faregate serve`; the
    test CA is trusted through OpenSSL's own SSL_CERT_FILE (no faregate setting weakens TLS)."""
    providers = provider("secure", tls_upstream.server.url.removesuffix("/chat/completions")) + provider("plain", fake.url)
    models = "\n  s: [{provider: secure, model: gpt-4o-mini}]\n  p: [{provider: plain, model: gpt-4o-mini}]"
    env = {**UPSTREAM_ENV, "HTTPS_PROXY": proxy.url(), "http_proxy": proxy.url(), "SSL_CERT_FILE": str(ca.ca), "NO_PROXY": ""}
    gw = gateways(config(providers, models), env=env)
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    for model, text in (("s", "over TLS"), ("p", None)):
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        if text is not None:
            assert r.json()["choices"][0]["message"]["content"] == text
    assert len(proxy.connects) == 1 and len(proxy.forwarded) == 1
    assert fake.requests[0].headers.get("proxy-authorization") is None
    assert PASSWORD not in gw.logs() and "pr0xy" not in gw.logs()
