"""Request ids a client can correlate (issue 9, item 3): every response carries ``x-request-id``
(the OpenAI SDKs' ``_request_id``), the same id as ``x-faregate-request-id``, the spend-log row and
the log line; the upstream's own id is kept as ``x-faregate-upstream-request-id`` and in the log
line, and its ``openai-processing-ms`` is passed through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.support.configs import UPSTREAM_ENV, client, config, provider
from tests.support.procs import MASTER_KEY, GatewayProcess

Start = Callable[..., GatewayProcess]
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "Hi"}]
UPSTREAM_ID = "req_upstream-0123456789abcdef"


def spend_row(gw: GatewayProcess, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The spend row of one request, once the writer has flushed it (every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(gw.url + "/admin/spend/logs", params={"request_id": request_id}, headers=AUTH)
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            return dict(r.json()["data"][0])
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.1)


def access_lines(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in gw.logs().splitlines() if '"faregate.access"' in line]
    return {line["request_id"]: line for line in lines}


@pytest.fixture
def gw(fake: FakeOpenAI, gateways: Start) -> GatewayProcess:
    fake.set_rule("gpt-4o-mini", Behaviour(headers={"x-request-id": UPSTREAM_ID, "openai-processing-ms": "42"}))
    return gateways(config(provider("up", fake.url), "\n  m:\n    - {provider: up, model: gpt-4o-mini}"), env=UPSTREAM_ENV)


def test_the_sdk_request_id_is_the_gateway_request_id_of_the_spend_row_and_the_log_line(gw: GatewayProcess) -> None:
    sdk = client(gw)
    raw = sdk.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    completion = raw.parse()
    ours = raw.headers["x-faregate-request-id"]
    assert completion._request_id == ours == raw.headers["x-request-id"]
    assert raw.headers["x-faregate-upstream-request-id"] == UPSTREAM_ID
    assert raw.headers["openai-processing-ms"] == "42"

    with sdk.chat.completions.with_streaming_response.create(model="m", messages=MESSAGES, stream=True) as streamed:  # type: ignore[arg-type]
        stream_id = streamed.headers["x-request-id"]
        assert stream_id == streamed.headers["x-faregate-request-id"] != ours
        assert streamed.headers["x-faregate-upstream-request-id"] == UPSTREAM_ID
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)

    with pytest.raises(openai.NotFoundError) as caught:  # an error carries the id too
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)  # type: ignore[arg-type]
    error_id = caught.value.request_id
    assert error_id and error_id == caught.value.response.headers["x-faregate-request-id"]

    for request_id in (ours, stream_id, error_id):
        assert spend_row(gw, request_id)["request_id"] == request_id
    gw.stop()
    lines = access_lines(gw)
    assert lines[ours]["upstream_request_id"] == UPSTREAM_ID
    assert lines[stream_id]["upstream_request_id"] == UPSTREAM_ID
    assert lines[error_id]["upstream_request_id"] is None  # no upstream was asked


def test_upstream_ids_that_are_not_plain_tokens_are_dropped(fake: FakeOpenAI, gw: GatewayProcess) -> None:
    fake.set_rule("gpt-4o-mini", Behaviour(headers={"x-request-id": "two words", "openai-processing-ms": "12; evil"}))
    r = httpx.post(gw.url + "/v1/chat/completions", headers=AUTH, json={"model": "m", "messages": MESSAGES})
    assert r.status_code == 200
    assert "x-faregate-upstream-request-id" not in r.headers and "openai-processing-ms" not in r.headers
    assert r.headers["x-request-id"] == r.headers["x-faregate-request-id"]
