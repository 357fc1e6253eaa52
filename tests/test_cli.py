"""`faregate serve` start-up rules: no master key, no start; `auth: none` only on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.procs import GatewayProcess, free_port, run_cli

MOCK_MODELS = """
providers:
  local: {type: mock}
models:
  m:
    - {provider: local, model: mock-small}
"""


def test_serve_refuses_to_start_without_a_master_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"server: {{port: {free_port()}}}\n{MOCK_MODELS}")
    result = run_cli("serve", "-c", str(path), timeout=30)
    assert result.returncode == 1
    assert "server.master_key: no master key" in result.stderr
    assert "auth: none" in result.stderr


def test_serve_refuses_an_unset_master_key_reference(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: {master_key: '${NOT_SET_ANYWHERE}'}\n" + MOCK_MODELS)
    result = run_cli("serve", "-c", str(path), timeout=30)
    assert result.returncode == 1
    assert "error: server.master_key: environment variable NOT_SET_ANYWHERE is not set" in result.stderr


def test_auth_none_binds_loopback_only_and_says_so(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, "server: {auth: none}\n" + MOCK_MODELS, extra_args=("--host", "0.0.0.0"))
    with gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200  # no key needed
    logs = gw.logs()
    assert "auth: none -> binding to 127.0.0.1 instead of 0.0.0.0" in logs
    assert f"Uvicorn running on http://127.0.0.1:{gw.port}" in logs


def test_demo_config_is_valid(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
    result = run_cli("check", "-c", str(demo), env={"FAREGATE_MASTER_KEY": "sk-faregate-demo"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": ok, 0 warning(s)" in result.stdout


def test_demo_answers_with_the_mock_provider(tmp_path: Path) -> None:
    demo = (Path(__file__).resolve().parents[1] / "examples" / "demo.yaml").read_text()
    (tmp_path / "examples").mkdir()  # laid out as in the repository: the state goes to ../.faregate/
    with GatewayProcess(tmp_path / "examples", demo) as gw:
        from tests.support.configs import client

        sdk = client(gw)
        reply = sdk.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].message.content == "This is the faregate mock provider answering: Hello!"
        chunks = list(sdk.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "Hello!"}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
        fell_back = sdk.chat.completions.with_raw_response.create(model="demo-flaky", messages=[{"role": "user", "content": "Hi"}])
        assert fell_back.headers["x-faregate-fallback"] == "demo-flaky -> demo-chat"
        assert len(sdk.embeddings.create(model="demo-embed", input="hi").data[0].embedding) == 8
    assert (tmp_path / ".faregate" / "state.db").is_file()  # where `make run` keeps it: ./.faregate/, not examples/
    assert not (tmp_path / "examples" / ".faregate").exists()
