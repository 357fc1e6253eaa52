"""The README's "Claude Code through faregate" lines, as written, against the demo `make run` serves
(examples/demo.yaml, its demo key): the /v1/messages curl lines answer Anthropic-shaped bodies, and
the official anthropic SDK configured only by the environment variables the README tells Claude
Code users to set (it reads the same ones) gets an answer, plain and streamed, with either key form."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import orjson
import pytest

from tests.support.procs import GatewayProcess

ROOT = Path(__file__).resolve().parents[1]
DEMO_URL = "http://127.0.0.1:4000"  # where `make run` serves the demo (examples/demo.yaml server.port)
DEMO_KEY = "sk-faregate-demo"  # what `make run` sets FAREGATE_MASTER_KEY to


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n## {title}\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def curl_commands(text: str) -> list[str]:
    """Each `curl ... /v1/messages...` command of the section, its continuation lines joined."""
    commands: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is None and line.startswith(f"curl -s {DEMO_URL}/v1/messages"):
            current = []
        if current is not None:
            current.append(line)
            if not line.endswith("\\"):
                commands.append("\n".join(current))
                current = None
    return commands


def exported(text: str) -> dict[str, str]:
    """The variables the section's `export` lines set."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, _, value = word.partition("=")
                values[name] = value
    return values


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("demo")
    (tmp / "examples").mkdir()  # laid out as in the repository: the state goes to ../.faregate/
    config = (ROOT / "examples" / "demo.yaml").read_text()
    with GatewayProcess(tmp / "examples", config, env={"FAREGATE_MASTER_KEY": DEMO_KEY}) as gw:
        yield gw


def test_the_readmes_messages_curl_lines_answer_from_the_demo(demo: GatewayProcess) -> None:
    commands = curl_commands(section("Claude Code through faregate"))
    assert [c.split()[2] for c in commands] == [f"{DEMO_URL}/v1/messages", f"{DEMO_URL}/v1/messages/count_tokens"], commands
    answers = []
    for command in commands:
        ran = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + command.replace(DEMO_URL, demo.url)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        answers.append(orjson.loads(ran.stdout))
    message, counted = answers
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "mock-small"  # the upstream model's name, as a real upstream answers
    assert message["stop_reason"] == "end_turn" and message["content"][0]["type"] == "text"
    assert message["content"][0]["text"] == "This is the faregate mock provider answering: Hello!"
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0
    assert isinstance(counted["input_tokens"], int) and counted["input_tokens"] > 0 and set(counted) == {"input_tokens"}


@pytest.mark.parametrize("key_variable", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_the_anthropic_sdk_set_up_as_the_readme_tells_claude_code_users_gets_answers(
    demo: GatewayProcess, key_variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK built with no arguments reads ANTHROPIC_BASE_URL and ANTHROPIC_AUTH_TOKEN (sent as
    Bearer) or ANTHROPIC_API_KEY (sent as x-api-key), as Claude Code does; the model names are the
    ones the README's ANTHROPIC_DEFAULT_*_MODEL lines tell Claude Code to ask for."""
    text = section("Claude Code through faregate")
    env = exported(text)
    assert env["ANTHROPIC_BASE_URL"] == DEMO_URL and env["ANTHROPIC_AUTH_TOKEN"] == DEMO_KEY
    assert f"`{key_variable}`" in text
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", env["ANTHROPIC_BASE_URL"].replace(DEMO_URL, demo.url))
    monkeypatch.setenv(key_variable, env["ANTHROPIC_AUTH_TOKEN"])
    client = anthropic.Anthropic(max_retries=0, timeout=30)
    hello: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hello!"}]
    raw = client.messages.with_raw_response.create(model=env["ANTHROPIC_DEFAULT_SONNET_MODEL"], max_tokens=100, messages=hello)
    message = raw.parse()
    assert message.model == "mock-small" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "This is the faregate mock provider answering: Hello!"
    assert raw.headers["x-faregate-provider"] == "local-mock" and raw.headers["request-id"] == raw.headers["x-faregate-request-id"]
    with client.messages.stream(model=env["ANTHROPIC_DEFAULT_HAIKU_MODEL"], max_tokens=100, messages=hello) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == message.content[0].text and final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    counted = client.messages.with_raw_response.count_tokens(model=env["ANTHROPIC_DEFAULT_HAIKU_MODEL"], messages=hello)
    assert counted.parse().input_tokens > 0 and counted.headers["x-faregate-estimated"] == "true"
