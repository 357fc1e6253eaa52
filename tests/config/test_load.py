"""Config loading: YAML + schema + cross-references, every problem named by its path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from faregate.config.load import load_config
from faregate.credentials.keyring import build
from faregate.errors import ConfigError

CANARY = "sk-CANARY-check-123456"

# A valid base that the cases below extend; `auth: none` so no master key is needed.
BASE = """\
server: {auth: none}
providers:
  openai-main:
    type: openai
    credentials:
      - {id: primary, key: "${OPENAI_API_KEY}"}
  local:
    type: mock
models:
  gpt-4o:
    - {provider: openai-main, model: gpt-4o-2024-08-06}
  demo:
    - {provider: local, model: mock-small}
"""


def write(tmp: Path, text: str, name: str = "faregate.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    """Every problem load_config raises, as printed (`severity: path: message`)."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def warnings_of(path: Path) -> list[str]:
    _, problems = load_config(path)
    assert all(p.severity == "warning" for p in problems)
    return [str(p) for p in problems]


def test_base_config_is_valid(tmp: Path) -> None:
    config, warnings = load_config(write(tmp, BASE))
    assert warnings == []
    assert config.models["gpt-4o"].deployments[0].provider == "openai-main"
    assert config.providers["openai-main"].credentials[0].key == "${OPENAI_API_KEY}"


# --- unknown keys: an error naming the path and the closest valid key -------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            BASE.replace("model: gpt-4o-2024-08-06}", "model: gpt-4o-2024-08-06, weigth: 2}"),
            "error: models.gpt-4o[0]: unknown key 'weigth' (did you mean 'weight'?)",
            id="deployment",
        ),
        pytest.param(BASE + "routes: {retries: 1}\n", "error: (top level): unknown key 'routes' (did you mean 'routing'?)", id="top-level"),
        pytest.param(
            BASE.replace("    type: mock\n", "    type: mock\n    base-url: http://x\n"),
            "error: providers.local: unknown key 'base-url' (did you mean 'base_url'?)",
            id="provider",
        ),
        pytest.param(
            BASE.replace("{id: primary, key:", "{id: primary, key_flie: k, key:"),
            "error: providers.openai-main.credentials[0]: unknown key 'key_flie' (did you mean 'key_file'?)",
            id="credential",
        ),
        pytest.param(
            BASE.replace("server: {auth: none}", "server: {auth: none, prot: 4001}"),
            "error: server: unknown key 'prot' (did you mean 'port'?)",
            id="server",
        ),
        pytest.param(
            BASE + "routing: {cooldown: {failurs: 3}}\n",
            "error: routing.cooldown: unknown key 'failurs' (did you mean 'failures'?)",
            id="nested",
        ),
        pytest.param(
            BASE + "prices: {mock-small: {input: 1, output: 2, inptu: 3}}\n",
            "error: prices.mock-small: unknown key 'inptu' (did you mean 'input'?)",
            id="price",
        ),
        pytest.param(BASE + "zzzzzzzz: 1\n", "error: (top level): unknown key 'zzzzzzzz'", id="no-close-match"),
    ],
)
def test_unknown_key_is_an_error_with_its_path_and_closest_key(tmp: Path, text: str, expected: str) -> None:
    assert errors_of(write(tmp, text)) == [expected]


def test_unknown_provider_names_the_closest_one(tmp: Path) -> None:
    text = BASE.replace("{provider: openai-main, model", "{provider: opneai, model")
    assert errors_of(write(tmp, text)) == ["error: models.gpt-4o[0].provider: unknown provider 'opneai' (did you mean 'openai-main'?)"]


def test_unknown_provider_type_names_the_closest_type(tmp: Path) -> None:
    text = BASE.replace("type: openai\n", "type: opneai\n")
    assert errors_of(write(tmp, text)) == [
        "error: providers.openai-main.type: unknown provider type 'opneai' (did you mean 'openai'?); supported: openai, anthropic, azure, gemini, vertex, bedrock, mock"
    ]


