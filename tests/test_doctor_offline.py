"""`faregate doctor -c FILE` offline: check's problems, the pitfall map (each finding where the config
really has the problem, "ok" where it does not), the output (text grouped worst first, --json, colour
only on a terminal), the exit codes for cron and CI, and never a secret."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from faregate.doctor.findings import GROUPS, RANK
from tests.support.procs import FAREGATE, run_cli

MASTER = "Zq3vT8pW1mKx7Lr4Nc9Hy2Bd6Fg5Js0A"  # strong, so the security checklist has nothing to say
KEYS = {
    "EAST_KEY": "sk-CANARY-east-1b2c3d4e5f607182",
    "WEST_KEY": "sk-CANARY-west-9a8b7c6d5e4f3021",
    "OLD_KEY": "sk-CANARY-old-5566778899aabbcc",
}
ENV = {"FAREGATE_MASTER_KEY": MASTER, **KEYS}
PITFALLS = (
    "unknown_upstream_model",
    "weight_zero",
    "single_deployment",
    "single_credential",
    "fallback_always_refused",
    "retiring_credential",
    "limits_per_worker",
    "unpriced_model",
    "no_max_tokens_ceiling",
    "retries_multiply_cost",
    "fallback_ends_dearest",
)

# Two providers with a key each, two models with a deployment on each, a cheaper fallback: no pitfall.
CLEAN = """\
server:
  master_key: ${FAREGATE_MASTER_KEY}
providers:
  east:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{id: a, key: "${EAST_KEY}"}]
  west:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{id: b, key: "${WEST_KEY}"}]
models:
  gpt-4o:
    - {provider: east, model: gpt-4o}
    - {provider: west, model: gpt-4o}
  gpt-4o-mini:
    - {provider: east, model: gpt-4o-mini}
    - {provider: west, model: gpt-4o-mini}
fallbacks:
  gpt-4o: [gpt-4o-mini]
"""

# Every pitfall at once (and a check warning of its own: a duplicated key).
EVERY_PROBLEM = """\
server:
  master_key: ${FAREGATE_MASTER_KEY}
  workers: 2
providers:
  east:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials:
      - {id: new, key: "${EAST_KEY}"}
      - {id: old, key: "${WEST_KEY}", retiring: true}
  solo:
    type: openai
    base_url: http://127.0.0.1:9/v1
    credentials: [{id: only, key: "${WEST_KEY}"}]
models:
  gpt-4o:
    - {provider: east, model: gpt4o-2024-08-06}
    - {provider: east, model: gpt-4o, rpm: 100}
    - {provider: solo, model: gpt-4o, weight: 0}
  gpt-4o-mini: [{provider: solo, model: gpt-4o-mini}]
  retired: [{provider: solo, model: gpt-4o-mini, weight: 0}]
  sonnet: [{provider: solo, model: claude-sonnet-4-6}]
  haiku: [{provider: solo, model: claude-haiku-4-5}]
  opus:
    - {provider: east, model: claude-opus-4-5}
    - {provider: solo, model: claude-opus-4-1}
    - {provider: east, model: claude-opus-4-6}
fallbacks:
  gpt-4o-mini: [gpt-4o]
  sonnet: [haiku, opus]
routing:
  retries: 3
  max_fallback_cost_ratio: 5
"""


def write(tmp: Path, text: str, name: str = "faregate.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    path.chmod(0o600)  # a config readable by others is a security finding; not what these tests are about
    return path


def doctor(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("doctor", "-c", str(path), *args, env={**ENV, **(env or {})})


def report(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = doctor(path, "--json", *args)
    return result.returncode, json.loads(result.stdout)


def problems(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(code, severity, subject) of each pitfall that is not ok."""
    return {(f["code"], f["severity"], f["subject"]) for f in data["findings"] if f["code"] in PITFALLS and f["severity"] != "ok"}


def test_a_config_without_pitfalls_is_all_ok_and_exits_0(tmp: Path) -> None:
    code, data = report(write(tmp, CLEAN))
    assert [f for f in data["findings"] if f["severity"] != "ok"] == []
    assert code == 0 == data["exit_code"]
    assert {f["code"] for f in data["findings"]} >= {*PITFALLS, "config_valid"}  # each check says it looked
    assert data["summary"] == {"error": 0, "warning": 0, "ok": len(data["findings"])}


