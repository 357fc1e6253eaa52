"""Every module stays small enough to read in one sitting (DESIGN.md: under 500 lines)."""

from __future__ import annotations

from pathlib import Path

LIMIT = 500
ROOT = Path(__file__).resolve().parents[1]


def test_no_module_exceeds_the_limit() -> None:
    sources = [
        p
        for d in ("src", "tests", "bench")
        for p in (ROOT / d).rglob("*.py")
        if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    ]
    assert sources, "no sources found"
    too_big = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > LIMIT}
    assert too_big == {}, f"modules over {LIMIT} lines: {too_big}"