def test_unknown_choice_names_the_closest_valid_value(tmp: Path) -> None:
    text = BASE.replace("    type: mock\n", "    type: mock\n    credential_strategy: roundrobin\n")
    (problem,) = errors_of(write(tmp, text))
    assert problem.startswith("error: providers.local.credential_strategy: ")
    assert "'roundrobin'" in problem
    assert problem.endswith("(did you mean 'round_robin'?)")


def test_wrong_type_names_the_path_and_the_value(tmp: Path) -> None:
    text = BASE.replace("server: {auth: none}", 'server: {auth: none, port: "abc"}')
    (problem,) = errors_of(write(tmp, text))
    assert problem.startswith("error: server.port: ")
    assert "integer" in problem
    assert "'abc'" in problem


def test_out_of_range_value_is_an_error(tmp: Path) -> None:
    text = BASE.replace("server: {auth: none}", "server: {auth: none, port: 70000}")
    (problem,) = errors_of(write(tmp, text))
    assert problem.startswith("error: server.port: ")
    assert "65535" in problem


def test_missing_required_field_names_its_path(tmp: Path) -> None:
    text = BASE.replace("{provider: local, model: mock-small}", "{provider: local}")
    assert errors_of(write(tmp, text)) == ["error: models.demo[0].model: required field is missing"]


def test_every_schema_error_is_reported_not_just_the_first(tmp: Path) -> None:
    text = (
        BASE.replace("server: {auth: none}", 'server: {auth: none, port: "abc"}')
        .replace("model: gpt-4o-2024-08-06}", "model: gpt-4o-2024-08-06, weigth: 2}")
        .replace("type: openai\n", "type: opneai\n")
        + "routes: {}\n"
    )
    problems = errors_of(write(tmp, text))
    assert len(problems) == 4
    assert "error: models.gpt-4o[0]: unknown key 'weigth' (did you mean 'weight'?)" in problems
    assert "error: (top level): unknown key 'routes' (did you mean 'routing'?)" in problems
    assert any(p.startswith("error: server.port: ") for p in problems)
    assert any(p.startswith("error: providers.openai-main.type: unknown provider type 'opneai'") for p in problems)


def test_every_cross_reference_error_is_reported_not_just_the_first(tmp: Path) -> None:
    text = (
        BASE.replace("{provider: openai-main, model", "{provider: opneai, model").replace(
            "{provider: local, model", "{provider: lokal, model"
        )
        + "fallbacks: {gpt-4o: [gpt-4]}\n"
    )
    assert errors_of(write(tmp, text)) == [
        "error: models.gpt-4o[0].provider: unknown provider 'opneai' (did you mean 'openai-main'?)",
        "error: models.demo[0].provider: unknown provider 'lokal' (did you mean 'local'?)",
        "error: fallbacks.gpt-4o[0]: unknown model 'gpt-4' (did you mean 'gpt-4o'?)",
    ]


def test_a_non_string_secret_value_is_not_echoed(tmp: Path) -> None:
    text = BASE.replace('key: "${OPENAI_API_KEY}"', "key: 918273645546372819")
    (problem,) = errors_of(write(tmp, text))
    assert problem.startswith("error: providers.openai-main.credentials[0].key: ")
    assert "918273645546372819" not in problem


# --- master key -----------------------------------------------------------------------------


def test_missing_master_key_without_auth_none_is_an_error(tmp: Path) -> None:
    text = BASE.replace("server: {auth: none}", "server: {port: 4000}")
    (problem,) = errors_of(write(tmp, text))
    assert problem.startswith("error: server.master_key: no master key")
    assert "auth: none" in problem


def test_master_key_reference_satisfies_auth(tmp: Path) -> None:
    text = BASE.replace("server: {auth: none}", 'server: {master_key: "${FAREGATE_MASTER_KEY}"}')
    _, warnings = load_config(write(tmp, text))
    assert warnings == []


