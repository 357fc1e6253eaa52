"""Secret references: the three accepted forms, every way they fail, and the generation id they feed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from faregate.credentials.keyring import build
from faregate.credentials.refs import RefError, expand_env, is_reference, resolve_env_ref, resolve_key_file
from faregate.errors import ConfigError
from faregate.types import Secret

CANARY = "sk-CANARY-check-123456"
OTHER = "sk-CANARY-other-654321"


# --- resolve_env_ref ------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["${OPENAI_API_KEY}", "os.environ/OPENAI_API_KEY"])
def test_env_reference_forms_resolve(ref: str) -> None:
    assert resolve_env_ref(ref, {"OPENAI_API_KEY": CANARY}).reveal() == CANARY


def test_env_value_is_stripped() -> None:
    assert resolve_env_ref("${K}", {"K": f"  {CANARY}\n"}).reveal() == CANARY


def test_env_reference_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAREGATE_TEST_REF", CANARY)
    assert resolve_env_ref("os.environ/FAREGATE_TEST_REF").reveal() == CANARY


def test_unset_env_var_is_an_error() -> None:
    with pytest.raises(RefError, match=r"^environment variable K is not set$"):
        resolve_env_ref("${K}", {})


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_env_var_is_an_error(value: str) -> None:
    with pytest.raises(RefError, match=r"^environment variable K is empty$"):
        resolve_env_ref("${K}", {"K": value})


@pytest.mark.parametrize("literal", [CANARY, f"${CANARY}", "$OPENAI_API_KEY", "${OPENAI_API_KEY", "os.environ/", "${1BAD}", " ${K}"])
def test_anything_but_a_reference_is_refused_without_echoing_it(literal: str) -> None:
    with pytest.raises(RefError) as info:
        resolve_env_ref(literal, {"K": "x", "OPENAI_API_KEY": "x"})
    assert str(info.value) == (
        "not a secret reference: write '${NAME}', 'os.environ/NAME' or key_file: PATH (literal secrets are not accepted in config files)"
    )


def test_is_reference() -> None:
    assert is_reference("${A_1}")
    assert is_reference("os.environ/A_1")
    assert not is_reference(CANARY)
    assert not is_reference("https://api.example.com/${A}")


def test_expand_env_passes_plain_text_and_resolves_references() -> None:
    assert expand_env("https://api.example.com/v1", {}) == "https://api.example.com/v1"
    assert expand_env("${BASE}", {"BASE": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"
    with pytest.raises(RefError, match="BASE is not set"):
        expand_env("${BASE}", {})


def test_secret_repr_never_shows_the_value() -> None:
    secret = Secret(CANARY)
    assert CANARY not in repr(secret)
    assert CANARY not in str(secret)
    assert CANARY not in f"{secret}"
    assert len(secret.fingerprint) == 8


# --- resolve_key_file -----------------------------------------------------------------------


def test_key_file_is_relative_to_the_base_dir(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "k").write_text(CANARY)
    monkeypatch.chdir("/")
    assert resolve_key_file("secrets/k", tmp).reveal() == CANARY


def test_absolute_key_file_ignores_the_base_dir(tmp: Path) -> None:
    (tmp / "k").write_text(CANARY)
    assert resolve_key_file(str(tmp / "k"), Path("/nonexistent")).reveal() == CANARY


@pytest.mark.parametrize("content", [f"{CANARY}\n", f"  {CANARY}  \n\n", f"\n\t{CANARY}\r\n"])
def test_key_file_surrounding_whitespace_is_stripped(tmp: Path, content: str) -> None:
    (tmp / "k").write_text(content)
    assert resolve_key_file("k", tmp).reveal() == CANARY


def test_missing_key_file_is_an_error(tmp: Path) -> None:
    with pytest.raises(RefError, match=r"key file .*/nope does not exist$"):
        resolve_key_file("nope", tmp)


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_key_file_is_an_error(tmp: Path, content: str) -> None:
    (tmp / "k").write_text(content)
    with pytest.raises(RefError, match=r"key file .*/k is empty$"):
        resolve_key_file("k", tmp)


def test_multi_line_key_file_is_refused_without_echoing_it(tmp: Path) -> None:
    (tmp / "k").write_text(f"{CANARY}\n{OTHER}\n")
    with pytest.raises(RefError, match="holds more than one line") as info:
        resolve_key_file("k", tmp)
    assert CANARY not in str(info.value)
    assert OTHER not in str(info.value)


def test_unreadable_key_file_is_an_error(tmp: Path) -> None:
    (tmp / "dir").mkdir()
    with pytest.raises(RefError, match="cannot be read"):
        resolve_key_file("dir", tmp)


# --- through keyring.build: paths, canaries, generation ids ---------------------------------


def config(tmp: Path, credentials: str, *, name: str = "faregate.yaml", master: str = '"${FAREGATE_MASTER_KEY}"') -> Path:
    text = f"""\
server: {{master_key: {master}}}
providers:
  openai-main:
    type: openai
    credentials:
{textwrap.indent(textwrap.dedent(credentials), "      ")}
models:
  gpt-4o:
    - {{provider: openai-main, model: gpt-4o}}