W = "warning"
MISSPELT = ("- {provider: east, model: gpt-4o}\n", "- {provider: east, model: gpt4o-2024-08-06}\n")
DEARER_FALLBACK = ("  gpt-4o: [gpt-4o-mini]\n", "  gpt-4o-mini: [gpt-4o]\n")


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(  # unknown (with the closest known name), so unpriced, so no fallback from it passes the price rule
            [MISSPELT],
            {("unknown_upstream_model", W, "models.gpt-4o[0]"), ("unpriced_model", W, "models.gpt-4o[0]")}
            | {("fallback_always_refused", W, "fallbacks.gpt-4o[0]")},
            id="misspelt_upstream_model",
        ),
        pytest.param(  # gpt-4o now rests on west's key alone (its fallback keeps it off single_deployment)
            [("- {provider: east, model: gpt-4o}\n", "- {provider: east, model: gpt-4o, weight: 0}\n")],
            {("weight_zero", W, "models.gpt-4o[0]"), ("single_credential", W, "models.gpt-4o")},
            id="weight_zero",
        ),
        pytest.param(  # every deployment of a model without a fallback disabled: every request gets a 503
            [
                ("- {provider: east, model: gpt-4o-mini}", "- {provider: east, model: gpt-4o-mini, weight: 0}"),
                ("- {provider: west, model: gpt-4o-mini}", "- {provider: west, model: gpt-4o-mini, weight: 0}"),
            ],
            {("weight_zero", W, "models.gpt-4o-mini[0]"), ("weight_zero", W, "models.gpt-4o-mini[1]")}
            | {("weight_zero", "error", "models.gpt-4o-mini")},
            id="model_disabled",
        ),
        pytest.param(
            [("    - {provider: west, model: gpt-4o-mini}\n", "")],
            {("single_deployment", W, "models.gpt-4o-mini"), ("single_credential", W, "models.gpt-4o-mini")},
            id="single_deployment",
        ),
        pytest.param(  # the issue's example: the default ratio 1.0 refuses a dearer fallback on every request
            [DEARER_FALLBACK], {("fallback_always_refused", W, "fallbacks.gpt-4o-mini[0]")}, id="fallback_always_refused"
        ),
        pytest.param(
            [('[{id: b, key: "${WEST_KEY}"}]', '[{id: b, key: "${WEST_KEY}"}, {id: c, key: "${OLD_KEY}", retiring: true}]')],
            {("retiring_credential", W, "providers.west.credentials[1]")},
            id="retiring_credential",
        ),
        pytest.param(
            [
                ("- {provider: west, model: gpt-4o}", "- {provider: west, model: gpt-4o, tpm: 100000}"),
                ("server:\n", "server:\n  workers: 3\n"),
            ],
            {("limits_per_worker", W, "models.gpt-4o[1]"), ("limits_per_worker", W, "state.redis")},
            id="limits_per_worker",
        ),
        pytest.param(  # a name the price table does not know and nothing close to it: unpriced, so its fallback is refused
            [("- {provider: west, model: gpt-4o-mini}", "- {provider: west, model: zz-local-llama}")],
            {("unpriced_model", W, "models.gpt-4o-mini[1]"), ("unknown_upstream_model", W, "models.gpt-4o-mini[1]")}
            | {("fallback_always_refused", W, "fallbacks.gpt-4o[0]")},
            id="unpriced_model",
        ),
        pytest.param(  # $25 per million output tokens, above the $20 threshold
            [("- {provider: west, model: gpt-4o}", "- {provider: west, model: claude-opus-4-5}")],
            {("no_max_tokens_ceiling", W, "models.gpt-4o[1]")},
            id="no_max_tokens_ceiling",
        ),
        pytest.param(  # 3 deployments and a fallback with 2: 3 + 2 attempts with routing.retries 2
            [
                (
                    "- {provider: west, model: gpt-4o}\n",
                    "- {provider: west, model: gpt-4o}\n    - {provider: west, model: gpt-4o-2024-08-06}\n",
                )
            ],
            {("retries_multiply_cost", W, "models.gpt-4o")},
            id="retries_multiply_cost",
        ),
        pytest.param(  # with no price rule, the chain's last resort is its dearest model
            [DEARER_FALLBACK, ("", "routing: {max_fallback_cost_ratio: null}\n")],
            {("fallback_ends_dearest", W, "fallbacks.gpt-4o-mini")},
            id="fallback_ends_dearest",
        ),
    ],
)
def test_each_pitfall_is_found_where_the_config_has_it(
    tmp: Path, edits: list[tuple[str, str]], expected: set[tuple[str, str, str]]
) -> None:
    text = CLEAN
    for old, new in edits:
        assert old == "" or old in text
        text = text + new if old == "" else text.replace(old, new, 1)
    _, data = report(write(tmp, text))
    assert problems(data) == expected
    found = {f["code"] for f in data["findings"] if f["severity"] != "ok"}
    assert found == {code for code, _, _ in expected}  # nothing else: no check warning repeats a pitfall
    for f in data["findings"]:
        if f["severity"] != "ok":
            assert f["message"] and f["fix"], f