# --- YAML-level problems --------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp: Path) -> None:
    path = write(tmp, "server:\n  auth: none\n port: 1\n")
    (problem,) = errors_of(path)
    assert problem.startswith(f"error: {path}: YAML syntax error at line 3,")


def test_unclosed_flow_collection_is_a_syntax_error(tmp: Path) -> None:
    path = write(tmp, "server: {auth: none\nmodels: {}\n")
    (problem,) = errors_of(path)
    assert "YAML syntax error at line" in problem


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        pytest.param("server: {auth: none}\nmodels: {}\nserver: {port: 1}\n", 3, "server", id="top-level"),
        pytest.param("server:\n  auth: none\n  port: 1\n  port: 2\n", 4, "port", id="nested"),
        pytest.param(BASE + "  gpt-4o: []\n", 14, "gpt-4o", id="model"),
    ],
)
def test_duplicate_yaml_key_is_an_error_with_its_line(tmp: Path, text: str, line: int, key: str) -> None:
    (problem,) = errors_of(write(tmp, text))
    assert f"YAML syntax error at line {line}," in problem
    assert f"duplicate key '{key}'" in problem


def test_yaml_merge_keys_still_work(tmp: Path) -> None:
    text = BASE.replace(
        "    - {provider: local, model: mock-small}\n",
        "    - &d {provider: local, model: mock-small}\n    - <<: *d\n      weight: 2\n",
    )
    config, _ = load_config(write(tmp, text))
    assert [(d.model, d.weight) for d in config.models["demo"].deployments] == [("mock-small", 1), ("mock-small", 2)]


def test_unhashable_yaml_key_is_reported_not_a_crash(tmp: Path) -> None:
    (problem,) = errors_of(write(tmp, "? [a, b]\n: 1\n"))
    assert "YAML syntax error at line 1" in problem


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_an_error(tmp: Path, text: str) -> None:
    path = write(tmp, text)
    assert errors_of(path) == [f"error: config file {path} is empty"]


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(tmp: Path, text: str, kind: str) -> None:
    path = write(tmp, text)
    assert errors_of(path) == [f"error: config file {path} must hold a mapping at the top, not a {kind}"]


def test_missing_config_file_is_an_error(tmp: Path) -> None:
    path = tmp / "nope.yaml"
    assert errors_of(path) == [f"error: config file {path} does not exist"]


# --- fallbacks ------------------------------------------------------------------------------


def test_fallback_to_unknown_model_names_the_closest(tmp: Path) -> None:
    path = write(tmp, BASE + "fallbacks: {gpt-4o: [demo, dmeo]}\n")
    assert errors_of(path) == ["error: fallbacks.gpt-4o[1]: unknown model 'dmeo' (did you mean 'demo'?)"]


def test_fallback_from_unknown_model_names_the_closest(tmp: Path) -> None:
    path = write(tmp, BASE + "fallbacks: {gpt4o: [demo]}\n")
    assert errors_of(path) == ["error: fallbacks.gpt4o: unknown model 'gpt4o' (did you mean 'gpt-4o'?)"]


def test_fallback_to_itself_is_an_error(tmp: Path) -> None:
    path = write(tmp, BASE + "fallbacks: {demo: [demo]}\n")
    assert errors_of(path) == ["error: fallbacks.demo[0]: a model cannot fall back to itself"]


def test_fallback_cycle_is_a_warning(tmp: Path) -> None:
    path = write(tmp, BASE + "fallbacks: {gpt-4o: [demo], demo: [gpt-4o]}\n")
    (warning,) = warnings_of(path)
    assert warning.startswith("warning: fallbacks.gpt-4o: fallback cycle: gpt-4o -> demo -> gpt-4o")


