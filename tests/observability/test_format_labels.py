"""Every client format is observed the same way: /metrics series carry the client's format and the
answering provider's type, the access line says the format, whether the request was translated and
what was dropped, and the spend row records the format. A real gateway process, the official SDKs
as clients, the mock provider and fake upstreams on loopback; /metrics is scraped over HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import Behaviour, FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.configs import UPSTREAM_ENV
from tests.support.procs import MASTER_KEY, GatewayProcess

CONFIG = """
server:
  master_key: ${{FAREGATE_MASTER_KEY}}
providers:
  local: {{type: mock, chunk_delay: 0, stream_chunks: 3}}
  oa:
    type: openai
    base_url: {openai}
    credentials: [{{id: main, key: "${{UPSTREAM_KEY}}"}}]
  an:
    type: anthropic
    base_url: {anthropic}
    credentials: [{{id: main, key: "${{ANTHROPIC_KEY}}"}}]
models:
  demo:
    - {{provider: local, model: mock-small}}
  gpt:
    - {{provider: oa, model: gpt-4o-mini}}
  claude:
    - {{provider: an, model: claude-sonnet-4-5}}
prices:
  mock-small: {{input: 1.0, output: 2.0}}
  gpt-4o-mini: {{input: 0.15, output: 0.6}}
"""
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
HELLO: Any = [{"role": "user", "content": "Hello"}]


Fakes = tuple[FakeOpenAI, FakeAnthropic]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with FakeOpenAI() as oa, FakeAnthropic() as an:
        yield oa, an


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[GatewayProcess]:
    tmp: Path = tmp_path_factory.mktemp("formats")
    env = {**UPSTREAM_ENV, "ANTHROPIC_KEY": "sk-ant-CANARY-labels-0123456789abcdef"}
    with GatewayProcess(tmp, CONFIG.format(openai=fakes[0].url, anthropic=fakes[1].url), env=env).start() as gateway:
        yield gateway


def claude(gw: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def gpt(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def series(gw: GatewayProcess, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels`` (each label is checked)."""
    total = 0.0
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def access_line(gw: GatewayProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Written after the client's last byte and flushed in batches: waited for, with a bound."""
    deadline = time.monotonic() + timeout
    while True:
        for line in gw.logs().splitlines():
            if f'"request_id":"{request_id}"' in line and '"faregate.access"' in line:
                return dict(json.loads(line))
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.02)


def spend_row(gw: GatewayProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(gw.url + "/admin/spend/logs", params={"request_id": request_id}, headers=AUTH)
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            return dict(r.json()["data"][0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.05)


def test_an_anthropic_request_to_the_mock_is_labelled_with_its_format(gw: GatewayProcess) -> None:
    labels = {"model": "demo", "format": "anthropic", "provider_type": "mock"}
    before = series(gw, "faregate_requests_total", status="200", deployment="local/mock-small", **labels)
    raw = claude(gw).messages.with_raw_response.create(model="demo", max_tokens=50, messages=HELLO)
    reply = raw.parse()
    rid = raw.headers["x-faregate-request-id"]
    line = access_line(gw, rid)  # recorded with the metrics, after the last byte: then they are there too
    assert series(gw, "faregate_requests_total", status="200", deployment="local/mock-small", **labels) == before + 1
    assert series(gw, "faregate_request_duration_seconds_count", **labels) >= 1
    tokens = series(gw, "faregate_tokens_total", kind="completion", **labels)
    assert tokens >= reply.usage.output_tokens > 0
    assert series(gw, "faregate_cost_usd_total", **labels) > 0
    assert (line["format"], line["provider_type"], line["translated"], line["dropped"]) == ("anthropic", "mock", False, None)
    assert spend_row(gw, rid)["format"] == "anthropic"


def test_an_openai_request_to_the_mock_is_labelled_openai_chat(gw: GatewayProcess) -> None:
    labels = {"model": "demo", "format": "openai_chat", "provider_type": "mock"}
    before = series(gw, "faregate_requests_total", status="200", **labels)
    anthropic_before = series(gw, "faregate_requests_total", model="demo", format="anthropic")
    raw = gpt(gw).chat.completions.with_raw_response.create(model="demo", messages=HELLO, stream=True)
    rid = raw.headers["x-faregate-request-id"]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    line = access_line(gw, rid)
    assert series(gw, "faregate_requests_total", status="200", **labels) == before + 1
    assert series(gw, "faregate_requests_total", model="demo", format="anthropic") == anthropic_before  # not counted twice
    assert series(gw, "faregate_time_to_first_token_seconds_count", **labels) >= 1
    assert (line["format"], line["translated"], line["stream"]) == ("openai_chat", False, True)
    assert spend_row(gw, rid)["format"] == "openai_chat"


def test_a_translated_request_is_labelled_by_the_providers_type_and_logs_what_was_dropped(gw: GatewayProcess) -> None:
    turns: Any = [
        *HELLO,
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "A greeting.", "signature": "c2ln"}, {"type": "text", "text": "Hi"}],
        },
        {"role": "user", "content": "Again"},
    ]
    labels = {"model": "gpt", "format": "anthropic", "provider_type": "openai"}
    before = series(gw, "faregate_requests_total", status="200", deployment="oa/gpt-4o-mini", **labels)
    raw = claude(gw).messages.with_raw_response.create(model="gpt", max_tokens=50, messages=turns)
    assert raw.parse().content and raw.headers["x-faregate-dropped"] == "thinking"
    rid = raw.headers["x-faregate-request-id"]
    line = access_line(gw, rid)
    assert series(gw, "faregate_requests_total", status="200", deployment="oa/gpt-4o-mini", **labels) == before + 1
    assert series(gw, "faregate_cost_usd_total", **labels) > 0
    assert (line["format"], line["provider_type"], line["translated"], line["dropped"]) == ("anthropic", "openai", True, "thinking")
    row = spend_row(gw, rid)
    assert (row["format"], row["endpoint"], row["provider"]) == ("anthropic", "messages", "oa")


