"""`faregate check` for providers of type anthropic, as a real process: a valid one passes without
printing its key, an unset key variable is an error naming it, a provider with no credentials and
an unpriced Claude model are warnings, a base_url with /v1 is an error."""

from __future__ import annotations

from pathlib import Path

from tests.support.procs import run_cli

CANARY = "sk-ant-CANARY-check-0123456789abcdef"
ENV = {"FAREGATE_MASTER_KEY": "sk-fg-CANARY-master-check-anthropic", "ANTHROPIC_API_KEY": CANARY}
HEAD = 'server: {master_key: "${FAREGATE_MASTER_KEY}"}\nproviders:\n'


def check(tmp: Path, text: str) -> tuple[int, str]:
    path = tmp / "faregate.yaml"
    path.write_text(HEAD + text)
    result = run_cli("check", "-c", str(path), env=ENV)
    return result.returncode, result.stdout + result.stderr


def test_a_valid_anthropic_provider_passes_and_its_key_is_never_printed(tmp_path: Path) -> None:
    code, out = check(
        tmp_path,
        '  claude:\n    type: anthropic\n    anthropic_version: "2023-06-01"\n'
        '    credentials: [{id: main, key: "${ANTHROPIC_API_KEY}"}]\n'
        "models:\n  sonnet:\n    - {provider: claude, model: claude-sonnet-4-5}\n",
    )
    assert code == 0, out
    assert CANARY not in out and "warning:" not in out and "ok, 0 warning(s)" in out


def test_missing_credentials_and_an_unpriced_model_are_named(tmp_path: Path) -> None:
    code, out = check(
        tmp_path,
        '  claude:\n    type: anthropic\n    credentials: [{id: main, key: "${ANTHROPIC_KEY_NOT_SET}"}]\n'
        "  bare:\n    type: anthropic\n    base_url: http://127.0.0.1:9\n"
        "models:\n  sonnet:\n    - {provider: claude, model: claude-sonnet-4-5}\n"
        "  future:\n    - {provider: bare, model: claude-unreleased-9}\n",
    )
    assert code == 1, out
    assert "error: providers.claude.credentials[0].key: environment variable ANTHROPIC_KEY_NOT_SET is not set" in out
    assert "warning: providers.bare: no credentials: requests are sent without an API key" in out
    assert "warning: models.future[0].model: 'claude-unreleased-9' is unpriced" in out
    assert "1 error(s), 2 warning(s)" in out


def test_a_base_url_with_v1_is_an_error(tmp_path: Path) -> None:
    code, out = check(
        tmp_path,
        "  claude:\n    type: anthropic\n    base_url: https://api.anthropic.com/v1\n"
        '    credentials: [{id: main, key: "${ANTHROPIC_API_KEY}"}]\n'
        "models:\n  sonnet:\n    - {provider: claude, model: claude-sonnet-4-5}\n",
    )
    assert code == 1, out
    assert "error: providers.claude.base_url: leave out the /v1" in out and CANARY not in out
