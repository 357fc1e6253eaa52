"""Pure logic over the C load generator's results: JSON parsing, percentiles from its histograms,
the streams-held and sustained-rate verdicts, and the stepping rule. No I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

GAP_LIMIT_MS = 40.0  # streams held: no gap between two frames of a stream over this
MAX_ERROR_RATE = 0.001  # errors <= 0.1 %
MIN_DELIVERED = 0.999  # >= 99.9 % of the frames expected
RATE_P99_MS = 1000.0  # sustained rate: p99 < 1 s
MAX_FAILURES = 2  # stepping stops after this many failed steps


@dataclass(frozen=True)
class Hist:
    """A log-linear histogram: (bucket lower bound in ns, count) pairs in ascending order."""

    buckets: tuple[tuple[int, int], ...] = ()
    max_ns: int = 0

    @property
    def count(self) -> int:
        return sum(c for _, c in self.buckets)

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile (q in 0..1): the lower bound of the bucket holding the
        ceil(q * n)-th smallest sample, in ms; None when empty."""
        n = self.count
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n - 1e-9))
        seen = 0
        for low, c in self.buckets:
            seen += c
            if seen >= rank:
                return low / 1e6
        return self.max_ns / 1e6


@dataclass(frozen=True)
class LoadRun:
    """One run of ``load`` (bench/rig/load.c), as its JSON line says."""

    mode: str
    conns: int
    duration_s: float
    requests: int  # completed with status 200
    started: int
    rps: float
    errors: int
    error_kinds: dict[str, int]
    cpu_pct: float  # the load generator's own CPU, % of one core
    frames_per_stream: int
    frames_received: int
    frames_expected: int
    order_errors: int
    streams_short: int
    gaps_over: int
    latency: Hist
    ttfb: Hist
    gaps: Hist
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 0.0  # nothing done: the verdicts say so on their own

    @property
    def delivered(self) -> float | None:
        return self.frames_received / self.frames_expected if self.frames_expected else None

    def summary(self) -> dict[str, Any]:
        """The figures the report keeps (ms), without the histograms."""
        out: dict[str, Any] = {
            "conns": self.conns, "requests": self.requests, "started": self.started, "rps": self.rps,
            "errors": self.errors, "error_kinds": self.error_kinds, "error_rate": round(self.error_rate, 6),
            "load_cpu_pct": self.cpu_pct,
        }  # fmt: skip
        for name, h in (("latency", self.latency), ("ttfb", self.ttfb), ("gaps", self.gaps)):
            if h.count:
                out[name] = {f"p{tag}_ms": _ms(h.percentile_ms(q)) for tag, q in (("50", 0.5), ("99", 0.99), ("999", 0.999))}
                out[name] |= {"max_ms": _ms(h.max_ns / 1e6), "count": h.count}
        if self.frames_expected:
            out |= {
                "frames_received": self.frames_received, "frames_expected": self.frames_expected,
                "delivered": self.delivered, "order_errors": self.order_errors,
                "streams_short": self.streams_short, "gaps_over": self.gaps_over,
            }  # fmt: skip
        return out | self.extra


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _hist(d: dict[str, Any]) -> Hist:
    pairs = tuple((int(low), int(c)) for low, c in d.get("hist", ()))
    return Hist(pairs, int(float(d.get("max_us", 0)) * 1000))


def parse_run(text: str) -> LoadRun:
    """The last JSON line ``load`` printed; ValueError if there is none or it lacks a field."""
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise ValueError(f"no JSON from the load generator: {text[-300:]!r}")
    d = orjson.loads(lines[-1])
    try:
        return LoadRun(
            mode=str(d["mode"]), conns=int(d["conns"]), duration_s=float(d["duration_s"]),
            requests=int(d["requests"]), started=int(d["started"]), rps=float(d["rps"]),
            errors=int(d["errors"]), error_kinds={str(k): int(v) for k, v in d["error_kinds"].items()},
            cpu_pct=float(d["cpu_pct"]), frames_per_stream=int(d["frames_per_stream"]),
            frames_received=int(d["frames_received"]), frames_expected=int(d["frames_expected"]),
            order_errors=int(d["order_errors"]), streams_short=int(d["streams_short"]),
            gaps_over=int(d["gaps_over"]), latency=_hist(d["latency"]), ttfb=_hist(d["ttfb"]), gaps=_hist(d["gaps"]),
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise ValueError(f"load generator JSON lacks {exc}") from exc


def held(run: LoadRun) -> tuple[bool, list[str]]:
    """Streams held: no inter-frame gap over 40 ms, errors <= 0.1 %, >= 99.9 % of frames delivered."""
    why = []
    if run.started == 0:
        why.append("no stream started")
    if run.gaps_over:
        why.append(f"{run.gaps_over} gaps > {GAP_LIMIT_MS:g} ms (max {run.gaps.max_ns / 1e6:.0f} ms)")
    if run.error_rate > MAX_ERROR_RATE:
        why.append(f"errors {100 * run.error_rate:.2f} %")
    delivered = run.delivered
    if delivered is None or delivered < MIN_DELIVERED:
        why.append(f"frames delivered {100 * (delivered or 0):.2f} %")
    return not why, why


def rate_ok(run: LoadRun) -> tuple[bool, list[str]]:
    """A sustained-rate step passes with p99 < 1 s and errors <= 0.1 %."""
    why = []
    p99 = run.latency.percentile_ms(0.99)
    if p99 is None:
        why.append("no request completed")
    elif p99 >= RATE_P99_MS:
        why.append(f"p99 {p99:.0f} ms")
    if run.error_rate > MAX_ERROR_RATE:
        why.append(f"errors {100 * run.error_rate:.2f} %")
    return not why, why


@dataclass
class Step:
    level: int
    ok: bool
    why: list[str]
    figures: dict[str, Any]


def step_through(
    levels: Sequence[int], measure: Callable[[int], tuple[bool, list[str], dict[str, Any]]], max_failures: int = MAX_FAILURES
) -> list[Step]:
    """Measure each level in order; stop after ``max_failures`` failed steps (not necessarily in a row)."""
    steps: list[Step] = []
    failures = 0
    for level in levels:
        ok, why, figures = measure(level)
        steps.append(Step(level, ok, why, figures))
        failures += not ok
        if failures >= max_failures:
            break
    return steps


def best_level(steps: Sequence[Step]) -> int | None:
    """The highest level that passed (None if none did)."""
    return max((s.level for s in steps if s.ok), default=None)


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