def test_unknown_upstream_model_names_the_closest_known_name(tmp: Path) -> None:
    path = write(tmp, CLEAN.replace(*MISSPELT))
    _, data = report(path)
    (finding,) = [f for f in data["findings"] if f["code"] == "unknown_upstream_model"]
    assert "the closest known name is 'gpt-4o-2024-08-06'" in finding["message"]
    assert finding["fix"].startswith("if it is a typo, write model: gpt-4o-2024-08-06")


def test_workers_option_decides_whether_limits_are_per_worker(tmp: Path) -> None:
    path = write(tmp, CLEAN.replace("- {provider: west, model: gpt-4o}\n", "- {provider: west, model: gpt-4o, rpm: 60}\n"))
    assert problems(report(path)[1]) == set()  # one worker: exact
    assert problems(report(path, "--workers", "4")[1]) == {
        ("limits_per_worker", "warning", "models.gpt-4o[1]"),
        ("limits_per_worker", "warning", "state.redis"),
    }
    redis = write(tmp, CLEAN.replace("server:\n", "state: {redis: 'redis://127.0.0.1:9'}\nserver:\n"), "redis.yaml")
    assert problems(report(redis, "--workers", "4")[1]) == set()


def test_every_problem_at_once_text_report(tmp: Path) -> None:
    path = write(tmp, EVERY_PROBLEM)
    result = doctor(path)
    assert result.returncode == 1, result.stdout + result.stderr  # the disabled model without fallback is an error
    out = result.stdout
    assert "the same key as providers.east.credentials[1]" in out
    lines = out.splitlines()
    headings = [line.split(":")[0] for line in lines if line and not line.startswith((" ", "faregate doctor", "errors found"))]
    assert headings == [g for g in GROUPS if g in headings]  # decision-tree order
    assert headings[:4] == ["deployments", "config", "routing", "cost"]
    ranks = _ranks_by_group(lines)
    assert all(r == sorted(r) for r in ranks.values()), ranks  # worst first in every group
    assert lines[-1].startswith("errors found: 1 error(s), ")
    assert lines[-1].endswith("(exit 1)")
    _, data = report(path)
    assert {code for code, _, _ in problems(data)} == set(PITFALLS)


def _ranks_by_group(lines: list[str]) -> dict[str, list[int]]:
    ranks: dict[str, list[int]] = {}
    group = ""
    for line in lines:
        if line and not line.startswith(" "):
            group = line.split(":")[0]
        elif line.startswith("  "):
            label = line.split()[0]
            ranks.setdefault(group, []).append({"ERROR": 0, "WARN": 1, "ok": 2}[label])
    ranks.pop("faregate doctor", None)
    return ranks


def test_text_lines_carry_severity_subject_message_and_fix(tmp: Path) -> None:
    result = doctor(write(tmp, CLEAN.replace(*DEARER_FALLBACK)))
    assert result.returncode == 2  # warnings only
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("  WARN")]
    assert line.split()[:2] == ["WARN", "fallbacks.gpt-4o-mini[0]"]
    assert "fallback gpt-4o is always refused by the price rule" in line
    assert line.endswith("— fix: raise routing.max_fallback_cost_ratio to 16.67 or more (or null) to allow it")
    assert result.stdout.splitlines()[-1].startswith("warnings only: 0 error(s), 1 warning(s), ")
    quiet = doctor(write(tmp, CLEAN.replace(*DEARER_FALLBACK)), "--quiet")
    shown = [line for line in quiet.stdout.splitlines() if line.startswith("  ")]
    assert shown == [line] and quiet.returncode == 2