def test_longer_fallback_cycle_is_reported_once(tmp: Path) -> None:
    text = BASE + "  third:\n    - {provider: local, model: mock-small}\nfallbacks: {gpt-4o: [demo], demo: [third], third: [gpt-4o]}\n"
    (warning,) = warnings_of(write(tmp, text))
    assert "fallback cycle: gpt-4o -> demo -> third -> gpt-4o" in warning


def test_acyclic_fallbacks_give_no_warning(tmp: Path) -> None:
    assert warnings_of(write(tmp, BASE + "fallbacks: {gpt-4o: [demo]}\n")) == []


# --- warnings that do not stop a load ------------------------------------------------------


def test_weight_zero_deployment_is_a_warning(tmp: Path) -> None:
    text = BASE.replace(
        "    - {provider: local, model: mock-small}\n",
        "    - {provider: local, model: mock-small}\n    - {provider: local, model: mock-big, weight: 0}\n",
    )
    assert warnings_of(write(tmp, text)) == ["warning: models.demo[1].weight: weight 0 disables this deployment (the default is 1)"]


def test_model_with_no_enabled_deployment_is_a_warning(tmp: Path) -> None:
    text = BASE.replace("{provider: local, model: mock-small}", "{provider: local, model: mock-small, weight: 0}")
    warnings = warnings_of(write(tmp, text))
    assert warnings == [
        "warning: models.demo[0].weight: weight 0 disables this deployment (the default is 1)",
        "warning: models.demo: no enabled deployment (every weight is 0): every request will get 503",
    ]


def test_mock_only_fields_on_other_provider_are_errors(tmp: Path) -> None:
    text = BASE.replace("type: openai\n", "type: openai\n    stream_chunks: 3\n")
    assert errors_of(write(tmp, text)) == ["error: providers.openai-main.stream_chunks: only valid for providers of type mock, not openai"]


def test_credential_needs_exactly_one_of_key_and_key_file(tmp: Path) -> None:
    text = BASE.replace('{id: primary, key: "${OPENAI_API_KEY}"}', '{id: primary, key: "${A}", key_file: k}\n      - {id: other}')
    assert errors_of(write(tmp, text)) == [
        "error: providers.openai-main.credentials[0]: give exactly one of key (an env reference) or key_file",
        "error: providers.openai-main.credentials[1]: give exactly one of key (an env reference) or key_file",
    ]


def test_duplicate_credential_id_is_an_error(tmp: Path) -> None:
    text = BASE.replace('{id: primary, key: "${OPENAI_API_KEY}"}', '{id: a, key: "${A}"}\n      - {id: a, key: "${B}"}')
    assert errors_of(write(tmp, text)) == ["error: providers.openai-main.credentials[1].id: duplicate credential id 'a'"]


# --- known gap: errors from different stages ------------------------------------------------


def test_cross_reference_and_secret_errors_are_reported_together(tmp: Path) -> None:
    text = BASE.replace("{provider: local, model", "{provider: lokal, model")
    with pytest.raises(ConfigError) as info:
        build(write(tmp, text), env={})
    paths = [p.path for p in info.value.problems]
    assert "models.demo[0].provider" in paths
    assert "providers.openai-main.credentials[0].key" in paths


def test_an_unpriced_deployment_is_flagged_and_a_price_clears_it(tmp: Path) -> None:
    text = BASE.replace("model: gpt-4o-2024-08-06", "model: gpt-4o-private-finetune")
    assert warnings_of(write(tmp, text)) == [
        "warning: models.gpt-4o[0].model: 'gpt-4o-private-finetune' is unpriced: its requests are counted but their cost is "
        "unknown (never $0), budgeted keys cannot use it and no fallback to or from it passes the price rule; add it to prices:"
    ]
    priced = text + "prices:\n  gpt-4o-private-finetune: {input: 3.75, output: 15.0}\n"
    assert warnings_of(write(tmp, priced)) == []