def test_the_anthropic_diagonal_is_not_translated_and_counts_each_cache_kind(gw: GatewayProcess, fakes: Fakes) -> None:
    cache = {"cache_read_input_tokens": 100, "cache_creation_input_tokens": 30}
    cache |= {"cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}}
    fakes[1].set_rule("claude-sonnet-4-5", Behaviour(usage=cache))
    labels = {"model": "claude", "format": "anthropic", "provider_type": "anthropic"}
    kinds = ("cache_read", "cache_write_5m", "cache_write_1h")
    before = [series(gw, "faregate_tokens_total", kind=kind, **labels) for kind in kinds]
    raw = claude(gw).messages.with_raw_response.create(model="claude", max_tokens=50, messages=HELLO)
    assert raw.parse().content
    line = access_line(gw, raw.headers["x-faregate-request-id"])
    after = [series(gw, "faregate_tokens_total", kind=kind, **labels) for kind in kinds]
    assert [a - b for a, b in zip(after, before, strict=True)] == [100, 10, 20]
    assert (line["format"], line["provider_type"], line["translated"]) == ("anthropic", "anthropic", False)
    assert series(gw, "faregate_requests_total", model="claude", format="anthropic", provider_type="anthropic", status="200") >= 1


def test_a_request_refused_before_routing_has_its_format_and_no_provider_type(gw: GatewayProcess) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(gw).messages.create(model="no-such-model", max_tokens=50, messages=HELLO)
    line = access_line(gw, caught.value.response.headers["x-faregate-request-id"])
    assert (line["format"], line["provider_type"], line["translated"], line["status"]) == ("anthropic", None, False, 404)
    assert series(gw, "faregate_requests_total", model="(unknown)", format="anthropic", provider_type="-", status="404") >= 1


def test_spend_can_be_grouped_by_format(gw: GatewayProcess) -> None:
    raw = gpt(gw).chat.completions.with_raw_response.create(model="demo", messages=HELLO)
    spend_row(gw, raw.headers["x-faregate-request-id"])
    raw2 = claude(gw).messages.with_raw_response.create(model="demo", max_tokens=50, messages=HELLO)
    spend_row(gw, raw2.headers["x-faregate-request-id"])
    r = httpx.get(gw.url + "/admin/spend", params={"group_by": "format", "model": "demo"}, headers=AUTH)
    assert r.status_code == 200, r.text
    groups = {row["format"]: row["requests"] for row in r.json()["data"]}
    assert groups.get("anthropic", 0) >= 1 and groups.get("openai_chat", 0) >= 1