def test_a_config_with_errors_prints_them_and_exits_1(tmp: Path) -> None:
    path = write(tmp, CLEAN.replace("- {provider: west, model: gpt-4o}", "- {provider: wets, model: gpt-4o}"))
    code, data = report(path)
    assert code == 1 == data["exit_code"]
    assert data["findings"] == [
        {
            "group": "config",
            "code": "config_error",
            "severity": "error",
            "subject": "models.gpt-4o[1].provider",
            "message": "unknown provider 'wets' (did you mean 'west'?)",
            "fix": "correct it in the config file, then run faregate check -c FILE",
        }
    ]
    text = doctor(path)
    assert text.returncode == 1
    assert "ERROR  models.gpt-4o[1].provider  unknown provider 'wets' (did you mean 'west'?)" in text.stdout
    live = doctor(path, "--live", "--url", "http://127.0.0.1:9")
    assert live.returncode == 1 and "--live skipped: the gateway is compared with the config, and the config has errors" in live.stderr
    missing = doctor(tmp / "nope.yaml")
    assert missing.returncode == 1 and "does not exist" in missing.stdout


def test_json_has_the_contract_shape_and_keeps_stdout_clean(tmp: Path) -> None:
    result = doctor(write(tmp, EVERY_PROBLEM), "--json")
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert set(data) == {"findings", "summary", "exit_code"}
    assert data["exit_code"] == result.returncode == 1
    for f in data["findings"]:
        assert set(f) == {"group", "code", "severity", "subject", "message", "fix"}
        assert f["group"] in GROUPS and f["severity"] in RANK
    counts = {s: sum(f["severity"] == s for f in data["findings"]) for s in ("error", "warning", "ok")}
    assert data["summary"] == counts
    order = [(list(GROUPS).index(f["group"]), RANK[f["severity"]]) for f in data["findings"]]
    assert order == sorted(order)


def test_no_secret_in_any_output(tmp: Path) -> None:
    path = write(tmp, EVERY_PROBLEM)
    outputs = [doctor(path), doctor(path, "--json"), doctor(path, "--key", MASTER, "--url", "http://127.0.0.1:9")]
    for result in outputs:
        for secret in (MASTER, *KEYS.values()):
            assert secret not in result.stdout + result.stderr
    assert "one key, solo/only:" in outputs[0].stdout  # credentials are named by label and fingerprint


def _on_a_terminal(path: Path, env: dict[str, str]) -> str:
    """doctor's stdout when stdout is a terminal (a real pseudo-terminal)."""
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            [FAREGATE, "doctor", "-c", str(path)], stdout=terminal, stderr=subprocess.DEVNULL, env={**os.environ, **ENV, **env}
        )
    finally:
        os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    proc.wait(timeout=30)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp: Path) -> None:
    path = write(tmp, EVERY_PROBLEM)
    assert "\x1b[" not in doctor(path).stdout  # a pipe
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(path, {**env, "NO_COLOR": ""})
    assert "\x1b[1;31mERROR" in coloured and "\x1b[33mWARN" in coloured
    assert "\x1b[" not in _on_a_terminal(path, {"NO_COLOR": "1"})


def test_demo_config_has_no_pitfall() -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"
    result = run_cli("doctor", "-c", str(demo), "--json", env={"FAREGATE_MASTER_KEY": "sk-faregate-demo"})
    data = json.loads(result.stdout)
    assert problems(data) == set()
    assert {f["code"] for f in data["findings"]} >= set(PITFALLS)


def test_check_warns_for_the_issue_fallback(tmp: Path) -> None:
    """The issue's config, as written there: `check` must not say `ok, 0 warning(s)`."""
    path = write(
        tmp,
        'server: {master_key: "${FAREGATE_MASTER_KEY}"}\n'
        "providers:\n  openai: {type: openai, credentials: [{key: '${EAST_KEY}'}]}\n"
        "models:\n  gpt-4o-mini: [{provider: openai, model: gpt-4o-mini}]\n  gpt-4o: [{provider: openai, model: gpt-4o}]\n"
        "fallbacks: {gpt-4o-mini: [gpt-4o]}\n",
    )
    result = run_cli("check", "-c", str(path), env=ENV)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith(
        "warning: fallbacks.gpt-4o-mini[0]: fallback gpt-4o is always refused by the price rule: its price $2.5/$10 per M in/out "
        "exceeds 1x gpt-4o-mini's $0.15/$0.6 per M in/out; raise routing.max_fallback_cost_ratio to 16.67"
    )
    assert ": ok, 1 warning(s);" in result.stdout
