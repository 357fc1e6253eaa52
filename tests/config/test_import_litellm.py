"""`faregate import-litellm`: LiteLLM proxy configs of the shapes its documentation shows
(tests/fixtures/litellm/) converted, checked, and served by a real gateway in front of fake
upstreams (OpenAI, Anthropic, Azure), answering the same public model names with the openai SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "litellm"
LITERALS = ("sk-litellm-master-1234567890abcdef", "sk-ant-literal-0123456789abcdefghijklmnop", "9f8e7d6c5b4a39281706f5e4d3c2b1a0")
ROUTER_ENV = {
    "LITELLM_MASTER_KEY": MASTER_KEY,
    "AZURE_API_KEY_EU": "az-eu-key",
    "AZURE_API_KEY_CA": "az-ca-key",
    "OPENAI_API_KEY": "sk-openai-test",
    "GEMINI_API_KEY": "gemini-test",
    "AWS_ACCESS_KEY_ID": "AKIATESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "secret-test",
    "FAREGATE_REDIS_URL": "redis://127.0.0.1:1/0",
}


def _import(source: Path, out: Path) -> tuple[dict[str, object], str, str]:
    result = run_cli("import-litellm", str(source), "-o", str(out))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(out.read_text()), out.read_text(), result.stderr


def _service_account(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "my-project-123", "private_key_id": "0" * 40, "private_key": pem}
    info |= {"client_email": "gw@my-project-123.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"}
    path.write_text(json.dumps(info))


def test_literal_secrets_become_references_named_on_stderr_and_never_copied(tmp_path: Path) -> None:
    config, text, stderr = _import(FIXTURES / "multi_provider.yaml", tmp_path / "faregate.yaml")
    for literal in LITERALS:
        assert literal not in text and literal not in stderr
    assert config["server"] == {"master_key": "${FAREGATE_MASTER_KEY}"}
    providers = config["providers"]
    assert providers["anthropic"]["credentials"] == [{"key": "${ANTHROPIC_API_KEY}"}]
    assert providers["azure"]["credentials"] == [{"key": "${AZURE_API_KEY}"}]
    assert providers["openai"]["credentials"] == [{"key": "os.environ/OPENAI_API_KEY"}]  # a reference stays as written
    for name in ("FAREGATE_MASTER_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY"):
        assert f"set {name}" in stderr
    # what has no equivalent is said on stderr and in the file, with what to do instead
    for path in ("model_list[2].litellm_params.temperature", "litellm_settings.success_callback"):
        assert f"not converted: {path}:" in stderr
        assert f"#   {path}:" in text
    assert config["fallbacks"] == {"gpt-4o": ["gpt-4o-mini"]}
    assert config["routing"] == {"retries": 2}
    assert config["prices"] == {"gpt-4o": {"input": 2.5, "output": 10.0}}
    assert config["models"]["gpt-4o-mini"] == [
        {"provider": "openai", "model": "gpt-4o-mini", "rpm": 600, "tpm": 200000, "drop_params": True}
    ]


def test_router_settings_azure_accounts_and_cache_convert_and_pass_check(tmp_path: Path) -> None:
    out = tmp_path / "faregate.yaml"
    config, text, stderr = _import(FIXTURES / "router_azure.yaml", out)
    assert "dbpassword9090" not in text and "dbpassword9090" not in stderr
    providers = config["providers"]
    # two Azure resources, two providers; both gpt-4o-mini and one gpt-4o deployment share the EU one
    eu, ca = providers["azure-my-endpoint-eu"], providers["azure-my-endpoint-canada"]
    assert eu == {
        "type": "azure",
        "api_version": "2024-10-21",
        "base_url": "https://my-endpoint-eu.openai.azure.com",
        "credentials": [{"key": "os.environ/AZURE_API_KEY_EU"}],
    }
    assert ca["credentials"] == [{"key": "os.environ/AZURE_API_KEY_CA"}]
    assert providers["vllm"] == {"type": "openai", "base_url": "http://10.0.0.5:8000/v1"}
    assert providers["ollama-chat"]["base_url"] == "http://localhost:11434/v1"
    assert providers["vertex-ai"]["project"] == "my-project-123" and providers["vertex-ai"]["location"] == "us-east5"
    assert providers["bedrock"]["region"] == "us-west-2"
    gpt4o = config["models"]["gpt-4o"]
    assert gpt4o["cache"] == {"ttl": 300.0}
    assert [(d["provider"], d.get("priority"), d.get("weight"), d.get("rpm"), d.get("tpm")) for d in gpt4o["deployments"]] == [
        ("azure-my-endpoint-eu", 1, 3, 900, None),
        ("azure-my-endpoint-canada", 1, None, None, 100000),
        ("openai", 2, None, None, None),
    ]
    assert config["models"]["gpt-4o-mini"]["deployments"] == [{"provider": "azure-my-endpoint-eu", "model": "gpt-4o-mini"}]
    assert config["models"]["gpt-4"]["deployments"] == gpt4o["deployments"]  # model_group_alias
    assert "command-r" not in config["models"]
    assert config["routing"] == {"retries": 3, "cooldown": {"failures": 3, "seconds": 45.0}}
    assert config["fallbacks"] == {"gpt-4o": ["gpt-4o-mini"]}
    assert config["state"] == {"database": "postgresql://llmproxy@db.internal:5432/litellm", "redis": "${FAREGATE_REDIS_URL}"}
    for said in ("set PGPASSWORD", "set FAREGATE_REDIS_URL", "provider 'cohere' has no faregate provider type"):
        assert said in stderr
    for path in ("router_settings.routing_strategy", "router_settings.context_window_fallbacks", "general_settings.alerting"):
        assert f"not converted: {path}:" in stderr
    _service_account(tmp_path / "vertex-sa.json")
    checked = run_cli("check", "-c", str(out), env=ROUTER_ENV)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ": ok," in checked.stdout


@pytest.mark.parametrize("command", ["check", "serve"])
def test_check_and_serve_given_a_litellm_file_name_the_importer(command: str) -> None:
    source = FIXTURES / "multi_provider.yaml"
    result = run_cli(command, "-c", str(source), env={"FAREGATE_MASTER_KEY": MASTER_KEY})
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "is a LiteLLM proxy config (model_list, litellm_settings, general_settings)" in said
    assert f"faregate import-litellm {source} -o faregate.yaml" in said
    assert "unknown key" not in said


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeOpenAI, FakeAnthropic, FakeAzure]]:
    tmp = tmp_path_factory.mktemp("litellm-import")
    with FakeOpenAI() as oa, FakeAnthropic() as an, FakeAzure() as az:
        out = tmp / "imported.yaml"
        assert run_cli("import-litellm", str(FIXTURES / "multi_provider.yaml"), "-o", str(out)).returncode == 0
        env = {"FAKE_OPENAI_BASE": oa.url, "FAKE_ANTHROPIC_BASE": an.url, "FAKE_AZURE_BASE": az.url}
        env |= {"OPENAI_API_KEY": "sk-openai-test", "ANTHROPIC_API_KEY": "sk-ant-test", "AZURE_API_KEY": "azure-test-key"}
        with GatewayProcess(tmp, out.read_text(), env=env) as gateway:
            yield gateway, oa, an, az


@pytest.mark.parametrize(("model", "upstream"), [("gpt-4o", "oa"), ("gpt-4o-mini", "oa"), ("claude-sonnet", "an"), ("azure-gpt-4o", "az")])
def test_the_imported_config_serves_the_same_public_names(
    served: tuple[GatewayProcess, FakeOpenAI, FakeAnthropic, FakeAzure], model: str, upstream: str
) -> None:
    gateway, oa, an, az = served
    fake = {"oa": oa, "an": an, "az": az}[upstream]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    before = len(fake.requests)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert len(fake.requests) == before + 1
    assert model in {m.id for m in client.models.list()}


def test_a_literal_never_takes_a_variable_the_file_uses_and_literal_header_secrets_become_references() -> None:
    from faregate.config.litellm import convert

    literal, token = "sk-literal-aaaaaaaaaaaaaaaaaaaaaaaa", "Bearer abcdef0123456789abcdef0123456789"
    data = {
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {"model": "openai/gpt-4o", "api_key": literal, "extra_headers": {"Authorization": token}},
            },
            {
                "model_name": "b",
                "litellm_params": {"model": "openai/x", "api_base": "https://o.example/v1", "api_key": "os.environ/OPENAI_API_KEY"},
            },
            {"model_name": "c", "litellm_params": {"model": "llama3"}},
        ]
    }
    imported = convert(data)
    providers = imported.config["providers"]
    assert providers["openai"]["credentials"] == [{"key": "${OPENAI_API_KEY_2}"}]
    assert providers["openai"]["headers"] == {"Authorization": "${OPENAI_AUTHORIZATION}"}
    assert providers["openai-o"]["credentials"] == [{"key": "os.environ/OPENAI_API_KEY"}]
    said = "\n".join(str(n) for n in imported.secrets + imported.unconverted)
    assert literal not in said and token not in said and literal not in yaml.safe_dump(imported.config)
    assert "model_list[2].litellm_params.model: 'llama3' names no provider" in said
    assert set(imported.config["models"]) == {"a", "b"}
