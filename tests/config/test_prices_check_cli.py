"""`faregate check` on deployments of the new provider kinds: the shipped table prices them by upstream model id."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import run_cli

ENV = {"FAREGATE_MASTER_KEY": "sk-fg-CANARY-master-555555", "GEMINI_KEY": "AIza-CANARY-gemini-1234", "AZURE_KEY": "CANARY-azure-98765"}

CONFIG = """\
server: {master_key: "${FAREGATE_MASTER_KEY}"}
providers:
  aws: {type: bedrock, region: us-east-1}
  google:
    type: gemini
    credentials: [{key: "${GEMINI_KEY}"}]
  contoso:
    type: azure
    base_url: https://contoso.openai.azure.com
    api_version: v1
    credentials: [{key: "${AZURE_KEY}"}]
models:
  claude:
    - {provider: aws, model: us.anthropic.claude-sonnet-4-6}
    - {provider: aws, model: global.anthropic.claude-sonnet-4-6}
  nova:
    - {provider: aws, model: us.amazon.nova-pro-v1:0}
  flash:
    - {provider: google, model: gemini-3.5-flash}
  embed:
    - {provider: google, model: gemini-embedding-2}
  gpt:
    - {provider: contoso, model: gpt-4o}
  chat:
    - {provider: contoso, model: contoso-chat-prod}
"""


def test_bedrock_profiles_and_gemini_models_need_no_prices_entry(tmp: Path) -> None:
    path = tmp / "faregate.yaml"
    path.write_text(CONFIG)
    result = run_cli("check", "-c", str(path), env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "CANARY" not in output
    unpriced = [line for line in output.splitlines() if "is unpriced" in line]
    # Only the Azure deployment named by its owner (not by a model name) is unpriced, and the warning says what to do.
    assert len(unpriced) == 1, output
    assert "models.chat[0].model: 'contoso-chat-prod' is unpriced" in unpriced[0]
    assert "add it to prices:" in unpriced[0]
