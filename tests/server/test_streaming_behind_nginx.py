"""Streams are not buffered by a reverse proxy: through a real nginx with default (buffering) settings,
and through the site file faregate ships (examples/nginx/faregate.conf), each event reaches the
client as the upstream produces it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, config, provider
from tests.support.nginx import Nginx
from tests.support.procs import MASTER_KEY, GatewayProcess

DELAY = 0.4
CHUNKS = 4


@pytest.mark.parametrize("site", [False, True], ids=["nginx-defaults", "example-site"])
def test_events_arrive_one_by_one_through_nginx(
    fake: FakeOpenAI, gateways: Callable[..., GatewayProcess], tmp_path: Path, site: bool
) -> None:
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: slow}"), env=UPSTREAM_ENV)
    fake.set_rule("slow", Behaviour(chunks=CHUNKS, chunk_delay=DELAY))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    arrivals: list[tuple[float, bytes]] = []
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with (
        Nginx(tmp_path, gw.port, site=site) as proxy,
        httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        assert r.headers["x-faregate-provider"] == "up"
        start = time.monotonic()
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic() - start, line.encode()))
    # role + CHUNKS content + finish + [DONE], each DELAY apart at the upstream
    assert len(arrivals) == CHUNKS + 3
    assert arrivals[-1][1] == b"data: [DONE]"
    # Buffered, every event would arrive at once at the end. Unbuffered, the first content event
    # arrives well before the last one: the spread is most of the (CHUNKS + 2) * DELAY the upstream took.
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread >= (CHUNKS + 2) * DELAY * 0.5, arrivals
    distinct = {round(t / (DELAY / 2)) for t, _ in arrivals}
    assert len(distinct) >= CHUNKS, arrivals


def test_heartbeats_keep_a_silent_stream_alive_through_nginx(
    fake: FakeOpenAI, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """A reasoning model may think for minutes before its next token; nginx cuts a response that is
    silent for proxy_read_timeout. faregate's SSE comments keep the connection alive."""
    gw = gateways(
        config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: thinker}", server="\n  stream_heartbeat: 0.3"),
        env=UPSTREAM_ENV,
    )
    fake.set_rule("thinker", Behaviour(chunks=1, chunk_delay=1.6))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with (
        Nginx(tmp_path, gw.port, read_timeout=1) as proxy,
        httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        raw = r.read()
    assert raw.rstrip().endswith(b"data: [DONE]"), raw[-300:]
    assert b"Hello from the fake upstream." in raw
    assert raw.count(b": keep-alive") >= 6


def test_the_example_site_passes_a_big_prompt_and_streams_it(
    fake: FakeOpenAI, gateways: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """nginx refuses a body over 1 MiB by default (413): the example site lets faregate's own limit
    decide, and streams the answer to a 3 MB prompt untouched."""
    gw = gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: big}"), env=UPSTREAM_ENV)
    fake.set_rule("big", Behaviour(chunks=3))
    prompt = "x" * (3 * 1024 * 1024)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with Nginx(tmp_path, gw.port) as plain:
        refused = httpx.post(plain.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert refused.status_code == 413  # nginx's own default, the reason the example site sets client_max_body_size
    with Nginx(tmp_path, gw.port, site=True) as proxy:
        r = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    sent = [req for req in fake.requests if req.model == "big"]
    assert len(sent) == 1
    assert sent[0].json["messages"][0]["content"] == prompt
