"""The parts of tracing that need no gateway process: what a trace reads of requests and replies
(content in the GenAI conventions' shape, bounded), the config's otlp section as `check` sees it,
and that an untraced gateway never loads the tracing SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson

from faregate.observability.tracing_content import MAX_JSON, MAX_TEXT, Reply, input_messages, request_params
from tests.support.procs import MASTER_KEY, run_cli

MASTER = {"FAREGATE_MASTER_KEY": MASTER_KEY}


def test_request_params_are_the_conventions_attributes_whatever_the_format_calls_them() -> None:
    assert request_params({"max_completion_tokens": 7, "temperature": 1, "top_p": 0.5, "stop": "END", "seed": 3, "n": 2}) == {
        "gen_ai.request.max_tokens": 7,
        "gen_ai.request.temperature": 1.0,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.request.seed": 3,
        "gen_ai.request.choice.count": 2,
    }
    assert request_params({"max_output_tokens": 9, "top_k": 40, "stop_sequences": ["a", "b"]}) == {
        "gen_ai.request.max_tokens": 9,
        "gen_ai.request.top_k": 40.0,
        "gen_ai.request.stop_sequences": ["a", "b"],
    }
    assert request_params({"max_tokens": True, "temperature": "hot"}) == {}  # not numbers: not recorded


def test_input_messages_of_each_format_in_the_conventions_shape() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"x":1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "and?"}, {"type": "image_url", "image_url": {"url": "data:..."}}]},
        ]
    }
    assert json.loads(str(input_messages("openai_chat", chat)["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"x":1}'}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
        {"role": "user", "parts": [{"type": "text", "content": "and?"}, {"type": "image_url"}]},  # an image is named, never its bytes
    ]
    claude = {
        "system": [{"type": "text", "text": "be kind"}],
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}],
    }
    found = input_messages("anthropic", claude)
    assert json.loads(str(found["gen_ai.system_instructions"])) == [{"type": "text", "content": "be kind"}]
    assert json.loads(str(found["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", "response": "ok"}]}
    ]
    responses = input_messages("openai_responses", {"instructions": "short", "input": "hello"})
    assert json.loads(str(responses["gen_ai.input.messages"])) == [{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]
    assert json.loads(str(responses["gen_ai.system_instructions"])) == [{"type": "text", "content": "short"}]


def test_content_is_bounded_a_long_text_cut_and_the_oldest_messages_dropped() -> None:
    long = "x" * (MAX_TEXT * 3)
    (message,) = json.loads(str(input_messages("openai_chat", {"messages": [{"role": "user", "content": long}]})["gen_ai.input.messages"]))
    content = message["parts"][0]["content"]
    assert content.startswith("x" * MAX_TEXT) and content.endswith(f"[{MAX_TEXT * 2} characters not recorded]")
    many = [{"role": "user", "content": f"{i}:" + "y" * (MAX_TEXT - 10)} for i in range(40)]
    text = str(input_messages("openai_chat", {"messages": many})["gen_ai.input.messages"])
    kept = json.loads(text)
    assert len(text) <= MAX_JSON and 1 <= len(kept) < 40
    assert kept[-1]["parts"][0]["content"].startswith("39:")  # the most recent are kept


def test_a_reply_is_read_whole_or_event_by_event() -> None:
    whole = Reply("openai_chat", record=True)
    whole.read(
        orjson.dumps(
            {
                "id": "c-1",
                "model": "gpt-x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            }
        )
    )
    assert whole.attributes() == {
        "gen_ai.response.model": "gpt-x",
        "gen_ai.response.id": "c-1",
        "gen_ai.response.finish_reasons": ["length"],
    }
    assert json.loads(str(whole.content()["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hi"}], "finish_reason": "length"}
    ]
    stream = Reply("anthropic", record=False)  # not recording: model and finish reason only, no text kept
    stream.feed(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x"}}\n\n')
    stream.feed(b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"secret"}}\n\n')
    stream.feed(b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n')
    assert stream.attributes()["gen_ai.response.finish_reasons"] == ["end_turn"] and stream.texts == {}
    assert stream.content() == {}
    broken = Reply("openai_responses", record=True)
    broken.read(b"not json")
    broken.feed(b"data: {truncated\n\n")
    assert broken.attributes() == {}


def test_check_resolves_the_otlp_headers_like_any_secret(tmp_path: Path) -> None:
    path = tmp_path / "faregate.yaml"
    base = "server: {master_key: '${FAREGATE_MASTER_KEY}'}\nproviders:\n  local: {type: mock}\nmodels:\n  m: [{provider: local, model: echo}]\nobservability:\n  otlp:\n"
    path.write_text(base + '    endpoint: http://127.0.0.1:4318/v1/traces\n    headers: {authorization: "Bearer ${OTLP_TOKEN}"}\n')
    missing = run_cli("check", "-c", str(path), env=MASTER)
    assert (
        missing.returncode == 1 and "observability.otlp.headers.authorization: environment variable OTLP_TOKEN is not set" in missing.stdout
    )
    ok = run_cli("check", "-c", str(path), env={**MASTER, "OTLP_TOKEN": "otlp-CANARY-5e1f"})
    assert ok.returncode == 0, ok.stderr
    assert "otlp-CANARY-5e1f" not in ok.stdout + ok.stderr
    path.write_text(base + "    endpoint: http://127.0.0.1:4318/v1/traces\n    headers: {authorization: Bearer literal-token-123}\n")
    literal = run_cli("check", "-c", str(path), env=MASTER)
    assert literal.returncode == 1 and "observability.otlp.headers.authorization: a credential header written literally" in literal.stdout
    path.write_text(base + "    endpoint: 127.0.0.1:4318\n")
    scheme = run_cli("check", "-c", str(path), env=MASTER)
    assert scheme.returncode == 1 and "observability.otlp.endpoint: not an http:// or https:// URL" in scheme.stdout


def test_an_untraced_gateway_never_imports_the_tracing_sdk(tmp_path: Path) -> None:
    """opentelemetry's trace SDK and exporter are imported only when observability.otlp is set
    (a Tracer is built in Gateway.start): a gateway built and started without it has neither."""
    path = tmp_path / "faregate.yaml"
    path.write_text(
        f"server: {{master_key: '${{FAREGATE_MASTER_KEY}}'}}\nstate: {{database: sqlite:///{tmp_path}/db.sqlite}}\nproviders:\n  local: {{type: mock}}\nmodels:\n  m: [{{provider: local, model: echo}}]\n"
    )
    probe = f"""
import asyncio, sys
from pathlib import Path
from faregate.gateway import Gateway
import faregate.server.app
async def main():
    gw = Gateway(Path({str(path)!r}))
    await gw.start()
    assert gw.tracer is None
    await gw.stop()
asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.trace.propagation.tracecontext"))))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False, env={**os.environ, **MASTER}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
