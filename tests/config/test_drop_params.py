"""``drop_params`` is a per-deployment setting (README, config reference): false by default, a
boolean only, carried into the generation where the translated path reads it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from faregate.credentials.keyring import build
from faregate.errors import ConfigError

CONFIG = """\
server: {auth: none}
providers:
  local: {type: mock}
models:
  demo:
    - {provider: local, model: a}
    - {provider: local, model: b, drop_params: true}
"""


def test_drop_params_defaults_to_false_and_is_kept_per_deployment(tmp_path: Path) -> None:
    path = tmp_path / "faregate.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    generation, _ = build(path, env={})
    assert [(d.model, d.drop_params) for d in generation.models["demo"].deployments] == [("a", False), ("b", True)]


def test_drop_params_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "faregate.yaml"
    path.write_text(CONFIG.replace("drop_params: true", "drop_params: sometimes"))
    with pytest.raises(ConfigError) as info:
        build(path, env={})
    assert [p.path for p in info.value.problems] == ["models.demo[1].drop_params"]
