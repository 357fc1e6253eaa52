"""Bar charts as server-rendered inline SVG: geometry only (numbers); the template draws the rects
with presentation attributes, so the strict CSP (no inline style, no script) holds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT, PAD = 600.0, 120.0, 2.0


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the tooltip (<title>): when and how much


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    bars: tuple[Bar, ...]
    peak: str  # the largest value, as shown on the axis
    width: float = WIDTH
    height: float = HEIGHT


def bars(title: str, points: list[dict[str, Any]], value: str, fmt: str, stamp: str) -> Chart:
    """One bar per point (``point[value]``), scaled to the largest; ``fmt`` formats a value,
    ``stamp`` (a strftime pattern, UTC) the point's start."""
    values = [float(p[value]) for p in points]
    peak = max(values, default=0.0)
    step = WIDTH / max(len(values), 1)
    out = []
    for i, (p, v) in enumerate(zip(points, values, strict=True)):
        h = (HEIGHT - PAD) * v / peak if peak > 0 else 0.0
        when = time.strftime(stamp, time.gmtime(float(p["start"])))
        out.append(
            Bar(round(i * step + 1, 2), round(HEIGHT - h, 2), round(max(step - 2, 1), 2), round(h, 2), f"{when} UTC: {fmt.format(v)}")
        )
    return Chart(title, tuple(out), fmt.format(peak))
