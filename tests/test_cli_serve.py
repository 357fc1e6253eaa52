"""`faregate` as a new user meets it: `--version` and `-h`, `make run PORT=...`, a port already in
use, `serve --workers N` warning about per-worker limits, `db upgrade` with only the state section."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from faregate import __version__
from tests.support.procs import ROOT, free_port, run_cli, wait_http

CONFIG = """
server: {master_key: '${FAREGATE_MASTER_KEY}'}
providers:
  local: {type: mock}
models:
  m:
    - {provider: local, model: mock-small, rpm: 60}
  n:
    - {provider: local, model: mock-small}
"""
ENV = {"FAREGATE_MASTER_KEY": "sk-fg-test-master-0123456789"}


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port with a listening socket on it: what another program holding the port looks like."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_version_and_short_help() -> None:
    version = run_cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, __version__)
    assert run_cli("version").stdout.strip() == __version__
    for args in (("-h",), ("keys", "-h"), ("keys", "create", "-h"), ("teams", "update", "-h"), ("serve", "-h")):
        shown = run_cli(*args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "Usage: faregate" in shown.stdout and "--help" in shown.stdout, args


def test_a_port_in_use_is_one_clear_line(tmp_path: Path, taken: int) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    result = run_cli("serve", "-c", str(path), "--port", str(taken), env=ENV)
    assert result.returncode == 1
    expected = f"faregate: port {taken} on 127.0.0.1 is already in use; pick another with --port N (make run PORT=N)"
    assert result.stderr.strip().splitlines()[-1] == expected, result.stderr
    assert "serving http" not in result.stderr and "Traceback" not in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("{")]  # no JSON log line either
    assert not (tmp_path / ".faregate").exists()  # nothing was started, not even the database


def test_serve_workers_n_warns_that_limits_are_per_worker(tmp_path: Path, taken: int) -> None:
    """The warnings come before the port check, so a taken port makes `serve` stop right after them."""
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    per_worker = "warning: models.m[0]: without state.redis, rpm/tpm are counted per worker process: with {n} workers"
    keys_line = "warning: state.redis: not set: virtual keys' and teams' rpm/tpm/max_parallel are counted per worker process too"

    two = run_cli("serve", "-c", str(path), "--port", str(taken), "--workers", "2", env=ENV)
    assert per_worker.format(n=2) in two.stderr and keys_line in two.stderr, two.stderr
    assert "models.n[0]" not in two.stderr  # no rpm/tpm there
    one = run_cli("serve", "-c", str(path), "--port", str(taken), env=ENV)
    assert "counted per worker" not in one.stderr

    path.write_text(CONFIG.replace("server: {", "server: {workers: 4, "))
    assert per_worker.format(n=4) in run_cli("check", "-c", str(path), env=ENV).stdout  # check: the file's count
    three = run_cli("serve", "-c", str(path), "--port", str(taken), "--workers", "3", env=ENV)
    assert per_worker.format(n=3) in three.stderr and "with 4 workers" not in three.stderr, three.stderr

    path.write_text(CONFIG + "state: {redis: 'redis://127.0.0.1:1/0'}\n")
    shared = run_cli("serve", "-c", str(path), "--port", str(taken), "--workers", "2", env=ENV)
    assert "counted per worker" not in shared.stderr and "already in use" in shared.stderr


def test_db_upgrade_needs_only_the_state_section(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir()
    path.write_text(
        "server: {master_key: '${NOT_SET_MASTER}'}\n"
        "state: {database: 'sqlite:///db/state.db'}\n"
        "providers:\n  up: {type: openai, credentials: [{key: '${NOT_SET_UPSTREAM}'}]}\n"
        "models:\n  m: [{provider: up, model: gpt-4o-mini}]\n"
    )
    result = run_cli("db", "upgrade", "-c", str(path), cwd=tmp_path)  # neither secret is set
    assert result.returncode == 0, result.stderr
    assert (path.parent / "db" / "state.db").is_file()  # beside the config, as serve will look for it
    assert result.stdout.strip() == f"sqlite:///{path.parent / 'db' / 'state.db'}: up to date"
    path.write_text("state: {databse: 'sqlite:///x.db'}\n")
    typo = run_cli("db", "upgrade", "-c", str(path))
    assert typo.returncode == 1 and "state: unknown key 'databse' (did you mean 'database'?)" in typo.stderr


def test_make_run_serves_on_the_port_given(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "faregate").exists():
        pytest.skip("`make run` serves with the repository's .venv, which is not installed here")
    port = free_port()
    # -o: the venv the tests run in is installed; `make run` must not reinstall it mid-suite
    args = ["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "run", f"PORT={port}", "HOST=127.0.0.1"]
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 40, proc)
        body = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hello!"}]}
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", headers={"authorization": "Bearer sk-faregate-demo"}, json=body, timeout=20
        )
        assert reply.status_code == 200
        # the demo answers Anthropic clients too (Claude Code: ANTHROPIC_BASE_URL + ANTHROPIC_AUTH_TOKEN / ANTHROPIC_API_KEY)
        for auth in ({"auth_token": "sk-faregate-demo"}, {"api_key": "sk-faregate-demo"}):
            claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=20, **auth)  # type: ignore[arg-type]
            message = claude.messages.create(model="demo-chat", max_tokens=100, messages=[{"role": "user", "content": "Hello!"}])
            assert message.type == "message" and message.content and message.usage.output_tokens > 0
            with claude.messages.stream(model="demo-chat", max_tokens=100, messages=[{"role": "user", "content": "Hello!"}]) as events:
                assert "".join(events.text_stream)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    printed = log.read_text()
    assert f"faregate demo on http://127.0.0.1:{port}" in printed and f"curl -s http://127.0.0.1:{port}/v1/chat" in printed
    assert f"curl -s http://127.0.0.1:{port}/v1/messages" in printed
