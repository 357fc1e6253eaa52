"""Results rendering: machine info, the per-target Markdown table, faregate-1w goal checks."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench import scenreport
from bench.mock import STREAM_EVENTS
from bench.targets import LITELLM_VENV

Result = dict[str, Any]
ROUGH_PER_CONN = 10  # fewer completed replies per connection make CPU/reply rough
LAG_WARN_MS = 2.0  # open-loop sends later than this mean the client (or host) stalled


def _cmd_out(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    lines = (p.stdout + p.stderr).strip().splitlines()
    return lines[0] if lines else "unavailable"


def machine_info(nginx: str, wrk: str, compare: bool) -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        faregate = importlib.metadata.version("faregate")
    except importlib.metadata.PackageNotFoundError:
        faregate = "not installed"
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _cmd_out([nginx, "-v"]),
        "wrk": _cmd_out([wrk, "-v"]).split(" [")[0],
        "faregate": faregate,
    }
    if compare:
        py = LITELLM_VENV / "bin" / "python"
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        info["litellm"] = _cmd_out([str(py), "-c", code]) if py.exists() else "not installed"
    return info


def _get(r: Result | None, *path: Any) -> Any:
    cur: Any = r
    for key in path:
        if cur is None:
            return None
        if isinstance(key, int):
            cur = cur[key] if isinstance(cur, list) and len(cur) > key else None
        else:
            cur = cur.get(key) if isinstance(cur, dict) else None
    return cur


def _wrk_at(r: Result | None, conns: int, key: str) -> float | None:
    """``key`` of the plain wrk phase run with ``conns`` connections, if any."""
    for w in _get(r, "wrk_plain") or ():
        if w["connections"] == conns and w.get(key) is not None:
            return float(w[key])
    return None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _cpu_rough(r: Result) -> bool:
    """True if a CPU-per-reply phase completed under ROUGH_PER_CONN replies per connection.

    Work still in flight when wrk stops is charged but not counted, at most one
    reply per connection, so few completions per connection inflate the figure.
    """
    phases = [w for w in _get(r, "wrk_plain") or () if w["connections"] == 32]
    phases += [w for w in [_get(r, "wrk_stream")] if w]
    return any(w["requests"] < ROUGH_PER_CONN * w["connections"] for w in phases)


def _events_lost(r: Result) -> int | None:
    """Content events missing from open-loop streams; a failed stream loses all of them."""
    lost = _get(r, "open_stream", "events_lost")
    if lost is None:
        return None
    return int(lost) + STREAM_EVENTS * int(_get(r, "open_stream", "failed") or 0)


def metrics(r: Result, direct: Result | None) -> dict[str, Any]:
    """The headline numbers of one target (None where a phase did not run)."""
    lat = ("open_plain", "latency_ms")
    ttfb = ("open_stream", "ttfb_ms")
    failed = sum(w.get("errors", 0) for w in _get(r, "wrk_plain") or ())
    failed += (_get(r, "wrk_stream", "errors") or 0) + (_get(r, "open_plain", "failed") or 0)
    failed += _get(r, "open_stream", "failed") or 0
    return {
        "rps_1": _wrk_at(r, 1, "rps"),
        "rps_32": _wrk_at(r, 32, "rps"),
        "rps_128": _wrk_at(r, 128, "rps"),
        "cpu_ms_plain": _wrk_at(r, 32, "cpu_ms_per_req"),
        "cpu_ms_stream": _get(r, "wrk_stream", "cpu_ms_per_req"),
        "cpu_rough": _cpu_rough(r),
        "streams_per_s": _get(r, "wrk_stream", "rps"),
        "p50_ms": _get(r, *lat, "p50"),
        "p99_ms": _get(r, *lat, "p99"),
        "p50_added_ms": _diff(_get(r, *lat, "p50"), _get(direct, *lat, "p50")),
        "p99_added_ms": _diff(_get(r, *lat, "p99"), _get(direct, *lat, "p99")),
        "ttfb_p50_ms": _get(r, *ttfb, "p50"),
        "ttfb_added_ms": _diff(_get(r, *ttfb, "p50"), _get(direct, *ttfb, "p50")),
        "events_lost": _events_lost(r),
        "streams_incomplete": _get(r, "open_stream", "streams_incomplete"),
        "failed": failed,
        "rss_mb_total": _get(r, "rss_mb_total"),
        "rss_mb_per_worker": _get(r, "rss_mb_per_worker"),
        "startup_s": _get(r, "startup_s"),
    }


HEADER = (
    "| target | req/s @1 | req/s @32 | req/s @128 | CPU ms/req | CPU ms/stream | streams/s @32 "
    "| p50 ms @40/s | p99 ms @40/s | p50 added | p99 added | stream TTFB p50 | TTFB added "
    "| events lost | failed | RSS MB | start-up s |"
)


def _row(name: str, m: dict[str, Any], workers: int) -> str:
    rss = _fmt(m["rss_mb_total"], 1)
    if workers > 1 and m["rss_mb_per_worker"] is not None:
        rss += f" ({m['rss_mb_per_worker']:.1f}/w)"
    lost = "n/a" if m["events_lost"] is None else str(m["events_lost"])
    if m["streams_incomplete"]:
        lost += f" ({m['streams_incomplete']} streams)"
    cells = [
        name, _fmt(m["rps_1"], 0), _fmt(m["rps_32"], 0), _fmt(m["rps_128"], 0),
        _fmt(m["cpu_ms_plain"], 3), _fmt(m["cpu_ms_stream"], 3), _fmt(m["streams_per_s"], 0),
        _fmt(m["p50_ms"]), _fmt(m["p99_ms"]), _fmt(m["p50_added_ms"], sign=True),
        _fmt(m["p99_added_ms"], sign=True), _fmt(m["ttfb_p50_ms"]),
        _fmt(m["ttfb_added_ms"], sign=True), lost, str(m["failed"]), rss,
        _fmt(m["startup_s"]),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


# (label, limit text, metric key or callable, limit, True if measured must be <= limit)
Goal = tuple[str, str, str | Callable[[dict[str, Any], dict[str, Any] | None], Any], float, bool]
GOALS: list[Goal] = [
    ("CPU per plain request (ms, @32 conns)", "<= 0.5", "cpu_ms_plain", 0.5, True),
    ("Throughput @32 conns (req/s)", ">= 1500", "rps_32", 1500, False),
    ("p50 added @40 req/s (ms)", "<= 1", "p50_added_ms", 1.0, True),
    ("p99 added @40 req/s (ms)", "<= 3", "p99_added_ms", 3.0, True),
    ("CPU per 50-event stream (ms)", "<= 3", "cpu_ms_stream", 3.0, True),
    ("Stream TTFB p50 added (ms)", "<= 1", "ttfb_added_ms", 1.0, True),
    ("Events lost (open-loop streams)", "== 0", "events_lost", 0.0, True),
    ("RSS per worker (MB)", "<= 100", "rss_mb_per_worker", 100.0, True),
    ("Start-up (s)", "<= 2", "startup_s", 2.0, True),
    (
        "2 workers / 1 worker req/s @32 conns",
        ">= 1.7x",
        lambda one, two: None if two is None else _ratio(two["rps_32"], one["rps_32"]),
        1.7,
        False,
    ),
]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def goals_table(one: dict[str, Any], two: dict[str, Any] | None) -> tuple[str, list[Result]]:
    rows = [
        "| goal | limit | faregate-1w | ratio to limit | result |",
        "|---|---|---|---|---|",
    ]
    out: list[Result] = []
    for label, text, key, limit, at_most in GOALS:
        value = key(one, two) if callable(key) else one[key]
        if value is None:
            verdict, ratio = "n/a", None
        else:
            ok = value <= limit if at_most else value >= limit
            verdict = "PASS" if ok else "FAIL"
            ratio = _ratio(value, limit)
        shown = _fmt(value, 0 if value is not None and abs(value) >= 100 else 3)
        rows.append(f"| {label} | {text} | {shown} | {_fmt(ratio)} | {verdict} |")
        out.append({"goal": label, "limit": text, "value": value, "result": verdict})
    return "\n".join(rows), out


# The protocol matrix (issue 10): (target, its client's diagonal, its provider's diagonal).
MATRIX = (
    ("faregate-anthropic", "faregate-1w", "faregate-1w"),
    ("faregate-openai-to-anthropic", "faregate-1w", "faregate-anthropic"),
    ("faregate-anthropic-to-openai", "faregate-anthropic", "faregate-1w"),
    ("faregate-openai-to-gemini", "faregate-1w", "faregate-1w"),  # no Gemini diagonal: the client's twice
    ("faregate-responses", "faregate-1w", "faregate-1w"),  # issue 12: the Responses diagonal (responses: true)
    ("faregate-responses-to-chat", "faregate-responses", "faregate-1w"),
)
# A diagonal's own limit against faregate-1w (None: shown, not judged). The Responses diagonal has
# none: issue 12 sets only the translated ratios, and its stream is by design a little dearer than a
# Chat one (8 framing events around the deltas instead of 3, each event's JSON read for the end and
# the usage: bench.callcount counts 1.04x the calls per plain request, ~1.13x per 50-event stream).
DIAGONALS: dict[str, float | None] = {"faregate-anthropic": 1.1, "faregate-responses": None}


def matrix_table(ms: dict[str, dict[str, Any]]) -> tuple[str, list[Result]]:
    """CPU per request and per stream of each matrix target against the diagonals: the Anthropic
    diagonal within 1.1x the OpenAI Chat one (the Responses one shown against it, not judged); a
    translated request at most 2x, a translated 50-event stream at most 3x, against both the
    client's and the provider's diagonal (the larger ratio decides)."""
    rows = [
        "| target | kind | CPU ms | vs client's diagonal | vs provider's diagonal | limit | result |",
        "|---|---|---|---|---|---|---|",
    ]
    out: list[Result] = []
    for name, client_diag, provider_diag in MATRIX:
        if name not in ms:
            continue
        kinds: tuple[tuple[str, str, float | None], ...] = (("plain", "cpu_ms_plain", 2.0), ("50-event stream", "cpu_ms_stream", 3.0))
        for kind, key, limit in kinds:
            if name in DIAGONALS:
                limit = DIAGONALS[name]
            value = ms[name][key]
            ratios = [_ratio(value, ms[d][key]) if d in ms else None for d in (client_diag, provider_diag)]
            known = [r for r in ratios if r is not None]
            if limit is None:
                verdict = "n/a" if not known else "shown"
            else:
                verdict = "n/a" if not known else ("PASS" if max(known) <= limit else "FAIL")
            shown_limit = "none" if limit is None else f"<= {limit:g}x"
            cells = [name, kind, _fmt(value, 3), _fmt(ratios[0]), _fmt(ratios[1]), shown_limit, verdict]
            rows.append("| " + " | ".join(cells) + " |")
            out.append({"target": name, "kind": kind, "cpu_ms": value, "ratios": ratios, "limit": limit, "result": verdict})
    return "\n".join(rows), out


def _lag_notes(results: list[Result]) -> list[str]:
    """Flag open-loop phases where the client itself stalled (its p99s are then suspect)."""
    late = []
    for r in results:
        for kind in ("plain", "stream"):
            lag = _get(r, f"open_{kind}", "send_lag_ms", "max")
            if lag is not None and lag > LAG_WARN_MS:
                late.append(f"{r['name']} {kind} {lag:.2f} ms")
    if not late:
        return []
    return [
        "",
        f"Note: the open-loop client sent some requests more than {LAG_WARN_MS:g} ms late "
        f"(host or client stall; max send lag: {'; '.join(late)}). "
        "Tail latencies of those phases, and 'added' figures derived from them, are noisy.",
    ]


def render(info: dict[str, Any], settings: dict[str, Any], results: list[Result], scenarios: Result | None = None) -> tuple[str, Result]:
    """Markdown report and the JSON document for one run (``scenarios``: bench.scenrun's document)."""
    direct = next((r for r in results if r["name"] == "direct" and not r["error"]), None)
    ms = {r["name"]: metrics(r, direct) for r in results}
    lines = ["# faregate benchmark", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    if info.get("nproc", 0) < 4:
        lines.append("- note: fewer than 4 CPUs; load generator, mock and target share cores")
    lines += [
        "",
        "## Settings",
        "",
        "- " + ", ".join(f"{k}={v}" for k, v in settings.items()),
    ]
    if results:  # none when only the issue-13 scenarios ran (--scenarios)
        lines += ["", "## Results", "", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
        lines += [_row(r["name"], ms[r["name"]], r["workers"]) for r in results]
    rough = [name for name, m in ms.items() if m["cpu_rough"]]
    if rough:
        lines += [
            "",
            f"Note: CPU per reply is rough for {', '.join(rough)}: fewer than {ROUGH_PER_CONN} replies per "
            "connection completed in a wrk phase, and work still in flight at its end is charged but not counted.",
        ]
    lines += _lag_notes(results)
    errors = [r for r in results if r["error"]]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- **{r['name']}**: `{r['error'].splitlines()[0][:300]}`" for r in errors]
    goals: list[Result] = []
    if "faregate-1w" in ms:
        table, goals = goals_table(ms["faregate-1w"], ms.get("faregate-2w"))
        lines += ["", "## Issue targets (faregate-1w)", "", table]
    matrix: list[Result] = []
    if any(name in ms for name, _, _ in MATRIX):
        table, matrix = matrix_table(ms)
        lines += ["", "## Protocol matrix (CPU against the diagonals)", "", table]
    scenario_goals: list[Result] = []
    if scenarios:
        scen_lines, scenario_goals = scenreport.render(scenarios)
        lines += scen_lines
    doc = {
        "machine": info,
        "settings": settings,
        "metrics": ms,
        "goals": goals,
        "matrix": matrix,
        "targets": results,
        "scenarios": scenarios,
        "scenario_goals": scenario_goals,
    }
    return "\n".join(lines) + "\n", doc
