"""`faregate check` warns about a fallback the price rule refuses on every request, naming both
prices and the setting to change; and the value it suggests is one the router really accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from faregate.credentials.keyring import build
from faregate.routing import cost_refusal
from tests.support.procs import run_cli

KNOB = "routing.max_fallback_cost_ratio"


def write(tmp: Path, fallbacks: str, routing: str = "", prices: str = "") -> Path:
    path = tmp / "faregate.yaml"
    path.write_text(
        f"""\
server: {{auth: none}}
providers:
  local: {{type: mock}}
models:
  cheap: [{{provider: local, model: cheap-model}}]
  dear: [{{provider: local, model: dear-model}}]
  free: [{{provider: local, model: free-model}}]
  unpriced: [{{provider: local, model: unpriced-model}}]
  gpt-4o-mini: [{{provider: local, model: gpt-4o-mini}}]
  gpt-4o: [{{provider: local, model: gpt-4o}}]
fallbacks:
{fallbacks}
{routing}
prices:
  cheap-model: {{input: 1, output: 2}}
  dear-model: {{input: 3, output: 4}}
  free-model: {{input: 0, output: 0}}
{prices}
"""
    )
    return path


def check_lines(path: Path) -> list[str]:
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_the_issue_example_is_a_warning_naming_both_prices_and_the_setting(tmp: Path) -> None:
    path = write(tmp, "  gpt-4o-mini: [gpt-4o]\n  gpt-4o: [cheap]")  # the shipped prices; a cheaper fallback is fine
    assert check_lines(path) == [
        "warning: fallbacks.gpt-4o-mini[0]: fallback gpt-4o is always refused by the price rule: its price $2.5/$10 per M in/out "
        f"exceeds 1x gpt-4o-mini's $0.15/$0.6 per M in/out; raise {KNOB} to 16.67 or more (or null) to allow it",
        f"{path}: ok, 1 warning(s); generation {build(path)[0].id}: 6 model(s), 1 provider(s)",
    ]


@pytest.mark.parametrize(
    ("fallback", "message"),
    [
        pytest.param(
            "cheap: [dear]",
            "fallback dear is always refused by the price rule: its price $3/$4 per M in/out exceeds 1x cheap's "
            f"$1/$2 per M in/out; raise {KNOB} to 3 or more (or null) to allow it",
            id="dearer",
        ),
        pytest.param(
            "cheap: [unpriced]",
            "fallback unpriced is always refused by the price rule: unpriced is unpriced and an unpriced model counts as "
            f"pricier; add its upstream model to prices: or set {KNOB} to null",
            id="unpriced-target",
        ),
        pytest.param(
            "unpriced: [cheap]",
            "fallback cheap is always refused by the price rule: unpriced is unpriced, so no fallback can be shown to "
            f"cost less; add its upstream model to prices: or set {KNOB} to null",
            id="unpriced-requested",
        ),
        pytest.param(
            "free: [cheap]",
            "fallback cheap is always refused by the price rule: its price $1/$2 per M in/out exceeds 1x free's "
            f"$0/$0 per M in/out; set {KNOB} to null to allow it",
            id="free-requested",
        ),
    ],
)
def test_each_kind_of_dead_fallback_is_named(tmp: Path, fallback: str, message: str) -> None:
    name = fallback.split(":")[0]
    lines = check_lines(write(tmp, f"  {fallback}"))
    assert lines[:-1] == [f"warning: fallbacks.{name}[0]: {message}"]


def test_live_fallbacks_and_a_null_ratio_give_no_warning(tmp: Path) -> None:
    live = "  dear: [cheap, free]\n  cheap: [free]"
    assert check_lines(write(tmp, live))[0].endswith(
        "ok, 0 warning(s); generation " + build(write(tmp, live))[0].id + ": 6 model(s), 1 provider(s)"
    )
    dead = "  cheap: [dear, unpriced]\n  free: [cheap]"
    _, warnings = build(write(tmp, dead, routing="routing: {max_fallback_cost_ratio: null}"))
    assert warnings == []


@pytest.mark.parametrize("pair", [("cheap", "dear"), ("gpt-4o-mini", "gpt-4o")])
def test_the_suggested_ratio_is_one_the_router_accepts(tmp: Path, pair: tuple[str, str]) -> None:
    requested, target = pair
    (warning,) = build(write(tmp, f"  {requested}: [{target}]"))[1]
    suggested = warning.message.split(f"raise {KNOB} to ")[1].split(" ")[0]
    at = f"routing: {{max_fallback_cost_ratio: {suggested}}}"
    generation, warnings = build(write(tmp, f"  {requested}: [{target}]", routing=at))
    assert warnings == []
    assert cost_refusal(generation, generation.models[requested], generation.models[target]) is None
    below = f"routing: {{max_fallback_cost_ratio: {float(suggested) - 0.01}}}"
    (lower,) = build(write(tmp, f"  {requested}: [{target}]", routing=below))[1]
    assert lower.path == f"fallbacks.{requested}[0]"
