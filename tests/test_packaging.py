"""The package as a user installs it: the built wheel in a fresh virtualenv (runtime dependencies
only), `faregate init`, `check` and `serve` from there, and the systemd unit in examples/ verified
against that install."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import openai
import pytest
import yaml

from faregate.config.load import validate
from tests.support.procs import ROOT, free_port, wait_http

pytestmark = pytest.mark.timeout(900)  # a wheel build and a virtualenv's install from the package index: minutes on a loaded machine
DEV_ONLY = ("pytest", "ruff", "mypy", "playwright", "boto3", "openai", "anthropic", "import-linter")
UNIT = ROOT / "examples" / "systemd" / "faregate.service"


class Install:
    def __init__(self, wheel: Path, venv: Path) -> None:
        self.wheel = wheel
        self.venv = venv
        self.faregate = venv / "bin" / "faregate"


def _run(args: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    tmp = tmp_path_factory.mktemp("package")
    built = _run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", ROOT])
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("faregate-*.whl")
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", "-c", ROOT / "constraints.txt", wheel])
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    return Install(wheel, venv)


def test_the_wheel_holds_every_file_of_the_package(install: Install) -> None:
    tracked = _run(["git", "ls-files", "src/faregate"], cwd=ROOT).stdout.split()
    expected = {path.removeprefix("src/") for path in tracked if not path.endswith(".md")}  # notes for developers stay in the repo
    with zipfile.ZipFile(install.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("faregate/")}
    assert expected <= shipped, sorted(expected - shipped)  # templates, static files, prices, migrations: nothing left behind
    assert not [name for name in shipped if name.startswith(("tests/", "bench/"))]


def test_a_fresh_install_has_the_runtime_dependencies_only(install: Install) -> None:
    listed = _run([install.venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert "faregate" in names
    assert not [tool for tool in DEV_ONLY if tool in names], names
    check = _run([install.venv / "bin" / "python", "-m", "pip", "check"])
    assert check.returncode == 0, check.stdout
    version = _run([install.faregate, "--version"])
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version.stdout.strip())


def test_init_check_and_serve_from_the_wheel(install: Install, tmp_path: Path) -> None:
    site = tmp_path / "site"
    made = _run([install.faregate, "init", site])
    assert made.returncode == 0, made.stderr
    config, env_file = site / "faregate.yaml", site / ".env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert _run([install.faregate, "init", site]).returncode == 1  # never overwrites: a second init would replace the master key
    (master_key,) = [line.split("=", 1)[1] for line in env_file.read_text().splitlines() if line.startswith("FAREGATE_MASTER_KEY=")]
    assert len(master_key) >= 40
    assert master_key not in made.stdout + made.stderr
    env = {**os.environ, "FAREGATE_MASTER_KEY": master_key}
    checked = _run([install.faregate, "check", "-c", config], env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(install.faregate), "serve", "-c", str(config), "--port", str(port)], env=env, cwd=site, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=master_key, max_retries=0)
        reply = client.chat.completions.with_raw_response.create(model="starter-chat", messages=[{"role": "user", "content": "Hi"}])
        assert reply.http_response.status_code == 200
        assert reply.parse().choices[0].message.content
        assert reply.headers["x-faregate-provider"] == "local"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert (site / ".faregate" / "state.db").exists()  # the state beside the config, as the starter says


def test_the_starter_configs_commented_providers_are_valid_when_uncommented(tmp_path: Path) -> None:
    from faregate.cli_init import STARTER_CONFIG

    text = STARTER_CONFIG.format(config="faregate.yaml", env=".env", database="sqlite:///.faregate/state.db")
    uncommented = "\n".join(line[1:] if line.startswith("#  ") else line for line in text.splitlines())
    config = validate(yaml.safe_load(uncommented))
    assert set(config.providers) == {"local", "openai", "anthropic"}
    assert config.models["claude-sonnet-4-5"].cache is not None
    assert config.models["gpt-4o-mini"].deployments[0].provider == "openai"


def test_the_systemd_unit_verifies_against_the_installed_command(install: Install, tmp_path: Path) -> None:
    unit = UNIT.read_text()
    commands = [line for line in unit.splitlines() if line.startswith(("ExecStart=", "ExecReload="))]
    assert [line.split()[0] for line in commands] == [
        "ExecStart=/opt/faregate/venv/bin/faregate",
        "ExecReload=/opt/faregate/venv/bin/faregate",
    ]
    local = tmp_path / "faregate.service"
    local.write_text(unit.replace("/opt/faregate/venv/bin/faregate", str(install.faregate)))
    verified = _run(["systemd-analyze", "verify", local])
    assert verified.returncode == 0, verified.stderr
    complaints = [line for line in (verified.stdout + verified.stderr).splitlines() if "faregate.service" in line]
    assert complaints == []  # systemd-analyze exits 0 on a misspelt setting: only its silence says the unit is right
    broken = tmp_path / "broken.service"
    broken.write_text(unit.replace("/opt/faregate/venv/bin/faregate", str(tmp_path / "not-installed" / "faregate")))
    refused = _run(["systemd-analyze", "verify", broken])
    assert refused.returncode != 0, "the check can fail: a unit whose command is not installed is refused"