"""
    path = tmp / name
    path.write_text(text)
    return path


ENV = {"FAREGATE_MASTER_KEY": "sk-fg-master-0123456789"}


def build_errors(path: Path, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(path, env=env)
    lines = [str(p) for p in info.value.problems]
    assert all(CANARY not in line and OTHER not in line for line in lines)
    assert CANARY not in str(info.value)
    return lines


@pytest.mark.parametrize("ref", ["${OPENAI_API_KEY}", "os.environ/OPENAI_API_KEY"])
def test_build_resolves_env_reference_forms(tmp: Path, ref: str) -> None:
    path = config(tmp, f'- {{id: primary, key: "{ref}"}}')
    generation, warnings = build(path, env={**ENV, "OPENAI_API_KEY": CANARY})
    assert warnings == []
    (cred,) = generation.providers["openai-main"].credentials
    assert cred.secret == Secret(CANARY)
    assert cred.label == f"openai-main/primary:{Secret(CANARY).fingerprint}"
    assert generation.master_key == Secret(ENV["FAREGATE_MASTER_KEY"])


def test_build_resolves_key_file_relative_to_the_config_dir(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp / "conf"
    (conf_dir / "secrets").mkdir(parents=True)
    (conf_dir / "secrets" / "openai").write_text(f"  {CANARY}\n")
    path = config(conf_dir, "- {id: primary, key_file: secrets/openai}")
    monkeypatch.chdir(tmp)  # not the config's directory
    generation, _ = build(path, env=ENV)
    (cred,) = generation.providers["openai-main"].credentials
    assert cred.secret == Secret(CANARY)
    assert (conf_dir / "secrets" / "openai").resolve() in generation.watched_files


def test_build_reports_every_unresolvable_reference_with_its_path(tmp: Path) -> None:
    (tmp / "empty").write_text("\n")
    (tmp / "multi").write_text(f"{CANARY}\n{OTHER}\n")
    path = config(
        tmp,
        """\
        - {id: a, key: "${UNSET_KEY}"}
        - {id: b, key: "os.environ/EMPTY_KEY"}
        - {id: c, key_file: missing}
        - {id: d, key_file: empty}
        - {id: e, key_file: multi}
        - {id: f, key: sk-CANARY-check-123456}
        """,
        master='"${UNSET_MASTER}"',
    )
    lines = build_errors(path, {"EMPTY_KEY": "  "})
    prefix = "error: providers.openai-main.credentials"
    assert lines == [
        f"{prefix}[0].key: environment variable UNSET_KEY is not set",
        f"{prefix}[1].key: environment variable EMPTY_KEY is empty",
        f"{prefix}[2].key_file: key file {tmp / 'missing'} does not exist",
        f"{prefix}[3].key_file: key file {tmp / 'empty'} is empty",
        f"{prefix}[4].key_file: key file {tmp / 'multi'} holds more than one line; it must hold exactly one key",
        f"{prefix}[5].key: not a secret reference: write '${{NAME}}', 'os.environ/NAME' or key_file: PATH "
        "(literal secrets are not accepted in config files)",
        "error: server.master_key: environment variable UNSET_MASTER is not set",
    ]


def test_literal_master_key_is_refused_without_echoing_it(tmp: Path) -> None:
    path = config(tmp, '- {key: "${OPENAI_API_KEY}"}', master=CANARY)
    (line,) = build_errors(path, {"OPENAI_API_KEY": OTHER})
    assert line.startswith("error: server.master_key: not a secret reference")


def test_unset_base_url_reference_is_an_error(tmp: Path) -> None:
    path = config(tmp, '- {key: "${OPENAI_API_KEY}"}')
    path.write_text(path.read_text().replace("type: openai\n", 'type: openai\n    base_url: "${OPENAI_BASE}"\n'))
    assert build_errors(path, {**ENV, "OPENAI_API_KEY": CANARY}) == [
        "error: providers.openai-main.base_url: environment variable OPENAI_BASE is not set"
    ]


def test_duplicate_credential_is_a_warning_with_a_fingerprint_not_the_key(tmp: Path) -> None:
    (tmp / "k").write_text(CANARY + "\n")
    path = config(tmp, '- {id: a, key: "${OPENAI_API_KEY}"}\n- {id: b, key_file: k}')
    generation, warnings = build(path, env={**ENV, "OPENAI_API_KEY": CANARY})
    assert [str(w) for w in warnings] == [
        "warning: providers.openai-main.credentials[1]: the same key as providers.openai-main.credentials[0] "
        f"(fingerprint {Secret(CANARY).fingerprint})"
    ]
    assert len(generation.providers["openai-main"].credentials) == 2


def test_generation_id_is_stable_when_nothing_changed(tmp: Path) -> None:
    (tmp / "k").write_text(CANARY)
    path = config(tmp, "- {id: primary, key_file: k}")
    first, _ = build(path, env=ENV)
    second, _ = build(path, env=ENV)
    assert first.id == second.id
    (tmp / "k").write_text(f"\n  {CANARY}  \n")  # same key after stripping
    assert build(path, env=ENV)[0].id == first.id


def test_generation_id_changes_when_a_key_file_changes(tmp: Path) -> None:
    (tmp / "k").write_text(CANARY)
    path = config(tmp, "- {id: primary, key_file: k}")
    before, _ = build(path, env=ENV)
    (tmp / "k").write_text(OTHER)
    after, _ = build(path, env=ENV)
    assert after.id != before.id
    (tmp / "k").write_text(CANARY)
    assert build(path, env=ENV)[0].id == before.id


def test_generation_id_changes_when_an_env_key_or_master_key_changes(tmp: Path) -> None:
    path = config(tmp, '- {key: "${OPENAI_API_KEY}"}')
    base = build(path, env={**ENV, "OPENAI_API_KEY": CANARY})[0].id
    assert build(path, env={**ENV, "OPENAI_API_KEY": OTHER})[0].id != base
    assert build(path, env={"FAREGATE_MASTER_KEY": "sk-fg-other-master", "OPENAI_API_KEY": CANARY})[0].id != base
