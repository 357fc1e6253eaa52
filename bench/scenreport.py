"""Markdown for the issue-13 scenarios: the summary table shaped like the issue's, the translated
directions at c=1, each step of the rate and streams scenarios, and issue 13's targets (PASS/FAIL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.rigstats import diff
from bench.scenarios import RIG_BOUND_PCT

Doc = dict[str, Any]
COLUMNS = ("faregate-1w", "litellm", "nginx-proxy", "direct")


def _g(d: Any, *path: str) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _f(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def added(doc: Doc, name: str, kind: str, metric: str, q: str) -> float | None:
    """``name``'s c=1 percentile ``q`` (p50/p99/p999) of ``metric`` minus direct's, in ms."""
    key = f"{q}_ms"
    return diff(_g(doc, "c1", name, kind, metric, key), _g(doc, "c1", "direct", kind, metric, key))


def _c1_cell(doc: Doc, name: str, kind: str, metric: str, qs: tuple[str, ...]) -> str:
    if name == "direct":
        vals = [_g(doc, "c1", name, kind, metric, f"{q}_ms") for q in qs]
        return " / ".join(_f(v, 3) for v in vals) + " (absolute)" if any(v is not None for v in vals) else "n/a"
    vals = [added(doc, name, kind, metric, q) for q in qs]
    return " / ".join(_f(v, 3, sign=True) for v in vals) if any(v is not None for v in vals) else "n/a"


def _rate_cell(doc: Doc, name: str) -> str:
    r = _g(doc, "rate", name)
    if not r or r.get("best_rps") is None:
        return "n/a" if not r else "none passed"
    return f"{r['best_rps']:,.0f} (at {r['best_conns']} conns)" + (" rig-bound" if r.get("rig_bound") else "")


def _streams_cell(doc: Doc, name: str) -> str:
    r = _g(doc, "streams", name)
    if not r:
        return "n/a"
    held = "none" if r.get("held") is None else f"{r['held']:,}"
    extra = [f"{r['lost']} lost"] if r.get("lost") else []
    extra += [f"{r['reordered']} reordered"] if r.get("reordered") else []
    return held + (f" ({', '.join(extra)})" if extra else "") + (" rig-bound" if r.get("rig_bound") else "")


def _mem_cell(doc: Doc, name: str) -> str:
    m = _g(doc, "memory", name)
    if not m:
        return "n/a"
    per = m.get("per_request_bytes")
    per_txt = f" (~{per / 1e6:.2f} MB per request in flight)" if per is not None else ""
    return f"{m['idle_mb']:.0f} / {m['load_mb']:.0f}{per_txt} / {m['after_mb']:.0f}"


def _mem_label(doc: Doc) -> str:
    m: Doc = next(iter((doc.get("memory") or {}).values()), {})
    conns, size = m.get("conns", 1500), m.get("body_bytes", 150 * 1024)
    return f"RSS MB idle / with {conns:,} connections sending {size // 1024} KB prompts / {m.get('after_s', 60):g} s after"


def summary_table(doc: Doc) -> list[str]:
    cols = [c for c in COLUMNS if any(c in (doc.get(s) or {}) for s in ("c1", "rate", "streams", "memory"))]
    rows: list[tuple[str, Callable[[str], str]]] = [
        ("added latency at c=1, p50 / p99 / p99.9 (ms)", lambda n: _c1_cell(doc, n, "plain", "latency", ("p50", "p99", "p999"))),
        ("sustained req/s, mock answering after 20 ms (p99 < 1 s, errors <= 0.1 %)", lambda n: _rate_cell(doc, n)),
        ("streams held with no inter-frame gap > 40 ms (64 frames, 20 ms apart)", lambda n: _streams_cell(doc, n)),
        ("added time to first frame at c=1, p50 / p99 (ms)", lambda n: _c1_cell(doc, n, "stream", "ttfb", ("p50", "p99"))),
        (_mem_label(doc), lambda n: _mem_cell(doc, n)),
    ]
    out = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    out += ["| " + label + " | " + " | ".join(cell(c) for c in cols) + " |" for label, cell in rows]
    return out


def directions_table(doc: Doc) -> list[str]:
    names = [n for n in doc.get("c1") or {} if n != "direct"]
    out = [
        "| target | plain added p50 / p99 / p99.9 ms | TTFB added p50 / p99 ms | target CPU % (plain) |",
        "|---|---|---|---|",
    ]
    for n in names:
        cpu = _g(doc, "c1", n, "plain", "target_cpu_pct")
        out.append(f"| {n} | {_c1_cell(doc, n, 'plain', 'latency', ('p50', 'p99', 'p999'))} | "
                   f"{_c1_cell(doc, n, 'stream', 'ttfb', ('p50', 'p99'))} | {_f(cpu, 0)} |")  # fmt: skip
    return out


def steps_tables(doc: Doc) -> list[str]:
    out: list[str] = []
    if doc.get("rate"):
        out += ["| target | conns | req/s | p99 ms | errors | target CPU % | rig CPU % | step |", "|---|---|---|---|---|---|---|---|"]
    for n, r in (doc.get("rate") or {}).items():
        for st in r["steps"]:
            verdict = "pass" if st["ok"] else "FAIL: " + "; ".join(st["why"])
            out.append(f"| {n} | {st['level']} | {st['rps']:,.0f} | {_f(_g(st, 'latency', 'p99_ms'), 1)} | {st['errors']} | "
                       f"{_f(st.get('target_cpu_pct'), 0)} | {_f(st.get('rig_cpu_pct'), 0)} | {verdict} |")  # fmt: skip
    if not doc.get("streams"):
        return out
    out += [""] if out else []
    out += [
        "| target | streams | max gap ms | gaps > 40 ms | frames delivered % | reordered | errors | target CPU % | rig CPU % | held |",
    ]
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for n, r in (doc.get("streams") or {}).items():
        for st in r["steps"]:
            verdict = "held" if st["ok"] else "FAIL: " + "; ".join(st["why"])
            delivered = st.get("delivered")
            out.append(f"| {n} | {st['level']} | {_f(_g(st, 'gaps', 'max_ms'), 1)} | {st.get('gaps_over', 'n/a')} | "
                       f"{_f(None if delivered is None else 100 * delivered, 2)} | {st.get('order_errors', 'n/a')} | "
                       f"{st['errors']} | {_f(st.get('target_cpu_pct'), 0)} | {_f(st.get('rig_cpu_pct'), 0)} | {verdict} |")  # fmt: skip
    return out


def _lost_reordered(doc: Doc, name: str, limit: int | None) -> int | None:
    """Frames lost or out of order in ``name``'s stream steps up to ``limit`` streams (the direct limit)."""
    r = _g(doc, "streams", name)
    if not r:
        return None
    steps = [st for st in r["steps"] if limit is None or st["level"] <= limit]
    return sum(int(max(0, st.get("frames_expected", 0) - st.get("frames_received", 0)) + st.get("order_errors", 0)) for st in steps)


