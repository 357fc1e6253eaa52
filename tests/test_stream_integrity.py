"""Streams a client can trust, end to end (real gateway process, fake upstream, the openai SDK as
the client): heartbeats only between events, every SSE line ending, the usage event hidden also on
CRLF and CR upstreams, and an explicit error event for an oversized or malformed upstream event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess
from tests.support.sse import reference

Start = Callable[..., GatewayProcess]
MESSAGES = [{"role": "user", "content": "Hi"}]
HEARTBEAT = b": keep-alive\n\n"
TEXT = "Hello from the fake upstream."
FRAMINGS = ["lf", "crlf", "cr"]
PRICES = "\n  gpt-4o-mini: {input: 0.15, output: 0.6}"


class Tap(httpx.BaseTransport):
    """A real HTTP transport that also keeps every body byte the client reads, and tells
    ``on_bytes`` about each read (the test uses it to resume a paused upstream)."""

    def __init__(self, on_bytes: Callable[[bytes], None] = lambda seen: None) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen = bytearray()
        self.on_bytes = on_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        tap = self

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for part in response.stream:  # type: ignore[union-attr]
                    tap.seen += part
                    tap.on_bytes(bytes(tap.seen))
                    yield part

            def close(self) -> None:
                response.close()

        return httpx.Response(response.status_code, headers=response.headers, stream=Stream(), extensions=response.extensions)


def sdk(gw: GatewayProcess, tap: Tap) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60, http_client=httpx.Client(transport=tap))


def start(gateways: Start, fake: FakeOpenAI, server: str = "", prices: str = "") -> GatewayProcess:
    return gateways(
        config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}", server=server, prices=prices), env=UPSTREAM_ENV
    )


def ends_on_a_boundary(prefix: bytes) -> bool:
    """Whether an SSE parser that read ``prefix`` is between events (nothing of one pending)."""
    return reference(prefix + b"data: {}\n\n")[-1:] == [b"{}"]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(300):  # the gateway writes its metrics and log line just after the stream ends
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


def metric_502(gw: GatewayProcess) -> bool:
    return (
        'faregate_requests_total{model="m",deployment="up/gpt-4o-mini",status="502",format="openai_chat",provider_type="openai"} 1'
        in httpx.get(gw.url + "/metrics").text
    )


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_heartbeat_never_lands_inside_an_event(fake: FakeOpenAI, gateways: Start, framing: str) -> None:
    """The upstream writes half of an event and falls silent until the client has seen two
    heartbeats (so heartbeats were due mid-event); no timing is asserted."""
    gw = start(gateways, fake, server="\n  stream_heartbeat: 0.05")
    resume = threading.Event()
    fake.set_rule("gpt-4o-mini", Behaviour(framing=framing, pause_in_event=2, resume=resume))
    tap = Tap(lambda seen: resume.set() if seen.count(HEARTBEAT) >= 2 else None)
    usage = {"include_usage": True}  # the client asks for usage itself: its events go through untouched
    chunks = list(sdk(gw, tap).chat.completions.create(model="m", messages=MESSAGES, stream=True, stream_options=usage))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT  # every chunk parsed
    assert chunks[-1].usage is not None
    raw = bytes(tap.seen)
    assert raw.count(HEARTBEAT) >= 2
    at = raw.find(HEARTBEAT)
    while at >= 0:
        assert ends_on_a_boundary(raw[:at]), raw[:at][-80:]
        at = raw.find(HEARTBEAT, at + 1)


@pytest.mark.parametrize("framing", ["crlf", "cr"])
def test_crlf_and_cr_upstreams_stream_at_once_and_hide_the_injected_usage_event(fake: FakeOpenAI, gateways: Start, framing: str) -> None:
    """The upstream pauses after three events until the client has seen them and a heartbeat:
    nothing is held back until the end, and the usage-only chunk never reaches the client."""
    gw = start(gateways, fake, server="\n  stream_heartbeat: 0.05", prices=PRICES)
    resume = threading.Event()
    fake.set_rule("gpt-4o-mini", Behaviour(framing=framing, pause_before_event=3, resume=resume))

    def on_bytes(seen: bytes) -> None:
        if len(reference(seen)) >= 3 and seen.rstrip(b"\n").endswith(HEARTBEAT.rstrip(b"\n")):
            resume.set()

    tap = Tap(on_bytes)
    chunks = list(sdk(gw, tap).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert resume.is_set()  # the first three events arrived while the upstream was paused
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}  # faregate asked for usage
    assert all(c.choices for c in chunks)  # ...and no `choices: []` chunk reached a client that did not
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT
    assert b'"choices":[]' not in bytes(tap.seen)
    assert reference(bytes(tap.seen))[-1] == b"[DONE]"

    def priced() -> bool:
        lines = [
            x
            for x in httpx.get(gw.url + "/metrics").text.splitlines()
            if x.startswith('faregate_cost_usd_total{model="m",format="openai_chat",provider_type="openai"}')
        ]
        return bool(lines) and float(lines[0].split()[-1]) > 0

    wait_for(priced, "the stream priced from the usage event it read")


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_malformed_event_before_done_ends_the_stream_with_an_error(fake: FakeOpenAI, gateways: Start, framing: str) -> None:
    gw = start(gateways, fake)
    fake.set_rule("gpt-4o-mini", Behaviour(framing=framing, malformed_event=True))
    tap = Tap()
    with pytest.raises(openai.APIError, match="not a JSON object") as caught:
        list(sdk(gw, tap).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_malformed_event"
    events = reference(bytes(tap.seen))
    assert b"<html>" not in bytes(tap.seen) and b"[DONE]" not in events  # never passed on, never a clean finish
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_malformed_event"
    wait_for(lambda: metric_502(gw), "status 502 in the metrics")
    wait_for(lambda: "upstream_malformed_event" in gw.logs(), "the error code in the log")


def test_an_event_that_never_ends_is_cut_at_max_event_bytes(fake: FakeOpenAI, gateways: Start) -> None:
    gw = start(gateways, fake, server="\n  max_event_bytes: 65536")
    fake.set_rule("gpt-4o-mini", Behaviour(endless_event=1_000_000))
    tap = Tap()
    with pytest.raises(openai.APIError, match="65536 bytes") as caught:
        list(sdk(gw, tap).chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "upstream_event_too_large"
    assert "server.max_event_bytes" in error["message"]
    assert b"xxxx" not in bytes(tap.seen)  # none of the oversized event reached the client
    wait_for(lambda: metric_502(gw), "status 502 in the metrics")
