"""`faregate teams`, `faregate keys update/get/rotate` and `faregate spend` against a real gateway:
each command is the `faregate` console script in its own process, talking HTTP to `faregate serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import FAREGATE, MASTER_KEY, ROOT, GatewayProcess, free_port, run_cli

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_requests")
CONFIG = """
server:
  master_key: ${FAREGATE_MASTER_KEY}
providers:
  local: {type: mock, chunk_delay: 0}
models:
  chat-small:
    - {provider: local, model: mock-small}
  chat-large:
    - {provider: local, model: mock-large}
prices:
  mock-small: {input: 1.0, output: 2.0}
  mock-large: {input: 1.0, output: 2.0}
"""


@pytest.fixture
def gw(gateways: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateways(CONFIG)


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(gw: GatewayProcess) -> Cli:
    """`faregate ARGS` aimed at the test's gateway through $FAREGATE_URL, as an operator's shell would."""
    env = {"FAREGATE_MASTER_KEY": MASTER_KEY, "FAREGATE_URL": gw.url}
    return lambda *args: run_cli(*args, env=env)


def chat(gw: GatewayProcess, key: str, model: str = "chat-small") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body, timeout=20)


def admin(gw: GatewayProcess, path: str) -> Any:
    return httpx.get(gw.url + path, headers=AUTH, timeout=20).json()


def test_teams_create_list_get_update_delete(gw: GatewayProcess, cli: Cli) -> None:
    made = cli("teams", "create", "--name", "research", "--budget", "50", "--period", "monthly", "--rpm", "100")
    assert made.returncode == 0, made.stderr
    team_id = made.stdout.strip()
    assert re.fullmatch(r"team_[0-9a-f]{16}", team_id), made.stdout
    assert "budget $0.0000 of $50 monthly" in made.stderr and "rpm=100" in made.stderr
    key = cli("keys", "create", "--name", "in-team", "--team", team_id)
    assert key.returncode == 0, key.stderr
    assert chat(gw, key.stdout.strip()).status_code == 200

    listed = cli("teams", "list")
    assert listed.returncode == 0 and listed.stdout.startswith(team_id), listed.stdout
    assert "research" in listed.stdout and "1 key(s)" in listed.stdout and "1 of 1" in listed.stderr
    shown = json.loads(cli("teams", "get", team_id).stdout)
    assert (shown["name"], shown["budget_usd"], shown["rpm"], shown["keys"]) == ("research", 50, 100, 1)

    updated = cli("teams", "update", team_id, "--tpm", "5000", "--clear", "rpm", "--disable")
    assert updated.returncode == 0, updated.stderr
    assert "disabled" in updated.stdout and "tpm=5000" in updated.stdout and "rpm=" not in updated.stdout
    assert chat(gw, key.stdout.strip()).status_code == 401  # a disabled team's keys are refused
    assert cli("teams", "update", team_id, "--enable").returncode == 0
    assert chat(gw, key.stdout.strip()).status_code == 200
    nothing = cli("teams", "update", team_id)
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr

    deleted = cli("teams", "delete", team_id)
    assert deleted.returncode == 0 and f"{team_id}: deleted; 1 key(s) detached" in deleted.stdout
    missing = cli("teams", "get", team_id)
    assert missing.returncode == 1 and f"no team with id '{team_id}'" in missing.stderr


def test_the_readme_team_example_works_as_written(gw: GatewayProcess) -> None:
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("team=$(faregate teams create")]
    lines += [line for line in readme.splitlines() if line.startswith("faregate keys create") and "--team" in line]
    assert len(lines) == 2, lines
    script = "set -euo pipefail\n" + "\n".join(lines) + '\necho "team=$team"\n'
    env = {**os.environ, "PATH": f"{Path(FAREGATE).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(FAREGATE_MASTER_KEY=MASTER_KEY, FAREGATE_URL=gw.url)
    ran = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    secret, team_line = ran.stdout.split()
    team_id = team_line.removeprefix("team=")
    keys = admin(gw, "/admin/keys")["data"]
    assert [(k["name"], k["team_id"], k["rpm"], k["max_parallel"]) for k in keys] == [("batch", team_id, 60, 4)]
    assert admin(gw, f"/admin/teams/{team_id}")["name"] == "batch-jobs"
    assert chat(gw, secret).status_code == 200


def test_keys_update_and_get(gw: GatewayProcess, cli: Cli) -> None:
    made = cli("keys", "create", "--name", "first", "--budget", "5", "--rpm", "10")
    key_id = made.stderr.split()[1]
    secret = made.stdout.strip()
    assert chat(gw, secret, "chat-large").status_code == 200
    updated = cli(
        "keys", "update", key_id, "--name", "renamed", "--model", "chat-small", "--tpm", "1000", "--clear", "rpm", "--clear=budget"
    )
    assert updated.returncode == 0, updated.stderr
    assert "renamed" in updated.stdout and '["chat-small"]' in updated.stdout
    shown = json.loads(cli("keys", "get", key_id).stdout)
    assert (shown["name"], shown["models"], shown["tpm"]) == ("renamed", ["chat-small"], 1000)
    assert shown["rpm"] is None and shown["budget_usd"] is None
    assert "key" not in shown and secret not in json.dumps(shown)
    assert chat(gw, secret, "chat-large").status_code == 403  # no longer allowed
    assert cli("keys", "update", key_id, "--disable").returncode == 0
    assert chat(gw, secret).status_code == 401
    assert cli("keys", "update", key_id, "--enable", "--clear", "models").returncode == 0
    assert chat(gw, secret, "chat-large").status_code == 200
    bad = cli("keys", "update", key_id, "--clear", "owner")
    assert bad.returncode == 1 and "--clear owner: not one of" in bad.stderr


def test_expires_at_in_the_past_is_refused(gw: GatewayProcess, cli: Cli) -> None:
    for past in ("2020-01-01", str(int(time.time()) - 60)):
        refused = cli("keys", "create", "--name", "stale", "--expires-at", past)
        assert refused.returncode == 1, refused.stdout
        assert f"error: --expires-at {past} (" in refused.stderr and "is in the past" in refused.stderr
        assert refused.stdout == ""
    assert admin(gw, "/admin/keys")["total"] == 0  # nothing was created
    garbled = cli("keys", "create", "--name", "x", "--expires-at", "next tuesday")
    assert garbled.returncode == 1 and "give Unix seconds or an ISO 8601 time" in garbled.stderr
    made = cli("keys", "create", "--name", "later", "--expires-at", "2099-06-30T12:00:00Z")
    assert made.returncode == 0, made.stderr
    key_id = made.stderr.split()[1]
    assert admin(gw, f"/admin/keys/{key_id}")["expires_at"] == 4086504000
    assert cli("keys", "update", key_id, "--expires-at", "2021-05-05").returncode == 1
    assert admin(gw, f"/admin/keys/{key_id}")["expires_at"] == 4086504000


def test_a_model_pattern_that_matches_nothing_is_a_warning(gw: GatewayProcess, cli: Cli) -> None:
    typo = cli("keys", "create", "--name", "typo", "--model", "chat-smal", "--model", "gpt-4o*", "--model", "chat-*")
    assert typo.returncode == 0, typo.stderr  # a warning, not a refusal: the model may be configured later
    warnings = [line for line in typo.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: 'models': 'chat-smal' matches no configured model (did you mean 'chat-small'?); "
        "the key cannot use it until one is configured",
        "warning: 'models': 'gpt-4o*' matches no configured model; the key cannot use it until one is configured",
    ]
    fine = cli("keys", "create", "--name", "fine", "--model", "chat-*")
    assert fine.returncode == 0 and "warning" not in fine.stderr
    key_id = fine.stderr.split()[1]
    patched = cli("keys", "update", key_id, "--model", "nothing-here")
    assert patched.returncode == 0 and "warning: 'models': 'nothing-here' matches no configured model" in patched.stderr


def test_a_second_rotation_says_it_ends_the_first_ones_grace(gw: GatewayProcess, cli: Cli) -> None:
    made = cli("keys", "create", "--name", "rotating")
    original, key_id = made.stdout.strip(), made.stderr.split()[1]
    first = cli("keys", "rotate", key_id, "--grace", "3600")
    assert first.returncode == 0 and "warning" not in first.stderr, first.stderr
    assert chat(gw, original).status_code == 200  # inside its grace hour
    second = cli("keys", "rotate", key_id)
    assert second.returncode == 0, second.stderr
    assert "warning: this rotation ends the grace of the secret replaced by the previous rotation: it stops working now" in second.stderr
    assert "with no grace, the secret replaced now stops at once too" in second.stderr
    assert chat(gw, original).status_code == 401  # what the warning said
    assert chat(gw, first.stdout.strip()).status_code == 401
    assert chat(gw, second.stdout.strip()).status_code == 200
    third = cli("keys", "rotate", key_id)  # no grace was running: nothing to say
    assert third.returncode == 0 and "warning" not in third.stderr


def test_spend_sums_like_the_admin_api(gw: GatewayProcess, cli: Cli) -> None:
    made = cli("keys", "create", "--name", "spender")
    secret, key_id = made.stdout.strip(), made.stderr.split()[1]
    ids = [chat(gw, secret, model).headers["x-faregate-request-id"] for model in ("chat-small", "chat-small", "chat-large")]
    deadline = time.monotonic() + 20
    while not all(admin(gw, f"/admin/spend/logs?request_id={rid}")["data"] for rid in ids):  # written in batches
        assert time.monotonic() < deadline, "spend rows were not written"
        time.sleep(0.1)
    table = cli("spend", "--group-by", "key,model", "--key-id", key_id)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["key_id", "model", *SUMS]
    api = admin(gw, f"/admin/spend?group_by=key,model&key_id={key_id}")
    assert [row.split() for row in rows] == [
        [r["key_id"], r["model"], *(f"{r[s]:.6f}" if s == "cost_usd" else str(r[s]) for s in SUMS)] for r in api["data"]
    ]
    assert all(r["errors"] == 0 and r["unpriced_requests"] == 0 and r["cost_usd"] > 0 for r in api["data"])
    assert [(r["model"], r["requests"]) for r in api["data"]] == [("chat-large", 1), ("chat-small", 2)]
    as_json = json.loads(cli("spend", "--group-by", "model", "--json").stdout)
    assert as_json["group_by"] == ["model"] and sum(r["requests"] for r in as_json["data"]) >= 3
    refused = cli("spend", "--group-by", "colour")
    assert refused.returncode == 1 and "cannot group by 'colour'" in refused.stderr


def test_the_cli_reaches_a_local_gateway_past_an_outbound_proxy(gw: GatewayProcess) -> None:
    """HTTP(S)_PROXY is for the upstreams; the CLI talking to a gateway on this host never goes through it
    (urllib would otherwise send `faregate teams list` to the proxy, here a port nobody listens on)."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"FAREGATE_MASTER_KEY": MASTER_KEY, "FAREGATE_URL": gw.url, "HTTP_PROXY": dead, "http_proxy": dead, "NO_PROXY": ""}
    result = run_cli("teams", "list", env=env)
    assert result.returncode == 0, result.stderr