def targets(doc: Doc, name: str = "faregate-1w") -> tuple[list[str], list[Doc]]:
    """Issue 13's targets for ``name``: (label, limit text, value, limit, True if value must be <= limit)."""
    direct_held = _g(doc, "streams", "direct", "held")
    mem = _g(doc, "memory", name) or {}
    checks: list[tuple[str, str, float | None, float | None, bool]] = [
        ("streams held (N)", f">= direct's own limit ({direct_held})", _g(doc, "streams", name, "held"), direct_held, False),
        ("frames lost or reordered (up to direct's limit)", "== 0", _lost_reordered(doc, name, direct_held), 0, True),
        ("added latency c=1 p50 (ms)", "<= 0.15", added(doc, name, "plain", "latency", "p50"), 0.15, True),
        ("added latency c=1 p99 (ms)", "<= 0.5", added(doc, name, "plain", "latency", "p99"), 0.5, True),
        ("added TTFB c=1 p50 (ms)", "<= 0.3", added(doc, name, "stream", "ttfb", "p50"), 0.3, True),
        ("added TTFB c=1 p99 (ms)", "<= 0.5", added(doc, name, "stream", "ttfb", "p99"), 0.5, True),
        ("sustained req/s (20 ms mock)", ">= 6000", _g(doc, "rate", name, "best_rps"), 6000, False),
        ("memory in flight per request / body", "<= 4x", mem.get("per_request_x_body"), 4.0, True),
        ("RSS 60 s after / idle", "<= 1.5x", mem.get("after_x_idle"), 1.5, True),
        ("idle RSS (MB)", "<= 60", mem.get("idle_mb"), 60.0, True),
    ]
    rows = [f"| goal | limit | {name} | ratio to limit | result |", "|---|---|---|---|---|"]
    out: list[Doc] = []
    for label, text, value, limit, at_most in checks:
        if value is None or limit is None:
            verdict, ratio = "n/a", None
        else:
            verdict = "PASS" if (value <= limit if at_most else value >= limit) else "FAIL"
            ratio = value / limit if limit else None
        shown = str(value) if isinstance(value, int) else _f(value, 0 if value is not None and abs(value) >= 100 else 3)
        rows.append(f"| {label} | {text} | {shown} | {_f(ratio)} | {verdict} |")
        out.append({"goal": label, "limit": text, "value": value, "result": verdict})
    return rows, out


def render(doc: Doc) -> tuple[list[str], list[Doc]]:
    """The Markdown section for the scenarios and the targets' verdicts."""
    cpus = doc.get("cpus") or {}
    lines = [
        "", "## Issue 13 scenarios (C rig: epoll load generator and mock)", "",
        f"Target pinned to CPU {cpus.get('target')}, mock and load generator to CPU {cpus.get('rig')}, one worker each. "
        "'added' = the target's percentile minus direct's (same rig, same run). "
        f"'rig-bound': the rig's core (mock + load generator) was >= {RIG_BOUND_PCT:g} % busy at the deciding step.",
        "", *summary_table(doc),
    ]  # fmt: skip
    if len(doc.get("c1") or {}) > 1:
        lines += ["", "### c=1 per direction (added over direct OpenAI Chat on the same mock)", "", *directions_table(doc)]
    if doc.get("rate") or doc.get("streams"):
        lines += ["", "### Steps", "", *steps_tables(doc)]
    verdicts: list[Doc] = []
    if any("faregate-1w" in (doc.get(s) or {}) for s in ("c1", "rate", "streams", "memory")):
        rows, verdicts = targets(doc)
        lines += ["", "### Issue 13 targets (faregate-1w)", "", *rows]
    if doc.get("errors"):
        lines += ["", "### Scenario errors", ""] + [f"- **{k}**: `{v.splitlines()[0][:300]}`" for k, v in doc["errors"].items()]
    return lines, verdicts
