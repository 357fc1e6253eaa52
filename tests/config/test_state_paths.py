"""State lives next to the config file, not in the working directory: relative `state.database`,
`state.outbox_dir` and the control bus's SQLite file resolve against the config file's folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from faregate.config.schema import StateConfig
from faregate.config.state import load_state, resolve_state
from faregate.credentials.keyring import build
from faregate.errors import ConfigError
from faregate.gateway import make_bus
from faregate.spendlog import outbox_directory
from tests.support.procs import MASTER_KEY, GatewayProcess

MOCK = """\
server: {master_key: "${FAREGATE_MASTER_KEY}"}
providers:
  local: {type: mock}
models:
  m: [{provider: local, model: mock-small}]
"""
ENV = {"FAREGATE_MASTER_KEY": MASTER_KEY}


@pytest.fixture
def layout(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A config folder, and another folder the process runs in."""
    (tmp / "conf").mkdir()
    (tmp / "elsewhere").mkdir()
    monkeypatch.chdir(tmp / "elsewhere")
    return tmp / "conf", tmp / "elsewhere"


def generation_state(conf: Path, state: str = "") -> StateConfig:
    path = conf / "faregate.yaml"
    path.write_text(MOCK + state)
    return build(path, env=ENV)[0].state


def test_the_default_database_outbox_and_bus_are_beside_the_config(layout: tuple[Path, Path]) -> None:
    conf, _ = layout
    path = conf / "faregate.yaml"
    path.write_text(MOCK)
    generation, _ = build(path, env=ENV)
    assert generation.state.database == f"sqlite:///{conf}/.faregate/state.db"
    assert outbox_directory(generation.state) == conf / ".faregate" / "outbox"
    bus = make_bus(generation)
    assert bus.path == conf / ".faregate" / "control.db"  # type: ignore[attr-defined]


def test_relative_paths_resolve_against_the_config_folder(layout: tuple[Path, Path]) -> None:
    conf, _ = layout
    state = generation_state(conf, "state: {database: 'sqlite:///data/../data/s.db?mode=rwc', outbox_dir: spool/out}\n")
    assert state.database == f"sqlite:///{conf}/data/s.db?mode=rwc"
    assert state.outbox_dir == str(conf / "spool" / "out")
    assert outbox_directory(state) == conf / "spool" / "out"
    assert generation_state(conf, "state: {database: 'sqlite:///../shared/s.db'}\n").database == f"sqlite:///{conf.parent}/shared/s.db"


def test_absolute_paths_and_other_databases_are_kept(layout: tuple[Path, Path], tmp: Path) -> None:
    conf, _ = layout
    state = generation_state(conf, f"state: {{database: 'sqlite:///{tmp}/abs/s.db', outbox_dir: {tmp}/box}}\n")
    assert state.database == f"sqlite:///{tmp}/abs/s.db"
    assert state.outbox_dir == str(tmp / "box")
    url = "postgresql://faregate:pw@127.0.0.1:5432/faregate"
    path = conf / "faregate.yaml"
    path.write_text(MOCK + f"state: {{database: '{url}'}}\n")
    generation, _ = build(path, env=ENV)
    assert generation.state.database == url
    assert outbox_directory(generation.state) == conf / ".faregate" / "outbox"  # not ./.faregate of the working directory
    assert make_bus(generation).path == conf / ".faregate" / "control.db"  # type: ignore[attr-defined]
    assert resolve_state(StateConfig(database="sqlite:///:memory:"), conf).database == "sqlite:///:memory:"


def test_load_state_needs_only_the_state_section(layout: tuple[Path, Path]) -> None:
    conf, _ = layout
    path = conf / "faregate.yaml"
    # every provider secret unset, and a provider error: neither matters to the state section
    path.write_text(MOCK.replace("local: {type: mock}", 'up: {type: openai, credentials: [{key: "${UNSET_KEY}"}]}\n  local: {type: mock}'))
    assert load_state(path).database == f"sqlite:///{conf}/.faregate/state.db"
    path.write_text(MOCK + "state: {database: sqlite:///s.db, outbx: x}\n")
    with pytest.raises(ConfigError) as info:
        load_state(path)
    assert [str(p) for p in info.value.problems] == ["error: state: unknown key 'outbx' (did you mean 'outbox_dir'?)"]


def test_serve_from_another_folder_opens_the_database_beside_the_config(tmp: Path, gateways: Callable[..., GatewayProcess]) -> None:
    first, second = tmp / "first", tmp / "second"
    first.mkdir()
    second.mkdir()
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    gw = gateways(MOCK, cwd=first)  # the config is written to tmp/, served from tmp/first
    created = httpx.post(gw.url + "/admin/keys", json={"name": "kept"}, headers=auth, timeout=30)
    assert created.status_code == 201, created.text
    gw.stop()
    # a config in the same folder, served from another one: the key made before is still there
    with GatewayProcess(tmp, MOCK, cwd=second) as again:
        listed = httpx.get(again.url + "/admin/keys", headers=auth, timeout=30)
        assert listed.status_code == 200, listed.text
        assert [k["name"] for k in listed.json()["data"]] == ["kept"]
    with sqlite3.connect(tmp / ".faregate" / "state.db") as db:
        assert db.execute("select name from virtual_keys").fetchall() == [("kept",)]
    assert (tmp / ".faregate" / "control.db").is_file()  # the control bus beside it
    assert not (first / ".faregate").exists()
    assert not (second / ".faregate").exists()
