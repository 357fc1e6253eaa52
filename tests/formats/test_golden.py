"""The golden table of request translations: plain JSON fixtures pairing an OpenAI Chat request with
its Anthropic Messages equivalent, round-tripped through both codecs (see golden/README).

For each direction a fixture lists, ``X->Y`` decodes the fixture's X side with X's codec and encodes
the neutral request with Y's codec (for Y's model): the result must equal the fixture's Y side, and
what Y's codec reports as not carried must equal the fixture's ``dropped`` list for that direction.
``X->X`` is the codec's own round trip (meaning and order kept). Where a fixture translates both
ways, the two sides must also decode to the same neutral request (the neutral leg of the table),
but for the fields it names in ``neutral_differs``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from faregate.formats import anthropic, neutral

GOLDEN = Path(__file__).parent / "golden"
ALL_DIRECTIONS = ("openai->anthropic", "anthropic->openai", "anthropic->anthropic", "openai->openai")
CASES = sorted(GOLDEN.glob("anthropic_*.json"))


def codec(name: str) -> Any:
    if name == "anthropic":
        return anthropic
    from faregate.formats import openai_chat  # the other helper's codec; imported when a case needs it

    return openai_chat


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    assert case.get("note"), f"{path.name}: every fixture says what it shows"
    for direction in case.get("directions", ALL_DIRECTIONS):
        assert direction in ALL_DIRECTIONS, f"{path.name}: unknown direction {direction}"
    return case


def translate(case: dict[str, Any], direction: str) -> tuple[dict[str, Any], list[str]]:
    source, target = direction.split("->")
    request = codec(source).decode_request(case[source])
    payload, dropped = codec(target).encode_request(request, case[target]["model"])
    return payload, list(dropped)


@pytest.mark.parametrize(
    ("path", "direction"),
    [(path, direction) for path in CASES for direction in load(path).get("directions", ALL_DIRECTIONS)],
    ids=lambda value: value.stem if isinstance(value, Path) else value,
)
def test_golden_translation(path: Path, direction: str) -> None:
    case = load(path)
    payload, dropped = translate(case, direction)
    target = direction.split("->")[1]
    assert payload == case[target]
    assert dropped == case.get("dropped", {}).get(direction, [])


@pytest.mark.parametrize(
    "path",
    [p for p in CASES if {"openai->anthropic", "anthropic->openai"} <= set(load(p).get("directions", ALL_DIRECTIONS))],
    ids=lambda p: p.stem,
)
def test_both_sides_meet_in_one_neutral_request(path: Path) -> None:
    case = load(path)
    from_openai = codec("openai").decode_request(case["openai"])
    from_anthropic = codec("anthropic").decode_request(case["anthropic"])
    differs = case.get("neutral_differs", [])  # fields each format reads in its own shape (see the note)
    for field in differs:
        assert getattr(from_openai, field) != getattr(from_anthropic, field), f"{field} no longer differs: drop it from neutral_differs"
    fields = {f.name: None for f in dataclasses.fields(neutral.Request) if f.name in differs} | {"model": ""}
    assert dataclasses.replace(from_openai, **fields) == dataclasses.replace(from_anthropic, **fields)


def test_the_claude_code_fixture_survives_anthropic_to_anthropic_in_order() -> None:
    """The diagonal never decodes (the pipeline relays bytes); should the codec ever see such a
    request, its meaning and the order of every list in it survive decode then encode."""
    case = load(GOLDEN / "anthropic_claude_code.json")
    request = anthropic.decode_request(case["anthropic"])
    payload, dropped = anthropic.encode_request(request, case["anthropic"]["model"])
    assert dropped == ()
    assert json.dumps(payload, sort_keys=True) == json.dumps(case["anthropic"], sort_keys=True)
    assert [m.role for m in request.messages] == ["user", "assistant", "user", "assistant", "user"]
    thinking = [p for m in request.messages for p in m.parts if isinstance(p, neutral.Thinking)]
    assert [t.signature for t in thinking] == [
        b["signature"] for m in case["anthropic"]["messages"] for b in m["content"] if b["type"] == "thinking"
    ]
    assert [s.cache for s in request.system] == ["5m", "5m"]
