"""`faregate check -c FILE` as a real process: what it prints and how it exits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from faregate.credentials.keyring import build
from faregate.types import Secret
from tests.support.procs import run_cli

CANARY = "sk-CANARY-check-123456"
MASTER = "sk-fg-CANARY-master-987654"
ENV = {"FAREGATE_MASTER_KEY": MASTER, "OPENAI_API_KEY": CANARY}

VALID = """\
server: {master_key: "${FAREGATE_MASTER_KEY}"}
providers:
  openai-main:
    type: openai
    credentials:
      - {id: primary, key: "${OPENAI_API_KEY}"}
      - {id: backup, key_file: secrets/backup, retiring: true}
  local: {type: mock}
models:
  gpt-4o:
    - {provider: openai-main, model: gpt-4o-2024-08-06}
  demo:
    - {provider: local, model: mock-small}
fallbacks:
  gpt-4o: [demo]
prices:
  mock-small: {input: 0.1, output: 0.4}
"""


def write(tmp: Path, text: str, backup: str = "sk-CANARY-backup-111111") -> Path:
    (tmp / "secrets").mkdir(exist_ok=True)
    (tmp / "secrets" / "backup").write_text(f"{backup}\n")
    path = tmp / "faregate.yaml"
    path.write_text(text)
    return path


def check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run_cli("check", "-c", str(path), env=env)
    output = result.stdout + result.stderr
    for value in [*(v for v in env.values() if v.strip()), "sk-CANARY"]:
        assert value not in output, f"a secret leaked into check's output:\n{output}"
    return result


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def test_valid_config_prints_ok_with_the_generation_id(tmp: Path) -> None:
    path = write(tmp, VALID)
    result = check(path, ENV)
    generation, _ = build(path, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == [f"{path}: ok, 0 warning(s); generation {generation.id}: 2 model(s), 2 provider(s)"]


def test_warnings_only_are_all_printed_and_exit_zero(tmp: Path) -> None:
    text = VALID.replace("{provider: local, model: mock-small}", "{provider: local, model: mock-small, weight: 0}").replace(
        "gpt-4o: [demo]", "gpt-4o: [demo]\n  demo: [gpt-4o]"
    )
    path = write(tmp, text, backup=CANARY)  # the backup file holds the same key as the env var
    result = check(path, ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    out = lines(result)
    assert out[:-1] == [
        "warning: models.demo[0].weight: weight 0 disables this deployment (the default is 1)",
        "warning: models.demo: no enabled deployment (every weight is 0): every request will get 503",
        "warning: fallbacks.gpt-4o: fallback cycle: gpt-4o -> demo -> gpt-4o "
        "(only the requested model's own fallbacks are followed, so the loop is never walked)",
        "warning: providers.openai-main.credentials[1]: the same key as providers.openai-main.credentials[0] "
        f"(fingerprint {Secret(CANARY).fingerprint})",
    ]
    assert out[-1].startswith(f"{path}: ok, 4 warning(s); generation ")


def test_every_secret_error_is_printed_and_exit_one(tmp: Path) -> None:
    text = VALID.replace(
        '      - {id: primary, key: "${OPENAI_API_KEY}"}\n',
        '      - {id: primary, key: "${OPENAI_API_KEY}"}\n'
        '      - {id: unset, key: "${UNSET_KEY}"}\n'
        '      - {id: empty, key: "os.environ/EMPTY_KEY"}\n'
        "      - {id: missing, key_file: secrets/missing}\n"
        "      - {id: emptyfile, key_file: secrets/empty}\n"
        f"      - {{id: literal, key: {CANARY}}}\n",
    )
    path = write(tmp, text)
    (tmp / "secrets" / "empty").write_text("  \n")
    result = check(path, {**ENV, "EMPTY_KEY": ""})
    assert result.returncode == 1
    prefix = "error: providers.openai-main.credentials"
    assert lines(result) == [
        f"{prefix}[1].key: environment variable UNSET_KEY is not set",
        f"{prefix}[2].key: environment variable EMPTY_KEY is empty",
        f"{prefix}[3].key_file: key file {tmp / 'secrets' / 'missing'} does not exist",
        f"{prefix}[4].key_file: key file {tmp / 'secrets' / 'empty'} is empty",
        f"{prefix}[5].key: not a secret reference: write '${{NAME}}', 'os.environ/NAME' or key_file: PATH "
        "(literal secrets are not accepted in config files)",
        f"{path}: 5 error(s), 0 warning(s)",
    ]


def test_every_schema_error_is_printed_and_exit_one(tmp: Path) -> None:
    text = (
        VALID.replace('server: {master_key: "${FAREGATE_MASTER_KEY}"}', 'server: {master_key: "${FAREGATE_MASTER_KEY}", port: "abc"}')
        .replace("model: gpt-4o-2024-08-06}", "model: gpt-4o-2024-08-06, weigth: 2}")
        .replace("local: {type: mock}", "local: {type: mokc}")
        + "routes: {}\n"
    )
    result = check(write(tmp, text), ENV)
    assert result.returncode == 1
    out = lines(result)
    assert "error: models.gpt-4o[0]: unknown key 'weigth' (did you mean 'weight'?)" in out
    assert "error: (top level): unknown key 'routes' (did you mean 'routing'?)" in out
    assert (
        "error: providers.local.type: unknown provider type 'mokc' (did you mean 'mock'?); supported: openai, anthropic, azure, gemini, vertex, bedrock, mock"
        in out
    )
    assert any(line.startswith("error: server.port: ") and "'abc'" in line for line in out)
    assert out[-1].endswith(": 4 error(s), 0 warning(s)")


def test_every_cross_reference_error_is_printed_and_exit_one(tmp: Path) -> None:
    text = (
        VALID.replace('server: {master_key: "${FAREGATE_MASTER_KEY}"}', "server: {port: 4000}")
        .replace("{provider: openai-main, model", "{provider: opneai, model")
        .replace("gpt-4o: [demo]", "gpt-4o: [dmeo]")
    )
    path = write(tmp, text)
    result = check(path, ENV)
    assert result.returncode == 1
    out = lines(result)
    assert out[0].startswith("error: server.master_key: no master key")
    assert out[1:] == [
        "error: models.gpt-4o[0].provider: unknown provider 'opneai' (did you mean 'openai-main'?)",
        "error: fallbacks.gpt-4o[0]: unknown model 'dmeo' (did you mean 'demo'?)",
        f"{path}: 3 error(s), 0 warning(s)",
    ]


def test_yaml_syntax_error_is_printed_with_its_line_and_exit_one(tmp: Path) -> None:
    path = write(tmp, VALID.replace("  local: {type: mock}", "  local: {type: mock"))
    result = check(path, ENV)
    assert result.returncode == 1
    (error, summary) = lines(result)
    assert error.startswith(f"error: {path}: YAML syntax error at line ")
    assert summary == f"{path}: 1 error(s), 0 warning(s)"


def test_empty_file_is_an_error_and_exit_one(tmp: Path) -> None:
    path = write(tmp, "")
    result = check(path, ENV)
    assert result.returncode == 1
    assert lines(result) == [f"error: config file {path} is empty", f"{path}: 1 error(s), 0 warning(s)"]
