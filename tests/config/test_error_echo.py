"""A config validation error never echoes an input value that could be a secret: not in
`faregate check`, not in the 422 of `/admin/reload`, not in the gateway's log. It still names the
path and what was expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel, ValidationError, field_validator

from faregate.config.load import _pydantic_problems
from tests.support.procs import MASTER_KEY, GatewayProcess, run_cli

CANARY = "sk-CANARY-bare-9f2e4d6c8a0b"
VALID = """\
server: {master_key: "${FAREGATE_MASTER_KEY}"}
providers:
  up:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{key: "${UP_KEY}"}]
  local: {type: mock}
models:
  m: [{provider: local, model: mock-small}]
"""
ENV = {"FAREGATE_MASTER_KEY": MASTER_KEY, "UP_KEY": "sk-up-0000"}
NOT_SHOWN = "not shown, as it may be a secret"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            'credentials: [{key: "${UP_KEY}"}]',
            f"credentials: [{CANARY}]",
            f"error: providers.up.credentials[0]: Input should be a valid dictionary or instance of CredentialConfig (got a string; {NOT_SHOWN})",
            id="bare-string-credential",
        ),
        pytest.param(
            'credentials: [{key: "${UP_KEY}"}]',
            f'credentials: [{{key: "${{UP_KEY}}", weight: {CANARY}}}]',
            f"error: providers.up.credentials[0].weight: Input should be a valid integer, unable to parse string as an integer (got a string; {NOT_SHOWN})",
            id="inside-a-credential",
        ),
        pytest.param(
            "base_url: http://127.0.0.1:9/v1",
            f"base_url: http://127.0.0.1:9/v1\n    headers: Bearer {CANARY}",
            f"error: providers.up.headers: Input should be a valid dictionary (got a string; {NOT_SHOWN})",
            id="headers-not-a-mapping",
        ),
        pytest.param(
            "base_url: http://127.0.0.1:9/v1",
            f"base_url: http://127.0.0.1:9/v1\n    headers: {{api-key: [{CANARY}]}}",
            "error: providers.up.headers.api-key: Input should be a valid string",
            id="header-a-list",
        ),
        pytest.param(
            "  local: {type: mock}",
            f"  local: {{type: {CANARY}}}",
            f"error: providers.local.type: unknown provider type (got a string; {NOT_SHOWN}); supported: openai, anthropic, azure, gemini, vertex, bedrock, mock",
            id="provider-type",
        ),
        pytest.param(
            "type: openai\n",
            f"type: openai\n    credential_strategy: {CANARY}\n",
            "error: providers.up.credential_strategy: Input should be 'round_robin', 'weighted' or 'fill_first' "
            f"(got a string; {NOT_SHOWN})",
            id="literal",
        ),
        pytest.param(
            'server: {master_key: "${FAREGATE_MASTER_KEY}"}',
            f'server: {{master_key: "${{FAREGATE_MASTER_KEY}}", port: {CANARY}}}',
            f"error: server.port: Input should be a valid integer, unable to parse string as an integer (got a string; {NOT_SHOWN})",
            id="secret-looking-anywhere",
        ),
        pytest.param(
            "models:",
            f"state: {{database: ['postgresql://u:{CANARY}@db/x']}}\nmodels:",
            "error: state.database: Input should be a valid string",
            id="state-url",
        ),
        pytest.param(
            "models:",
            "state: {redis: 42}\nmodels:",
            f"error: state.redis: Input should be a valid string (got a number; {NOT_SHOWN})",
            id="state-redis",
        ),
    ],
)
def test_check_names_the_path_and_the_expectation_but_never_the_value(tmp: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    path = tmp / "faregate.yaml"
    path.write_text(VALID.replace(old, new, 1))
    result = run_cli("check", "-c", str(path), env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "CANARY" not in output, output
    assert expected in result.stdout.splitlines(), output


def test_values_that_cannot_be_secrets_are_still_shown(tmp: Path) -> None:
    path = tmp / "faregate.yaml"
    path.write_text(VALID.replace("models:", "routing: {retries: lots, cooldown: {failures: -1}}\nmodels:"))
    out = run_cli("check", "-c", str(path), env=ENV).stdout.splitlines()
    assert "error: routing.retries: Input should be a valid integer, unable to parse string as an integer (got 'lots')" in out
    assert "error: routing.cooldown.failures: Input should be greater than or equal to 1 (got -1)" in out


def test_a_secret_looking_mapping_key_is_not_shown(tmp: Path) -> None:
    path = tmp / "faregate.yaml"
    path.write_text(VALID.replace('credentials: [{key: "${UP_KEY}"}]', f"credentials: [{{{CANARY}: x}}]"))
    result = run_cli("check", "-c", str(path), env=ENV)
    assert result.returncode == 1
    assert "CANARY" not in result.stdout + result.stderr
    assert "error: providers.up.credentials[0]: unknown key '(a key not shown: it looks like a secret)'" in result.stdout


def test_reload_422_and_the_log_never_echo_a_bare_string_credential(tmp: Path, gateways: Callable[..., GatewayProcess]) -> None:
    gw = gateways(VALID, env=ENV)
    gw.config_path.write_text(VALID.replace('credentials: [{key: "${UP_KEY}"}]', f"credentials: [{CANARY}]"))
    r = httpx.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {MASTER_KEY}"}, json={"timeout": 10}, timeout=30)
    assert r.status_code == 422, r.text
    assert CANARY not in r.text
    body = r.json()
    assert body["error"]["code"] == "invalid_config"
    assert (
        f"error: providers.up.credentials[0]: Input should be a valid dictionary or instance of CredentialConfig (got a string; {NOT_SHOWN})"
        in body["problems"]
    )
    gw.stop()
    logs = gw.logs()
    assert "reload failed" in logs  # the failure was logged, with its path
    assert "providers.up.credentials[0]" in logs
    assert CANARY not in logs


def test_a_validator_sentence_that_quotes_the_value_is_scrubbed() -> None:
    class Section(BaseModel):
        credentials: str

        @field_validator("credentials")
        @classmethod
        def refuse(cls, value: str) -> str:
            raise ValueError(f"cannot use {value} here")

    with pytest.raises(ValidationError) as info:
        Section.model_validate({"credentials": CANARY})
    (problem,) = _pydantic_problems(info.value)
    assert str(problem) == "error: credentials: cannot use (the value, not shown) here"
